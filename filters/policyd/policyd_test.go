package policyd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/filters"
	"postern/filters/policyd/policydtest"
)

func session() *filters.Session {
	return &filters.Session{
		ID: "s1", ClientIP: netip.MustParseAddr("192.0.2.7"), ClientPort: 40000, ClientName: "mail.example.org",
		HELO: "mail.example.org", ESMTP: true, From: "bob@example.org", Rcpts: []string{"carol@example.test"},
	}
}

func newFilter(t *testing.T, c Config) filters.Filter {
	t.Helper()
	f, err := New(Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestActions(t *testing.T) {
	cases := []struct {
		action   string
		verdict  filters.Verdict
		code     int
		enhanced string
		message  string
		hold     bool
		header   string
	}{
		{"OK", filters.Accept, 0, "", "", false, ""},
		{"dunno", filters.NoOpinion, 0, "", "", false, ""},
		{"REJECT", filters.Reject, 554, "5.7.1", "Access denied", false, ""},
		{"REJECT not from here", filters.Reject, 554, "5.7.1", "not from here", false, ""},
		{"DEFER", filters.Tempfail, 450, "4.7.1", "Service unavailable, try again later", false, ""},
		{"REJECT 5.7.23 SPF says no", filters.Reject, 554, "5.7.23", "SPF says no", false, ""},
		{"REJECT 4.7.1 wrong class", filters.Reject, 554, "5.7.1", "4.7.1 wrong class", false, ""},
		{"550 5.7.23 SPF fail", filters.Reject, 550, "5.7.23", "SPF fail", false, ""},
		{"452 too many today", filters.Tempfail, 452, "4.7.1", "too many today", false, ""},
		{"450 5.7.1 mismatched class", filters.Tempfail, 450, "4.7.1", "5.7.1 mismatched class", false, ""},
		{"HOLD suspicious", filters.Quarantine, 0, "", "", true, ""},
		{"DISCARD", filters.Quarantine, 0, "", "", true, ""},
		{"PREPEND X-Greylist: delayed 61 seconds by postgrey-1.37", filters.NoOpinion, 0, "", "", false, "X-Greylist: delayed 61 seconds by postgrey-1.37"},
		{"WARN looks odd", filters.NoOpinion, 0, "", "", false, ""},
		{"REDIRECT x@example.org", filters.NoOpinion, 0, "", "", false, ""},
		{"FILTER smtp:[127.0.0.1]:10025", filters.NoOpinion, 0, "", "", false, ""},
		{"DELAY 1h", filters.NoOpinion, 0, "", "", false, ""},
	}
	for _, c := range cases {
		r, err := parseAction(c.action)
		if err != nil {
			t.Errorf("%q: %v", c.action, err)
			continue
		}
		if r.Verdict != c.verdict || r.Code != c.code || r.Enhanced != c.enhanced || r.Message != c.message || r.Hold != c.hold {
			t.Errorf("%q: %+v", c.action, r)
		}
		if got := strings.Join(r.HeaderFields, ""); got != c.header {
			t.Errorf("%q: header fields %q", c.action, r.HeaderFields)
		}
	}
	// The conditional deferrals: no opinion, the reply for the pipeline.
	for action, want := range map[string]string{
		"DEFER_IF_PERMIT Greylisted, see http://postgrey.example/help": "permit 450 4.7.1 Greylisted, see http://postgrey.example/help",
		"DEFER_IF_PERMIT 4.2.0 Greylisted":                             "permit 450 4.2.0 Greylisted",
		"defer_if_permit":                                              "permit 450 4.7.1 Service unavailable",
		"DEFER_IF_REJECT 4.7.0 try later":                              "reject 450 4.7.0 try later",
		"DEFER_IF_REJECT 5.7.1 wrong class":                            "reject 450 4.7.1 5.7.1 wrong class",
	} {
		r, err := parseAction(action)
		if err != nil || r.Verdict != filters.NoOpinion {
			t.Errorf("%q: %+v %v", action, r, err)
			continue
		}
		got := ""
		if d := r.DeferIfPermit; d != nil {
			got += fmt.Sprintf("permit %d %s %s", d.Code, d.Enhanced, d.Text)
		}
		if d := r.DeferIfReject; d != nil {
			got += fmt.Sprintf("reject %d %s %s", d.Code, d.Enhanced, d.Text)
		}
		if got != want {
			t.Errorf("%q: %q, want %q", action, got, want)
		}
	}
	// REDIRECT and BCC: envelope changes, the address checked.
	for action, want := range map[string]string{
		"REDIRECT x@example.org":       "redirect x@example.org",
		"redirect <spam@example.test>": "redirect spam@example.test",
		"BCC archive@example.test":     "bcc archive@example.test",
		"BCC \"odd user\"@[192.0.2.1]": "",
		"BCC postmaster@[192.0.2.1]":   "bcc postmaster@[192.0.2.1]",
	} {
		r, err := parseAction(action)
		if want == "" {
			if err == nil {
				t.Errorf("%q taken: %+v", action, r.Envelope)
			}
			continue
		}
		if err != nil || r.Verdict != filters.NoOpinion || r.Envelope == nil {
			t.Errorf("%q: %+v %v", action, r, err)
			continue
		}
		got := "redirect " + r.Envelope.Redirect
		if r.Envelope.Redirect == "" {
			got = "bcc " + strings.Join(r.Envelope.Bcc, ",")
		}
		if got != want {
			t.Errorf("%q: %q, want %q", action, got, want)
		}
	}
	for _, ignored := range []string{"FILTER smtp:[127.0.0.1]:10025", "DELAY 1h", "FREEZE"} {
		if r, err := parseAction(ignored); err != nil || !strings.Contains(r.Reason, "ignored") {
			t.Errorf("%q: %+v %v", ignored, r, err)
		}
	}
	for _, bad := range []string{"", "MAYBE", "PREPEND nocolon", "DEFER_IF_REJECT bad\x02text",
		"REDIRECT", "REDIRECT nobody", "REDIRECT a@b c@d", "BCC @example.org", "BCC x@", "REDIRECT x@-bad-.example",
		"REDIRECT x@exa_mple.org", "BCC x@example..org", "REDIRECT x@\x00", "BCC <x@example.org", "PREPEND : empty name", "250 fine", "99 x", "REJECT bad\x01text"} {
		if _, err := parseAction(bad); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

// The request carries what Postfix sends, and the connection is kept for
// the next request; a server that closes it is dialled again.
func TestRequestsAndConnectionReuse(t *testing.T) {
	ps := policydtest.Start(t, "tcp", "127.0.0.1:0", func(req map[string]string) string {
		if req["recipient"] == "nobody@example.test" {
			return "action=550 5.1.1 No such user\n\n"
		}
		return "action=DUNNO\nother=ignored\n\n"
	})
	f := newFilter(t, Config{Name: "test", Network: "tcp", Address: ps.Addr(), Stage: filters.StageRcpt}).(filters.RcptChecker)
	ctx := context.Background()
	s := session()
	for i := 0; i < 3; i++ {
		if r := f.CheckRcpt(ctx, s, "alice@example.test"); r.Verdict != filters.NoOpinion || r.Filter != "policy:test" {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if n := ps.Accepts.Load(); n != 1 {
		t.Fatalf("%d connections for 3 requests, want 1", n)
	}
	req := ps.Last()
	for k, want := range map[string]string{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"helo_name": "mail.example.org", "sender": "bob@example.org", "recipient": "alice@example.test",
		"recipient_count": "1", "client_address": "192.0.2.7", "client_name": "mail.example.org",
		"client_port": "40000", "instance": "s1.bob@example.org", "sasl_username": "",
	} {
		if got, ok := req[k]; !ok || got != want {
			t.Errorf("%s=%q (sent: %v), want %q", k, got, ok, want)
		}
	}
	r := f.CheckRcpt(ctx, s, "nobody@example.test")
	if r.Verdict != filters.Reject || r.Code != 550 || r.Enhanced != "5.1.1" || r.Message != "No such user" {
		t.Fatalf("refusal: %+v", r)
	}

	// A server that closes each connection after one answer: the kept
	// connection is found closed and replaced, the answer still comes.
	ps.CloseAfter.Store(1)
	for i := 0; i < 3; i++ {
		if r := f.CheckRcpt(ctx, s, "alice@example.test"); r.Verdict != filters.NoOpinion {
			t.Fatalf("after the server closed: %+v", r)
		}
	}
}

// Failures: nothing listening, a server that does not answer in time, one
// that answers nonsense; each gets the configured action.
func TestFailures(t *testing.T) {
	ctx := context.Background()
	silent := policydtest.Start(t, "tcp", "127.0.0.1:0", func(map[string]string) string {
		time.Sleep(2 * time.Second)
		return "action=DUNNO\n\n"
	})
	nonsense := policydtest.Start(t, "tcp", "127.0.0.1:0", func(map[string]string) string { return "hello\n\n" })
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, addr := range []string{closedAddr, silent.Addr(), nonsense.Addr()} {
		for _, oe := range []struct {
			on      filters.OnError
			verdict filters.Verdict
		}{{filters.OnErrorTempfail, filters.Tempfail}, {filters.OnErrorAccept, filters.NoOpinion}, {filters.OnErrorReject, filters.Reject}} {
			f := newFilter(t, Config{Name: "t", Network: "tcp", Address: addr, Stage: filters.StageMail, OnError: oe.on, Timeout: 300 * time.Millisecond}).(filters.MailChecker)
			start := time.Now()
			r := f.CheckMail(ctx, session())
			if r.Verdict != oe.verdict || !strings.Contains(r.Reason, "policy service t failed") {
				t.Errorf("%s, onerror %d: %+v", addr, oe.on, r)
			}
			if time.Since(start) > time.Second {
				t.Errorf("%s: took %s with a 300ms timeout", addr, time.Since(start))
			}
			if oe.on == filters.OnErrorTempfail && (r.Code != 451 || r.Enhanced != "4.3.5") {
				t.Errorf("tempfail reply %d %s", r.Code, r.Enhanced)
			}
		}
	}
}

// At the end of DATA Postfix's END-OF-MESSAGE: the size, the recipient
// count, and the recipient only when there is one; over a unix socket.
func TestEndOfMessageOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "policy.sock")
	ps := policydtest.Start(t, "unix", sock, func(map[string]string) string { return "action=HOLD review\n\n" })
	network, address, err := ParseAddress("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFilter(t, Config{Name: "eom", Network: network, Address: address, Stage: filters.StageData}).(filters.DataChecker)
	s := session()
	s.Rcpts = append(s.Rcpts, "dave@example.test")
	r := f.CheckData(context.Background(), s, strings.NewReader(strings.Repeat("x", 1234)))
	if r.Verdict != filters.Quarantine || !r.Hold || !strings.Contains(r.Reason, "action=HOLD review") {
		t.Fatalf("%+v", r)
	}
	req := ps.Last()
	if req["protocol_state"] != "END-OF-MESSAGE" || req["size"] != "1234" || req["recipient_count"] != "2" || req["recipient"] != "" {
		t.Fatalf("request %v", req)
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"inet:127.0.0.1:10023": "tcp 127.0.0.1:10023",
		"127.0.0.1:10023":      "tcp 127.0.0.1:10023",
		"inet:[::1]:10023":     "tcp [::1]:10023",
		"inet:policy.lan:9998": "tcp policy.lan:9998",
		"unix:/run/pg.sock":    "unix /run/pg.sock",
		"/run/pg.sock":         "unix /run/pg.sock",
	} {
		n, a, err := ParseAddress(in)
		if err != nil || n+" "+a != want {
			t.Errorf("%s: %s %s %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"unix:rel/path", "inet:nohostport", "inet::10023", "inet:host:0", "inet:host:99999"} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("%s taken", bad)
		}
	}
	if _, err := New(Options{Config: Config{Name: "x", Network: "tcp", Address: "a:1", Stage: filters.StageConnect}}); err == nil {
		t.Error("a connect-stage policy service taken")
	}
}

// Close (a reload replaced the filter) closes the kept connections at
// once; a request in flight gets its answer, and its connection is closed
// when it comes back instead of being kept; a later request still works.
func TestCloseKeepsInFlightRequests(t *testing.T) {
	release := make(chan struct{})
	ps := policydtest.Start(t, "tcp", "127.0.0.1:0", func(req map[string]string) string {
		if req["recipient"] == "slow@example.test" {
			<-release
		}
		return "action=DUNNO\n\n"
	})
	f := newFilter(t, Config{Name: "t", Network: "tcp", Address: ps.Addr(), Stage: filters.StageRcpt})
	rc := f.(filters.RcptChecker)
	ctx := context.Background()
	// Two connections: one kept idle, one busy with the slow request.
	var wg sync.WaitGroup
	ready := make(chan struct{})
	go func() {
		rc.CheckRcpt(ctx, session(), "fast@example.test")
		close(ready)
	}()
	<-ready
	var slow filters.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		slow = rc.CheckRcpt(ctx, session(), "slow@example.test") // takes the kept connection
	}()
	waitUntil(t, func() bool { return len(ps.Requests()) == 2 })
	if n := ps.Accepts.Load(); n != 1 {
		t.Fatalf("%d connections, want the kept one used again", n)
	}
	// A second kept connection, idle while the slow one is busy.
	rc.CheckRcpt(ctx, session(), "other@example.test")
	if n := ps.Accepts.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	f.(filters.Closer).Close()
	waitUntil(t, func() bool { return ps.Open.Load() == 1 }) // the idle one closed, the busy one not
	close(release)
	wg.Wait()
	if slow.Verdict != filters.NoOpinion || strings.Contains(slow.Reason, "failed") {
		t.Fatalf("the request in flight during Close: %+v", slow)
	}
	waitUntil(t, func() bool { return ps.Open.Load() == 0 }) // closed when it came back
	if r := rc.CheckRcpt(ctx, session(), "late@example.test"); r.Verdict != filters.NoOpinion || strings.Contains(r.Reason, "failed") {
		t.Fatalf("a request after Close: %+v", r)
	}
	waitUntil(t, func() bool { return ps.Open.Load() == 0 })
	f.(filters.Closer).Close() // twice is fine
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
