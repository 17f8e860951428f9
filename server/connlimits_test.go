package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"postern/internal/netserve"
)

// greeting dials a listener and returns its first line.
func (h *harness) greeting(listener string) (net.Conn, string) {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr(listener), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		h.t.Fatalf("%s greeting: %v", listener, err)
	}
	return conn, strings.TrimRight(line, "\r\n")
}

// The connection limits come from the settings in force: a reload
// applies them to the next connection and login, without a restart, and
// the refusals show in /metrics.
func TestConnLimitsFollowReload(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("imapmaxperip", "1\n")
	h.writeSetting("pop3maxuserip", "1\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	first, line := h.greeting("imap")
	if !strings.HasPrefix(line, "* OK") {
		t.Fatalf("first IMAP connection: %q", line)
	}
	if _, line := h.greeting("imap"); line != "* BYE [UNAVAILABLE] "+netserve.TooManyFromAddress {
		t.Fatalf("second IMAP connection from the address: %q, want the refusal", line)
	}

	p := h.pop3Login()
	conn, line := h.greeting("pop3")
	if !strings.HasPrefix(line, "+OK") {
		t.Fatalf("POP3 greeting: %q", line)
	}
	fmt.Fprintf(conn, "USER %s\r\nPASS %s\r\n", h.user, h.pass)
	r := bufio.NewReader(conn)
	r.ReadString('\n') // USER's +OK
	if got, _ := r.ReadString('\n'); got != "-ERR [IN-USE] "+netserve.TooManyForUser+"\r\n" {
		t.Fatalf("second POP3 login of the user: %q", got)
	}

	h.writeSetting("imapmaxperip", "0\n") // no limit
	h.writeSetting("pop3maxuserip", "2\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, line := h.greeting("imap"); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("IMAP after the reload lifted the limit: %q", line)
	}
	fmt.Fprintf(conn, "USER %s\r\nPASS %s\r\n", h.user, h.pass)
	r.ReadString('\n')
	if got, _ := r.ReadString('\n'); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("POP3 login after the reload raised the limit: %q", got)
	}
	first.Close()
	p.conn.Close()

	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"postern_imap_connections_refused_total 1", "postern_pop3_logins_refused_total 1", "postern_imap_logins_refused_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
