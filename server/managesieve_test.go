package server

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sieveClient speaks ManageSieve (RFC 5804) over a real connection.
type sieveClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) sieveLogin(t *testing.T) *sieveClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr("managesieve"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { conn.Close() })
	c := &sieveClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	if caps := c.response(); !strings.Contains(caps, `"SIEVE" "`) || !strings.Contains(caps, "fileinto") || !strings.Contains(caps, "vacation") {
		t.Fatalf("capabilities %q: want the interpreter's extensions", caps)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + h.user + "\x00" + h.pass))
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + auth + `"`); !strings.HasPrefix(lastLine(r), "OK") {
		t.Fatalf("login: %q", r)
	}
	return c
}

// response reads up to and including the OK, NO or BYE line.
func (c *sieveClient) response() string {
	c.t.Helper()
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		if strings.HasPrefix(line, "OK") || strings.HasPrefix(line, "NO") || strings.HasPrefix(line, "BYE") {
			return b.String()
		}
	}
}

func (c *sieveClient) cmd(line string) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s\r\n", line); err != nil {
		c.t.Fatal(err)
	}
	return c.response()
}

func (c *sieveClient) put(name, src string) string {
	c.t.Helper()
	return c.cmd(fmt.Sprintf("PUTSCRIPT %q {%d+}\r\n%s", name, len(src), src))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	return lines[len(lines)-1]
}

// A script uploaded over ManageSieve decides where mail that arrives over
// SMTP goes; a bad script is refused with its line and column.
func TestManageSieveScriptFilesSMTPMail(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("listen", "smtp 127.0.0.1:0\nmanagesieve 127.0.0.1:0\n")
	h.writeSetting("insecureauth", "yes")
	h.restart()
	c := h.sieveLogin(t)
	if r := c.put("broken", "require \"fileinto\";\nfileinto :frob \"x\";\n"); !strings.HasPrefix(lastLine(r), "NO") || !strings.Contains(r, "2:") {
		t.Fatalf("a bad script: %q, want NO with its position", r)
	}
	script := `require ["fileinto", "mailbox", "vacation", "reject"];
if address :is "from" "spammer@example.net" { reject "No thanks."; stop; }
if header :contains "subject" "[lists]" { fileinto :create "Lists"; stop; }
if address :is "from" "boss@example.net" { discard; }
`
	if r := c.put("main", script); !strings.HasPrefix(lastLine(r), "OK") {
		t.Fatalf("PUTSCRIPT: %q", r)
	}
	if r := c.cmd(`SETACTIVE "main"`); !strings.HasPrefix(lastLine(r), "OK") {
		t.Fatalf("SETACTIVE: %q", r)
	}
	if r := c.cmd("LISTSCRIPTS"); !strings.Contains(r, `"main" ACTIVE`) || strings.Contains(r, "broken") {
		t.Fatalf("LISTSCRIPTS: %q", r)
	}
	c.cmd("LOGOUT")

	send := func(from, subject string) {
		msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d@example.net>\r\n\r\nbody\r\n", from, h.user, subject, time.Now().UnixNano())
		if err := h.send(from, []string{h.user}, []byte(msg)); err != nil {
			t.Fatalf("send %q: %v", subject, err)
		}
	}
	send("carol@example.net", "[lists] weekly digest")
	send("carol@example.net", "hello")
	send("boss@example.net", "do this now")
	// reject: delivery happens before the 250, so the refusal is the
	// reply to the end of data, not a bounce.
	err := h.send("spammer@example.net", []string{h.user}, []byte("From: <spammer@example.net>\r\nSubject: buy\r\n\r\nbody\r\n"))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "No thanks.") {
		t.Fatalf("rejected message: %v, want 550 with the script's reason", err)
	}
	md := h.maildir(h.user)
	count := func(dir string) int {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			e, _ := os.ReadDir(filepath.Join(dir, sub))
			n += len(e)
		}
		return n
	}
	if n := count(filepath.Join(md, ".Lists")); n != 1 {
		t.Fatalf("Lists holds %d messages, want the list mail", n)
	}
	if n := count(md); n != 1 {
		t.Fatalf("INBOX holds %d messages, want only the plain one (the boss's discarded)", n)
	}
}
