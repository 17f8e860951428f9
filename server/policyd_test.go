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
