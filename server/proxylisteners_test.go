package server

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// IMAP and POP3 listeners marked proxy take the client's address from the
// PROXY header of a trusted front end: postern who shows it, and the
// per-address connection limit counts clients, not the front end.
func TestProxyHeaderOnIMAPAndPOP3Listeners(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nimap 127.0.0.1:0 proxy\npop3 127.0.0.1:0 proxy\n")
	h.writeSetting("trustedproxies", "127.0.0.1/32\n")
	h.writeSetting("insecureauth", "yes")
	h.writeSetting("imapmaxperip", "1\n")
	h.restart()
	open := func(listener, client string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.DialTimeout("tcp", h.addr(listener), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "PROXY TCP4 %s 192.0.2.1 40000 143\r\n", client)
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s greeting: %v", listener, err)
		}
		if strings.HasPrefix(greeting, "* BYE") || strings.HasPrefix(greeting, "-ERR") {
			t.Fatalf("%s from %s refused: %q", listener, client, greeting)
		}
		return c, r
	}
	c1, r1 := open("imap", "192.0.2.9")
	fmt.Fprintf(c1, "a1 LOGIN %s \"%s\"\r\n", h.user, h.pass)
	for {
		line, err := r1.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a1 ") {
			if !strings.HasPrefix(line, "a1 OK") {
				t.Fatalf("login: %q", line)
			}
			break
		}
	}
	// Another client behind the same front end: imapmaxperip 1 counts it
	// apart from the first.
	open("imap", "192.0.2.10")
	p, pr := open("pop3", "198.51.100.77")
	fmt.Fprintf(p, "USER %s\r\n", h.user)
	pr.ReadString('\n')
	fmt.Fprintf(p, "PASS %s\r\n", h.pass)
	if line, _ := pr.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("pop3 login: %q", line)
	}
	seen := map[string]string{}
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < 2 && time.Now().Before(deadline) {
		for _, s := range h.srv.Who() {
			if s.User == h.user {
				seen[s.Protocol] = s.Remote
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(seen["imap"], "192.0.2.9:") || !strings.HasPrefix(seen["pop3"], "198.51.100.77:") {
		t.Fatalf("who shows %v, want the clients' addresses from the PROXY headers", seen)
	}
	// The same client address twice is over imapmaxperip 1.
	c, err := net.DialTimeout("tcp", h.addr("imap"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "PROXY TCP4 192.0.2.9 192.0.2.1 40001 143\r\n")
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "* BYE") {
		t.Fatalf("second connection from 192.0.2.9: %q, want the per-address refusal", line)
	}
}
