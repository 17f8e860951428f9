package server

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// scriptedPolicy is a Postfix policy server on a real socket: it records
// each request's attributes, answers with answer(request), and counts
// the connections Postern holds open to it.
type scriptedPolicy struct {
	ln     net.Listener
	answer func(req map[string]string) string
	open   atomic.Int32 // connections open now
	mu     sync.Mutex
	reqs   []map[string]string
}

func startScriptedPolicy(t *testing.T, answer func(req map[string]string) string) *scriptedPolicy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &scriptedPolicy{ln: ln, answer: answer}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.open.Add(1)
			go p.serve(c)
		}
	}()
	return p
}

func (p *scriptedPolicy) serve(c net.Conn) {
	defer p.open.Add(-1)
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		req := map[string]string{}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, "=")
			req[k] = v
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, req)
		p.mu.Unlock()
		if _, err := c.Write([]byte("action=" + p.answer(req) + "\n\n")); err != nil {
			return
		}
	}
}

func (p *scriptedPolicy) requests() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]string(nil), p.reqs...)
}

// A reload closes the replaced policy service's kept connections at once;
// a session that began before the reload still gets its answers (over a
// connection that is closed when the answer is in), and the new service
// keeps its own connection.
func TestPolicyServiceReloadClosesKeptConnections(t *testing.T) {
	ps := startScriptedPolicy(t, func(map[string]string) string { return "DUNNO" })
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.ln.Addr().String() + "\n",
	})
	old := dialRaw(t, h.addr("smtp"))
	old.as("192.0.2.7", "mail.good.test")
	if code, text := old.cmd("MAIL FROM:<x@good.test>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	if code, text := old.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("RCPT: %d %s", code, text)
	}
	if n := ps.open.Load(); n != 1 {
		t.Fatalf("%d connections to the policy server after one request, want 1 kept", n)
	}
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept connection closed by the reload", func() bool { return ps.open.Load() == 0 })

	// The session from before the reload asks the old service again.
	asked := len(ps.requests())
	if code, text := old.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("RCPT after the reload: %d %s", code, text)
	}
	if len(ps.requests()) != asked+1 {
		t.Fatalf("the old session's RCPT was not asked about")
	}
	waitFor(t, "the old service's connection closed after its answer", func() bool { return ps.open.Load() == 0 })

	// A new session uses the new service, which keeps its connection.
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("x@good.test", h.user, testMessage("after reload", "hello\r\n")); code != 250 {
		t.Fatalf("after the reload: %d %s", code, text)
	}
	if n := ps.open.Load(); n != 1 {
		t.Fatalf("%d connections after the new service was asked, want 1 kept", n)
	}
}

// DEFER_IF_PERMIT and DEFER_IF_REJECT as in Postfix, with the real
// postgrey: its greylisting DEFER_IF_PERMIT gives way to a reject by a
// later policy service (a 5xx, not a 450), and is applied when the later
// one has no objection; a DEFER_IF_REJECT turns the later reject into a
// 450 with its own text.
func TestPolicyServiceConditionalDeferrals(t *testing.T) {
	addr, _ := startPostgrey(t, 60)
	var rejectAll atomic.Bool
	verdict := startScriptedPolicy(t, func(req map[string]string) string {
		if strings.HasPrefix(req["sender"], "spammer@") || rejectAll.Load() {
			return "REJECT 5.7.1 Known spammer"
		}
		return "DUNNO"
	})
	ifReject := startScriptedPolicy(t, func(req map[string]string) string {
		if strings.HasPrefix(req["sender"], "unsure@") {
			return "DEFER_IF_REJECT 4.7.0 Blocklist lookup failed, try later"
		}
		return "DUNNO"
	})
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters": "policy:ifreject\npolicy:postgrey\npolicy:verdict\n",
		"policyservices": "postgrey inet:" + addr + " timeout=5s\n" +
			"verdict inet:" + verdict.ln.Addr().String() + "\n" +
			"ifreject inet:" + ifReject.ln.Addr().String() + "\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("spammer@good.test", h.user, testMessage("x", "x\r\n")); code != 554 || text != "5.7.1 Known spammer" {
		t.Fatalf("greylisted, then rejected: %d %s", code, text)
	}
	if code, text := c.send("x@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || !strings.HasPrefix(text, "4.2.0 Greylisted") {
		t.Fatalf("greylisted, no objection after: %d %s", code, text)
	}
	if code, text := c.send("unsure@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || !strings.HasPrefix(text, "4.2.0 Greylisted") {
		t.Fatalf("DEFER_IF_REJECT with no reject after it, greylisted: %d %s", code, text)
	}
	c2 := dialRaw(t, h.addr("smtp"))
	c2.as("192.0.2.8", "mail.good.test")
	// "unsure" rejected by the later service: the reject is deferred.
	rejectAll.Store(true)
	if code, text := c2.send("unsure@good.test", h.user, testMessage("x", "x\r\n")); code != 450 || text != "4.7.0 Blocklist lookup failed, try later" {
		t.Fatalf("DEFER_IF_REJECT, then a reject: %d %s", code, text)
	}
}

