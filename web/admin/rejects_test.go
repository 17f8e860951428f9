package admin

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/filters/rejectlog"
)

var rejectsBase = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// rejectSite is a web admin whose Rejects page reads a real rejection log
// written by rejectlog.Log.Add.
func rejectSite(t *testing.T, maxSize int64) (*site, *rejectlog.Log) {
	t.Helper()
	s := newSite(t, true)
	path := filepath.Join(s.dir, "data", "state", "rejects.jsonl")
	l, err := rejectlog.Open(path, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s.h.opt.RejectLog = path // before any request
	return s, l
}

// addRejects appends refusals from..to-1, a minute apart: sender
// mN@spam.example, client 198.51.100.(N%250), recipient rN@example.test;
// every fourth is a greylisting at MAIL, the rest a DNSBL listing at RCPT.
func addRejects(t *testing.T, l *rejectlog.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		r := rejectlog.Record{Time: rejectsBase.Add(time.Duration(i) * time.Minute), Session: fmt.Sprintf("sess%d", i), Listener: "smtp",
			Client: fmt.Sprintf("198.51.100.%d", i%250), HELO: fmt.Sprintf("h%d.spam.example", i), From: fmt.Sprintf("m%d@spam.example", i),
			Rcpts: []string{fmt.Sprintf("r%d@example.test", i)}, Stage: "rcpt", Reply: "554 5.7.1 Listed by zen.example", Decider: "dnsbl", Score: 10,
			Results: []rejectlog.FilterResult{{Filter: "dnsbl", Verdict: "reject", Score: 10, Reason: "listed"}, {Filter: "spf", Verdict: "none", Reason: "no policy"}}}
		if i%4 == 0 {
			r.Stage, r.Reply, r.Decider, r.Score = "mail", "451 4.7.1 Greylisted, try again", "greylist", 0
			r.Results = []rejectlog.FilterResult{{Filter: "greylist", Verdict: "tempfail", Reason: "new triplet"}}
		}
		if err := l.Add(r); err != nil {
			t.Fatal(err)
		}
	}
}

var rowSender = regexp.MustCompile(`<td>m(\d+)@spam\.example</td>`)

