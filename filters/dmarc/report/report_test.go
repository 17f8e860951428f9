package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in     string
		addr   string
		size   int64
		refuse bool
	}{
		{in: "mailto:dmarc@example.org", addr: "dmarc@example.org"},
		{in: "MAILTO:Dmarc@Example.ORG", addr: "Dmarc@Example.ORG"},
		{in: "mailto:dmarc@example.org!10m", addr: "dmarc@example.org", size: 10 << 20},
		{in: "mailto:dmarc@example.org!500", addr: "dmarc@example.org", size: 500},
		{in: "mailto:dmarc@example.org!2k", addr: "dmarc@example.org", size: 2 << 10},
		{in: "mailto:a%21b@example.org", addr: "a!b@example.org"},
		{in: " mailto:x@example.org ", addr: "x@example.org"},
		{in: "https://example.org/dmarc", refuse: true},
		{in: "mailto:", refuse: true},
		{in: "mailto:noat", refuse: true},
		{in: "mailto:x@example.org!", refuse: true},
		{in: "mailto:x@example.org!10x", refuse: true},
		{in: "mailto:x@example.org!-1m", refuse: true},
		{in: "mailto:x@example.org!99999999999999999999t", refuse: true},
		{in: "mailto:a%0d%0aBcc:%20b@example.org", refuse: true},
		{in: "mailto:Name <x@example.org>", refuse: true},
	} {
		u, err := ParseURI(tc.in)
		if tc.refuse {
			if err == nil {
				t.Errorf("%q: accepted as %+v", tc.in, u)
			}
			continue
		}
		if err != nil || u.Address != tc.addr || u.MaxSize != tc.size {
			t.Errorf("%q: got %+v, %v; want %s size %d", tc.in, u, err, tc.addr, tc.size)
		}
	}
}

// observation makes what the dmarc filter hands the Store for a message.
func observation(at time.Time, ip, from string, pass bool, rua ...string) dmarc.Observation {
	rec, err := dmarc.ParseRecord("v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=100; rua=" + strings.Join(rua, ","))
	if err != nil {
		panic(err)
	}
	ev := dmarc.Evaluation{Status: dmarc.Fail, FromDomain: from, RecordDomain: dmarc.OrganizationalDomain(from), Record: rec,
		Policy: dmarc.PolicyReject, Disposition: dmarc.PolicyReject}
	o := dmarc.Observation{Time: at, SourceIP: netip.MustParseAddr(ip), EnvelopeFrom: "bounce." + from, SPFDomain: "bounce." + from, SPFScope: "mfrom", SPFResult: "fail",
		DKIM: []dkim.SignatureResult{{Result: "fail", Domain: from, Selector: "s1"}}}
	if pass {
		ev.Status, ev.Disposition, ev.DKIMAligned = dmarc.Pass, dmarc.PolicyNone, true
		o.SPFResult = "pass"
		o.DKIM[0].Result = "pass"
	}
	o.Evaluation = ev
	return o
}