// REDIRECT: the message goes to the redirect address only, whichever
// recipient's RCPT the policy service answered it for; the redirect
// target is routed like any recipient: a remote one is relayed even for
// an unauthenticated client (the admin's policy server chose it, as in
// Postfix). One that cannot be routed refuses the message for now.
func TestPolicyServiceRedirect(t *testing.T) {
	redirect := atomic.Pointer[string]{}
	ps := startScriptedPolicy(t, func(req map[string]string) string {
		if req["recipient"] == "carol@example.test" {
			return "REDIRECT " + *redirect.Load()
		}
		return "DUNNO"
	})
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("filters", "policy:p\n")
		h.writeSetting("policyservices", "p inet:"+ps.ln.Addr().String()+"\n")
		h.addUser("carol@example.test", "pw")
		h.addUser("quarantine@example.test", "pw")
	})
	send := func(rcpts ...string) (int, string) {
		c := dialRaw(t, h.addr("smtp"))
		c.cmd("EHLO client.example.net")
		if code, text := c.cmd("MAIL FROM:<x@sender.example>"); code != 250 {
			return code, text
		}
		for _, r := range rcpts {
			if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
				return code, text
			}
		}
		c.cmd("DATA")
		c.conn.Write(testMessage("redirected", "hello\r\n"))
		return c.cmd(".")
	}
	to := "quarantine@example.test"
	redirect.Store(&to)
	// Alice's RCPT comes first and is not redirected by itself; carol's
	// REDIRECT takes the whole message.
	if code, text := send(h.user, "carol@example.test"); code != 250 {
		t.Fatalf("redirected message: %d %s", code, text)
	}
	if n := len(inboxMessages(t, h, "quarantine@example.test")); n != 1 {
		t.Fatalf("redirect target has %d messages, want 1", n)
	}
	if n := len(inboxMessages(t, h, h.user)) + len(inboxMessages(t, h, "carol@example.test")); n != 0 {
		t.Fatalf("the original recipients got %d messages, want none", n)
	}

	remoteTo := "<archive@remote.example>"
	redirect.Store(&remoteTo)
	if code, text := send("carol@example.test"); code != 250 {
		t.Fatalf("redirected to a remote address: %d %s", code, text)
	}
	waitFor(t, "the redirected copy relayed", func() bool { return len(remote.messages()) == 1 })
	if m := remote.messages()[0]; strings.Join(m.rcpts, ",") != "archive@remote.example" {
		t.Fatalf("relayed to %v", m.rcpts)
	}
	if n := len(inboxMessages(t, h, "carol@example.test")); n != 0 {
		t.Fatalf("carol got %d messages", n)
	}

	unknown := "nobody@example.test"
	redirect.Store(&unknown)
	if code, text := send("carol@example.test"); code != 451 || text != "4.3.5 Server configuration problem" {
		t.Fatalf("redirected to an unknown user: %d %s", code, text)
	}
	bad := "not-an-address"
	redirect.Store(&bad)
	if code, text := send("carol@example.test"); code != 451 || !strings.HasPrefix(text, "4.3.5 ") {
		t.Fatalf("REDIRECT without an address (a broken policy server): %d %s", code, text)
	}
}

// BCC: one copy to the address, besides the recipients; of two BCCs in
// one transaction only the last counts, as in Postfix 3.x.
func TestPolicyServiceBcc(t *testing.T) {
	ps := startScriptedPolicy(t, func(req map[string]string) string {
		switch req["recipient"] {
		case "carol@example.test":
			return "BCC first-archive@example.test"
		case "dave@example.test":
			return "BCC archive@example.test"
		}
		return "DUNNO"
	})
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:p\n",
		"policyservices": "p inet:" + ps.ln.Addr().String() + "\n",
	})
	for _, u := range []string{"carol", "dave", "archive", "first-archive"} {
		h.addUser(u+"@example.test", "pw")
	}
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	c.cmd("MAIL FROM:<x@good.test>")
	for _, r := range []string{"carol@example.test", "dave@example.test"} {
		if code, text := c.cmd("RCPT TO:<%s>", r); code != 250 {
			t.Fatalf("RCPT %s: %d %s", r, code, text)
		}
	}
	c.cmd("DATA")
	c.conn.Write(testMessage("copied", "hello\r\n"))
	if code, text := c.cmd("."); code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	for user, want := range map[string]int{"carol": 1, "dave": 1, "archive": 1, "first-archive": 0} {
		if n := len(inboxMessages(t, h, user+"@example.test")); n != want {
			t.Errorf("%s has %d messages, want %d", user, n, want)
		}
	}
}