// shown lists the record numbers of a page's rows, in order.
func shown(body string) []int {
	var out []int
	for _, m := range rowSender.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

func span(from, to int) []int { // from down to to, inclusive
	var out []int
	for i := from; i >= to; i-- {
		out = append(out, i)
	}
	return out
}

func same(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

var olderLink = regexp.MustCompile(`<a class="button" href="([^"]+)">Older</a>`)

func older(t *testing.T, body string) string {
	t.Helper()
	m := olderLink.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// Newest first, 100 to a page; the "older" link keeps its place while
// new refusals are logged and the log rotates.
func TestRejectsOrderAndPaging(t *testing.T) {
	s, l := rejectSite(t, 128<<10)
	addRejects(t, l, 0, 250)
	b := s.browser().login()
	r := b.get("/admin/rejects")
	if r.code != http.StatusOK {
		t.Fatalf("GET /admin/rejects: %d\n%s", r.code, r.body)
	}
	if got := shown(r.body); !same(got, span(249, 150)) {
		t.Fatalf("first page shows %v", got)
	}
	next := older(t, r.body)
	if next == "" {
		t.Fatal("no Older link on a full first page")
	}
	addRejects(t, l, 250, 400) // new refusals, and a rotation (128 KiB)
	if _, err := os.Stat(s.h.opt.RejectLog + ".1"); err != nil {
		t.Fatalf("the log did not rotate: %v", err)
	}
	r = b.get(next)
	if got := shown(r.body); r.code != http.StatusOK || !same(got, span(149, 50)) {
		t.Fatalf("older page after new records: %d %v", r.code, got)
	}
	if !strings.Contains(r.body, `href="/admin/rejects">Newest</a>`) {
		t.Error("an older page has no link back to the newest")
	}
	// The newest page now starts at the new records.
	if got := shown(b.get("/admin/rejects").body); len(got) != 100 || got[0] != 399 {
		t.Fatalf("newest page after new records starts at %v", got[:1])
	}
	// Two more rotations: the old cursor is gone, and the page says so.
	addRejects(t, l, 400, 1200)
	r = b.get(next)
	if r.code != http.StatusNotFound || !strings.Contains(r.body, "rotated past this page") {
		t.Fatalf("cursor into a rotated-out file: %d\n%s", r.code, r.body)
	}
}

func TestRejectsFilters(t *testing.T) {
	s, l := rejectSite(t, 0)
	addRejects(t, l, 0, 300)
	b := s.browser().login()
	cases := []struct {
		query string
		want  []int
	}{
		// Substrings, as postern rejects: .7 and .70 to .79.
		{"client=198.51.100.7", append(append([]int{257}, span(79, 70)...), 7)},
		{"client=198.51.100.7&until=2026-11-25+12:00", append(span(79, 70), 7)}, // and a time range
		{"from=M42@SPAM", []int{42}},
		{"rcpt=r299@", []int{299}},
		{"check=greylist&since=2026-11-25+14:00&until=2026-11-25T14:20", []int{260, 256, 252, 248, 244, 240}},
		{"text=h123.spam", []int{123}},
		{"check=spf&from=m1@", []int{1}},
		{"check=spf&from=m4@", nil}, // a greylisting: spf took no part
		{"since=2026-11-25+14:55", []int{299, 298, 297, 296, 295}},
	}
	for _, c := range cases {
		r := b.get("/admin/rejects?" + c.query)
		if got := shown(r.body); r.code != http.StatusOK || !same(got, c.want) {
			t.Errorf("%s: %d, shows %v, want %v", c.query, r.code, got, c.want)
		}
	}
	// The filter is kept in the form and in the Older link.
	r := b.get("/admin/rejects?check=dnsbl")
	if !strings.Contains(r.body, `name="check" value="dnsbl"`) {
		t.Error("the filter form does not keep the check")
	}
	next := older(t, r.body)
	if !strings.Contains(next, "check=dnsbl") {
		t.Fatalf("Older link %q drops the filter", next)
	}
	for _, n := range shown(b.get(next).body) {
		if n%4 == 0 {
			t.Fatalf("older page of check=dnsbl shows greylisting %d", n)
		}
	}
	// The summary counts the shown records by check and stage.
	r = b.get("/admin/rejects?until=2026-11-25+10:07")
	for _, want := range []string{
		`<td><a href="/admin/rejects?check=dnsbl">dnsbl</a></td><td>6</td><td>6</td>`,
		`<td><a href="/admin/rejects?check=greylist">greylist</a></td><td>2</td><td>2</td>`,
		`<td>rcpt</td><td>6</td><td>6</td><td>0</td>`,
		`<td>mail</td><td>2</td><td>0</td><td>2</td>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("summary lacks %s", want)
		}
	}
	if strings.Contains(r.body, `check=spf">spf</a>`) {
		t.Error("spf, which only said none, is counted as having taken part")
	}
	// A client's link filters on it.
	if !strings.Contains(r.body, `<a href="/admin/rejects?client=198.51.100.7" title="Only this client">198.51.100.7</a>`) {
		t.Error("no filter link on the client address")
	}
	// Bad filters are refused with the field named.
	for q, want := range map[string]string{
		"since=yesterday":                    "since: ",
		"until=-5h":                          "until: ",
		"at=../../etc/passwd":                "at: ",
		"client=" + strings.Repeat("x", 300): "client: longer than",
	} {
		r := b.get("/admin/rejects?" + q)
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, want) || len(shown(r.body)) != 0 {
			t.Errorf("%s: %d, want 400 naming %q", q[:min(len(q), 30)], r.code, want)
		}
	}
}

var detailLink = regexp.MustCompile(`<a href="(/admin/rejects/show\?at=[^"]+)">Details</a>`)

func TestRejectDetail(t *testing.T) {
	s, l := rejectSite(t, 0)
	addRejects(t, l, 0, 10)
	b := s.browser().login()
	r := b.get("/admin/rejects?from=m5@")
	m := detailLink.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no Details link:\n%s", r.body)
	}
	r = b.get(html.UnescapeString(m[1]))
	if r.code != http.StatusOK {
		t.Fatalf("detail: %d", r.code)
	}
	for _, want := range []string{"2026-11-25 10:05:00.000000", "sess5", "smtp", "198.51.100.5", "h5.spam.example", "m5@spam.example", "r5@example.test",
		"rcpt", "554 5.7.1 Listed by zen.example", `check=dnsbl">dnsbl</a>`, "10.00", "<td>spf</td><td>none</td><td>&#43;0.00</td><td>no policy</td>",
		"<td>dnsbl</td><td>reject</td><td>&#43;10.00</td><td>listed</td>", `&#34;session&#34;: &#34;sess5&#34;`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("detail lacks %q", want)
		}
	}
	// A position that is no record's start, or no cursor at all: not found.
	at := strings.TrimPrefix(html.UnescapeString(m[1]), "/admin/rejects/show?at=")
	c, _ := rejectlog.ParseCursor(at)
	c.Offset -= 7
	for _, bad := range []string{c.String(), "", "nonsense", "00000001.5"} {
		if r := b.get("/admin/rejects/show?at=" + url.QueryEscape(bad)); r.code != http.StatusNotFound || strings.Contains(r.body, "sess5") {
			t.Errorf("detail at %q: %d", bad, r.code)
		}
	}
}