func TestStoreAggregateXML(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		st.RecordDMARC(observation(day.Add(time.Hour), "192.0.2.1", "example.org", true, "mailto:agg@example.org"))
	}
	st.RecordDMARC(observation(day.Add(2*time.Hour), "192.0.2.9", "example.org", false, "mailto:agg@example.org"))
	// ARC-trusted override: its own row, with the reason.
	o := observation(day.Add(3*time.Hour), "192.0.2.9", "example.org", false, "mailto:agg@example.org")
	o.Evaluation.Disposition, o.Evaluation.Override, o.ARCSealer = dmarc.PolicyNone, dmarc.OverrideARC, "lists.example.net"
	st.RecordDMARC(o)
	st.RecordDMARC(observation(day.Add(4*time.Hour), "2001:db8::1", "other.test", false, "mailto:r@other.test"))
	// Not kept: no rua, no record.
	st.RecordDMARC(observation(day.Add(time.Hour), "192.0.2.1", "norua.test", true))
	st.RecordDMARC(dmarc.Observation{Time: day, Evaluation: dmarc.Evaluation{FromDomain: "none.test"}})
	// The next day: not in this period.
	st.RecordDMARC(observation(day.Add(25*time.Hour), "192.0.2.1", "example.org", true, "mailto:agg@example.org"))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A damaged line is skipped, not fatal.
	f, _ := os.OpenFile(filepath.Join(dir, "2026-03-01.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{\"t\":garbage\n")
	f.Close()

	s := &Sender{Dir: dir, Reporter: Reporter{OrgName: "Example Receiver", Email: "postmaster@mx.test", Domain: "mx.test"}}
	reports, err := s.Build(day, day.Add(24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Domain != "example.org" || reports[1].Domain != "other.test" {
		t.Fatalf("reports: %+v", reports)
	}
	dr := reports[0]
	doc, err := s.Reporter.Feedback(dr, "id-1").XML()
	if err != nil {
		t.Fatal(err)
	}
	var fb Feedback
	if err := xml.Unmarshal(doc, &fb); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if fb.Metadata.OrgName != "Example Receiver" || fb.Metadata.Email != "postmaster@mx.test" || fb.Metadata.ReportID != "id-1" ||
		fb.Metadata.DateRange.Begin != day.Unix() || fb.Metadata.DateRange.End != day.Add(24*time.Hour).Unix()-1 {
		t.Errorf("metadata: %+v", fb.Metadata)
	}
	if pp := fb.PolicyPublished; pp != (PolicyPublished{Domain: "example.org", ADKIM: "s", ASPF: "r", P: "reject", SP: "quarantine", Pct: 100, FO: "0"}) {
		t.Errorf("policy_published: %+v", pp)
	}
	if len(fb.Records) != 3 {
		t.Fatalf("records: %d\n%s", len(fb.Records), doc)
	}
	r0, r1, r2 := fb.Records[0], fb.Records[1], fb.Records[2]
	if r0.Row.SourceIP != "192.0.2.1" || r0.Row.Count != 3 || r0.Row.PolicyEvaluated.DKIM != "pass" || r0.Row.PolicyEvaluated.SPF != "fail" || r0.Row.PolicyEvaluated.Disposition != "none" {
		t.Errorf("record 0: %+v", r0.Row)
	}
	if r0.Identifiers.HeaderFrom != "example.org" || r0.Identifiers.EnvelopeFrom != "bounce.example.org" {
		t.Errorf("identifiers: %+v", r0.Identifiers)
	}
	if len(r0.AuthResults.DKIM) != 1 || r0.AuthResults.DKIM[0] != (DKIMAuth{Domain: "example.org", Selector: "s1", Result: "pass"}) ||
		len(r0.AuthResults.SPF) != 1 || r0.AuthResults.SPF[0] != (SPFAuth{Domain: "bounce.example.org", Scope: "mfrom", Result: "pass"}) {
		t.Errorf("auth_results: %+v", r0.AuthResults)
	}
	if r1.Row.Count != 1 || r1.Row.PolicyEvaluated.Disposition != "reject" || r1.Row.PolicyEvaluated.DKIM != "fail" || len(r1.Row.PolicyEvaluated.Reasons) != 0 {
		t.Errorf("record 1: %+v", r1.Row)
	}
	if rs := r2.Row.PolicyEvaluated.Reasons; r2.Row.PolicyEvaluated.Disposition != "none" || len(rs) != 1 || rs[0].Type != "trusted_forwarder" || !strings.Contains(rs[0].Comment, "lists.example.net") {
		t.Errorf("record 2: %+v", r2.Row)
	}
	if !bytes.HasPrefix(doc, []byte("<?xml")) || !bytes.Contains(doc, []byte("<feedback>")) {
		t.Errorf("document start: %.80s", doc)
	}
	if got := s.Reporter.Filename(dr); got != "mx.test!example.org!1772323200!1772409599.xml.gz" {
		t.Errorf("file name %s", got)
	}
	// --domain
	only, _ := s.Build(day, day.Add(24*time.Hour), "Other.Test.")
	if len(only) != 1 || only[0].Domain != "other.test" || only[0].Records[0].Row.SourceIP != "2001:db8::1" {
		t.Errorf("one domain: %+v", only)
	}
}

func resolver(t *testing.T, zone *dnstest.Zone) *dns.Resolver {
	srv := dnstest.Start(t, zone)
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyExternal(t *testing.T) {
	r := resolver(t, dnstest.NewZone().Add(
		`example.org._report._dmarc.reports.test. 300 IN TXT "v=DMARC1"`,
		`example.org._report._dmarc.twice.test. 300 IN TXT "v=DMARC1"`,
		`example.org._report._dmarc.twice.test. 300 IN TXT "v=DMARC1; rua=mailto:x@twice.test"`,
		`example.org._report._dmarc.wrong.test. 300 IN TXT "v=spf1 -all"`,
	).ServFail("example.org._report._dmarc.broken.test."))
	ctx := context.Background()
	if err := VerifyExternal(ctx, r.LookupTXT, dns.IsNotFound, "example.org", "reports.test"); err != nil {
		t.Errorf("authorized destination refused: %v", err)
	}
	for _, d := range []string{"elsewhere.test", "twice.test", "wrong.test"} {
		if err := VerifyExternal(ctx, r.LookupTXT, dns.IsNotFound, "example.org", d); !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("%s: got %v, want ErrNotAuthorized", d, err)
		}
	}
	if err := VerifyExternal(ctx, r.LookupTXT, dns.IsNotFound, "example.org", "broken.test"); err == nil || errors.Is(err, ErrNotAuthorized) {
		t.Errorf("SERVFAIL: got %v, want a DNS error", err)
	}
	if External("example.org", "mail.example.org") || !External("example.org", "reports.test") {
		t.Error("External: organizational domains not compared")
	}
}

type sentMail struct {
	from, to string
	msg      []byte
}

func TestSendDue(t *testing.T) {
	r := resolver(t, dnstest.NewZone().Add(`example.org._report._dmarc.reports.test. 300 IN TXT "v=DMARC1"`))
	dir := t.TempDir()
	st, _ := OpenStore(dir, nil)
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st.RecordDMARC(observation(day.Add(time.Hour), "192.0.2.1", "example.org", true,
		"mailto:agg@example.org", "mailto:ext@reports.test!10m", "mailto:refused@elsewhere.test", "mailto:small@example.org!10", "mailto:agg@example.org"))
	st.Close()
	now := day.Add(24*time.Hour + 30*time.Minute)
	var mu sync.Mutex
	var sent []sentMail
	s := &Sender{Dir: dir, Reporter: Reporter{OrgName: "Org", Email: "dmarc@mx.test", Domain: "mx.test"},
		LookupTXT: r.LookupTXT, IsNotFound: dns.IsNotFound, Now: func() time.Time { return now },
		Mail: func(_ context.Context, from, to string, msg []byte) error {
			mu.Lock()
			sent = append(sent, sentMail{from, to, msg})
			mu.Unlock()
			return nil
		}}
	n, err := s.SendDue(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("SendDue: %d, %v (want 2: the policy domain's address and the verified external one)", n, err)
	}
	if sent[0].to != "agg@example.org" || sent[1].to != "ext@reports.test" || sent[0].from != "dmarc@mx.test" {
		t.Errorf("sent to %s, %s from %s", sent[0].to, sent[1].to, sent[0].from)
	}
	fb, name, subject := readReportMail(t, sent[0].msg)
	if name != "mx.test!example.org!1772323200!1772409599.xml.gz" {
		t.Errorf("attachment %q", name)
	}
	if want := "Report Domain: example.org Submitter: mx.test Report-ID: <" + fb.Metadata.ReportID + ">"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	if len(fb.Records) != 1 || fb.Records[0].Row.Count != 1 {
		t.Errorf("records %+v", fb.Records)
	}
	// Remembered: nothing more to send; the finished day's file is gone.
	if n, err := s.SendDue(context.Background()); n != 0 || err != nil {
		t.Errorf("second SendDue: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2026-03-01.jsonl")); !os.IsNotExist(err) {
		t.Errorf("finished day kept: %v", err)
	}
}

// readReportMail parses a report message back: its XML, attachment name
// and subject.
func readReportMail(t *testing.T, raw []byte) (Feedback, string, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no gzip attachment: %v", err)
		}
		if p.Header.Get("Content-Type") != "application/gzip" {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		var fb Feedback
		if err := xml.Unmarshal(doc, &fb); err != nil {
			t.Fatal(err)
		}
		return fb, p.FileName(), m.Header.Get("Subject")
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"mailto:a@example.org", "mailto:a@example.org!10m", "mailto:a%21b@x.test!1g", "https://x", "mailto:!", "mailto:a@b!0", "mailto:\"a b\"@x.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if u.MaxSize < 0 || !strings.Contains(u.Address, "@") || strings.ContainsAny(u.Address, "\r\n") || u.Domain == "" {
			t.Fatalf("%q: accepted as %+v", s, u)
		}
	})
}

