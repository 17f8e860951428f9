package server

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// Two installations, the front with imapproxy and pop3proxy on and alice's
// userdb line naming the backend as her mailhost (options=mailhost=, as
// Courier's userdb has it): an IMAP client (go-imap) and a POP3 client at
// the front read the message that SMTP delivered to the backend, and the
// front's metrics count the proxied sessions.
func TestMailhostProxyBetweenTwoServers(t *testing.T) {
	back := newHarness(t)
	if err := back.send("bob@example.net", []string{back.user}, testMessage("kept on the backend", "body\r\n")); err != nil {
		t.Fatal(err)
	}
	back.settle()

	front := newHarness(t)
	src := filepath.Join(front.etc, "userdb")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(l, front.user+"\t") {
			l += "|options=mailhost=127.0.0.1"
		}
		lines = append(lines, l)
	}
	front.writeSetting("userdb", strings.Join(lines, "\n")+"\n")
	os.Remove(filepath.Join(front.etc, "userdb.db")) // compiled again at start
	_, imapPort, _ := net.SplitHostPort(back.addr("imap"))
	_, pop3Port, _ := net.SplitHostPort(back.addr("pop3"))
	front.writeSetting("imapproxy", "yes\n")
	front.writeSetting("pop3proxy", "yes\n")
	front.writeSetting("imapproxyport", imapPort+"\n")
	front.writeSetting("pop3proxyport", pop3Port+"\n")
	front.restart()

	c := front.imapLogin(nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("front shows %d messages, want the backend's 1", sel.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Envelope.Subject != "kept on the backend" {
		t.Fatalf("FETCH: %+v", msgs)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	p := front.pop3Login()
	if stat := p.cmd("STAT"); !strings.HasPrefix(stat, "+OK 1 ") {
		t.Fatalf("POP3 STAT at the front: %q", stat)
	}
	p.cmd("QUIT")

	// A reload turns proxying off and on again: the front then serves
	// alice's own (empty) INBOX, then the backend's again, without a
	// restart.
	reloadedInbox := func(proxying string) uint32 {
		t.Helper()
		front.writeSetting("imapproxy", proxying+"\n")
		if err := front.srv.Reload(); err != nil {
			t.Fatal(err)
		}
		c := front.imapLogin(nil)
		defer c.Logout()
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return sel.NumMessages
	}
	if n := reloadedInbox("no"); n != 0 {
		t.Fatalf("imapproxy no after a reload: the front shows %d messages, want its own 0", n)
	}
	if n := reloadedInbox("yes"); n != 1 {
		t.Fatalf("imapproxy yes after a reload: the front shows %d messages, want the backend's 1", n)
	}

	resp, err := http.Get("http://" + front.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"postern_imap_proxied_sessions_total 2", "postern_pop3_proxied_sessions_total 1", "postern_imap_proxy_failures_total 0"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("front /metrics lacks %q", want)
		}
	}
}