// Fields come from hostile clients: everything is escaped, on the list
// and on the detail page.
func TestRejectsEscapeHostileFields(t *testing.T) {
	s, l := rejectSite(t, 0)
	l.Add(rejectlog.Record{Time: rejectsBase, Client: `192.0.2.1"><script>alert(1)</script>`, HELO: `<script>alert("helo")</script>`,
		From: `"<script>alert('from')</script>"@evil.example`, Rcpts: []string{`<img src=x onerror=alert(1)>@example.test`}, Stage: "rcpt",
		Reply: `550 5.7.1 <script>alert("reply")</script>`, Decider: `<b>x</b>`,
		Results: []rejectlog.FilterResult{{Filter: `<script>f</script>`, Verdict: "reject", Score: 1, Reason: `<script>reason</script>`}}})
	b := s.browser().login()
	list := b.get("/admin/rejects")
	m := detailLink.FindStringSubmatch(list.body)
	if m == nil {
		t.Fatalf("no Details link:\n%s", list.body)
	}
	detail := b.get(html.UnescapeString(m[1]))
	for name, body := range map[string]string{"list": list.body, "detail": detail.body} {
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") || strings.Contains(body, "<b>x") {
			t.Errorf("%s page carries live markup from the record:\n%s", name, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;helo&#34;)&lt;/script&gt;") || !strings.Contains(body, "&lt;script&gt;alert(&#39;from&#39;)") {
			t.Errorf("%s page lacks the escaped HELO and sender", name)
		}
	}
}

// Each request reads at most RejectsMaxRead records and stops at its time
// limit; "search on" continues where it stopped.
func TestRejectsBoundedWork(t *testing.T) {
	s, l := rejectSite(t, 0)
	addRejects(t, l, 0, 500)
	s.h.opt.RejectsMaxRead = 40
	b := s.browser().login()
	r := b.get("/admin/rejects?from=m3@")
	if got := shown(r.body); len(got) != 0 || !strings.Contains(r.body, "Read 40 records (the bound of 40 per page)") {
		t.Fatalf("a search over 500 records with a bound of 40 shows %v:\n%s", got, r.body)
	}
	// Only 40 rows even unfiltered: the bound is below the page size.
	if got := shown(b.get("/admin/rejects").body); !same(got, span(499, 460)) {
		t.Fatalf("unfiltered with a bound of 40: %v", got)
	}
	// Searching on reaches record 3 after 12 more pages of 40.
	next := older(t, r.body)
	for i := 0; i < 20 && next != ""; i++ {
		r = b.get(next)
		if got := shown(r.body); len(got) > 0 {
			if !same(got, []int{3}) || i != 11 {
				t.Fatalf("page %d shows %v", i, got)
			}
			break
		}
		next = older(t, r.body)
	}
	if !same(shown(r.body), []int{3}) {
		t.Fatal("searching on never found record 3")
	}
	s.h.opt.RejectsTimeout = time.Nanosecond
	if r := b.get("/admin/rejects"); !strings.Contains(r.body, "before the time limit") || len(shown(r.body)) != 0 {
		t.Fatalf("a 1ns time limit:\n%s", r.body)
	}
}

// The pages need a login; they change nothing, so they take no POST.
func TestRejectsNeedLogin(t *testing.T) {
	s, l := rejectSite(t, 0)
	addRejects(t, l, 0, 3)
	b := s.browser()
	for _, p := range []string{"/admin/rejects", "/admin/rejects?client=198.51.100.1", "/admin/rejects/show?at=00000001.5"} {
		if r := b.get(p); r.code != http.StatusSeeOther || r.location != "/admin/login" || strings.Contains(r.body, "spam.example") {
			t.Errorf("GET %s without a session: %d %q", p, r.code, r.location)
		}
	}
	b.login()
	for _, p := range []string{"/admin/rejects", "/admin/rejects/show"} {
		if r := b.post(p, nil); r.code == http.StatusOK || r.code == http.StatusSeeOther {
			t.Errorf("POST %s with a token: %d, want it refused", p, r.code)
		}
	}
	if r := b.get("/admin/rejects"); !strings.Contains(r.body, `<a href="/admin/rejects" class="here">Rejects</a>`) {
		t.Error("no Rejects entry marked in the navigation")
	}
}

// Without a log (an admin outside postern serve) the page says so.
func TestRejectsWithoutLog(t *testing.T) {
	s := newSite(t, true)
	r := s.browser().login().get("/admin/rejects")
	if r.code != http.StatusOK || !strings.Contains(r.body, "no rejection log to show") {
		t.Fatalf("%d\n%s", r.code, r.body)
	}
}

// FuzzRejectFilter reads arbitrary query strings as the filter form:
// never a panic; what is accepted is bounded and keeps its cursor.
func FuzzRejectFilter(f *testing.F) {
	for _, s := range []string{"", "client=192.0.2.1&since=24h", "since=2026-11-25+14:00&until=2026-11-25T15:00:00Z", "at=0000abcd.123",
		"at=0000ABCD.1", "since=-1h", "until=9999999999h", "check=%00&text=%ff", "at=00000000.0&at=1"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, q, err := parseRejectFilter(v, now)
		if err != nil {
			return
		}
		for _, s := range []string{flt.Client, flt.From, flt.Rcpt, flt.Check, flt.Text, flt.Since, flt.Until, flt.At} {
			if len(s) > maxRejectsFilter {
				t.Fatalf("accepted a %d-byte field", len(s))
			}
		}
		if q.From.String() != flt.At || q.Size != rejectsPageSize {
			t.Fatalf("cursor %q read as %v", flt.At, q.From)
		}
	})
}