func FuzzParseRow(f *testing.F) {
	r, _ := RowOf(observation(time.Unix(1772330000, 0), "192.0.2.1", "example.org", true, "mailto:a@example.org"))
	st, _ := OpenStore(f.TempDir(), nil)
	st.Append(r)
	st.Close()
	b, _ := os.ReadFile(filepath.Join(st.Dir(), time.Unix(r.Time, 0).UTC().Format(time.DateOnly)+".jsonl"))
	f.Add(bytes.TrimSpace(b))
	f.Add([]byte(`{"t":1,"hf":"a","pd":"a","dis":"none","ip":"::1"}`))
	f.Add([]byte(`{"t":-1}`))
	f.Add([]byte(`{"t":1,"hf":"a","pd":"a","dis":"none","dk":["pass/a/b","x"]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRow(line)
		if err != nil {
			return
		}
		// An accepted row must aggregate and render without trouble.
		reps := Aggregate([]Row{r}, time.Unix(0, 0), time.Unix(1, 0))
		if len(reps) != 1 || reps[0].Records[0].Row.Count != 1 {
			t.Fatalf("aggregate of %q: %+v", line, reps)
		}
		doc, err := Reporter{OrgName: "o", Email: "e@x", Domain: "x"}.Feedback(reps[0], "id").XML()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		var fb Feedback
		if err := xml.Unmarshal(doc, &fb); err != nil {
			t.Fatalf("%q: the XML does not parse back: %v\n%s", line, err, doc)
		}
	})
}

// BenchmarkRecordDMARC is what the SMTP path pays per evaluated message
// with dmarcreports on: one row marshalled and written (no fsync).
func BenchmarkRecordDMARC(b *testing.B) {
	st, err := OpenStore(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	o := observation(time.Now(), "192.0.2.1", "example.org", true, "mailto:agg@example.org")
	b.ReportAllocs()
	for b.Loop() {
		st.RecordDMARC(o)
	}
}

// Damaged day files: a line longer than any row and a garbage line are
// skipped and counted, the rows after them still read; a last line
// without its newline (being written) is neither read nor counted.
func TestScanRowsDamage(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r, _ := RowOf(observation(day.Add(time.Hour), "192.0.2.1", "example.org", true, "mailto:agg@example.org"))
	st, _ := OpenStore(dir, nil)
	st.Append(r)
	st.Close()
	path := filepath.Join(dir, "2026-03-01.jsonl")
	good, _ := os.ReadFile(path)
	content := string(good) + strings.Repeat("x", 3*maxRowBytes) + "\n" + "not json\n" + string(good) + string(good[:20])
	os.WriteFile(path, []byte(content), 0o640)
	rows, skipped, err := ReadRows(dir, day, day.Add(24*time.Hour))
	if err != nil || len(rows) != 2 || skipped != 2 {
		t.Fatalf("rows %d, skipped %d, err %v; want 2, 2, nil", len(rows), skipped, err)
	}
	if rows[1].SourceIP != "192.0.2.1" || rows[1].PolicyDomain != "example.org" {
		t.Errorf("row after the damage: %+v", rows[1])
	}
}
