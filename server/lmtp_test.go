package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// LMTP (RFC 2033) from another MTA, over TCP and over a Unix socket (as
// Postfix's lmtp:unix: and Dovecot's LMTP are used): after the message
// each accepted recipient gets its own answer, so a full mailbox refuses
// only its owner; no relaying, even for a client smtpaccess lets relay;
// none of the checks (the MTA in front made them: a rate limit of one
// message does not apply); the Received line says "with LMTP".
func TestLMTP(t *testing.T) {
	h := newHarness(t)
	sock := filepath.Join(h.dir, "lmtp.sock")
	h.writeSetting("listen", "smtp 127.0.0.1:0\nlmtp 127.0.0.1:0\nlmtp "+sock+"\n")
	h.writeSetting("smtpaccess", "127.0.0.1\tallow,RELAYCLIENT\n")
	h.writeSetting("ratelimit", "client * messages 1/1h\n")
	h.writeSetting("filters", "ratelimit\n")
	h.addUser("bob@example.test", "pw", "--quota", "200S")
	h.restart()

	for i, network := range []string{"tcp", "unix"} {
		addr := h.addr("lmtp")
		if network == "unix" {
			addr = sock
		}
		conn, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClientLMTP(conn)
		if err := c.Hello("mta.example.net"); err != nil {
			t.Fatalf("%s: LHLO: %v", network, err)
		}
		if err := c.Mail("sender@example.org", nil); err != nil {
			t.Fatal(err)
		}
		for _, rcpt := range []string{h.user, "bob@example.test"} {
			if err := c.Rcpt(rcpt, nil); err != nil {
				t.Fatalf("%s: RCPT %s: %v", network, rcpt, err)
			}
		}
		var se *smtp.SMTPError
		if err := c.Rcpt("someone@remote.example", nil); !errors.As(err, &se) || se.Code != 554 {
			t.Fatalf("%s: relaying over LMTP: %v", network, err)
		}
		if err := c.Rcpt("nobody@example.test", nil); !errors.As(err, &se) || se.Code != 550 {
			t.Fatalf("%s: unknown user: %v", network, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: over LMTP\r\n\r\n" + strings.Repeat("long line of text\r\n", 20)))
		resp, err := w.CloseWithLMTPResponse()
		var lerr smtp.LMTPDataError
		if !errors.As(err, &lerr) || len(lerr) != 1 || lerr["bob@example.test"] == nil || lerr["bob@example.test"].Code != 552 {
			t.Fatalf("%s: per-recipient answers: %v", network, err)
		}
		if r := resp[h.user]; r == nil || !strings.Contains(r.StatusText, "queued as") {
			t.Fatalf("%s: %s's answer: %+v", network, h.user, resp)
		}
		c.Quit()
		inbox := inboxMessages(t, h, h.user)
		if len(inbox) != i+1 {
			t.Fatalf("%s: %d messages for %s, want %d", network, len(inbox), h.user, i+1)
		}
		if len(inboxMessages(t, h, "bob@example.test")) != 0 {
			t.Fatalf("%s: the full mailbox got the message", network)
		}
		for _, m := range inbox {
			if !bytes.Contains(m, []byte(" with LMTP id ")) {
				t.Fatalf("%s: Received line: %q", network, m)
			}
		}
		// Over the socket the Received field names the sender's uid
		// (SO_PEERCRED): this test process's.
		// The Maildir's order is its file names', not the arrival order:
		// look for the copy that came over the socket.
		if want := fmt.Sprintf("(local socket, uid %d)", os.Getuid()); network == "unix" && !slices.ContainsFunc(inbox, func(m []byte) bool { return bytes.Contains(m, []byte(want)) }) {
			t.Fatalf("unix: no Received field has %q: %q", want, inbox)
		}
	}
}

// esmtpgreeting sets the SMTP banner; the LMTP listener keeps its own.
func TestGreeting(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("esmtpgreeting", "mx.example.test ESMTP ready for you\n")
	h.writeSetting("listen", "smtp 127.0.0.1:0\nlmtp 127.0.0.1:0\n")
	h.restart()
	for name, want := range map[string]string{
		"smtp": "220 mx.example.test ESMTP ready for you\r\n",
		"lmtp": "220 mail.example.test LMTP Postern\r\n",
	} {
		c, err := net.Dial("tcp", h.addr(name))
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || line != want {
			t.Errorf("%s banner %q (%v), want %q", name, line, err, want)
		}
	}
}

// TLS reporting end to end: with "tlsrpt yes", a finished day's counts
// (saved by an earlier run) go to the domain's rua address, found in its
// _smtp._tls TXT record on the DNS server, as a report mail through the
// queue; here the address is a local user, who gets it.
func TestTLSReportsSent(t *testing.T) {
	zone := baseZone().Add(`_smtp._tls.remote.example. 300 IN TXT "v=TLSRPTv1; rua=mailto:alice@example.test"`)
	h := newFilterHarness(t, zone, map[string]string{"filters": "", "tlsrpt": "yes\n", "tlsrptfrom": "tls-reports@example.test\n"})
	dir := filepath.Join(h.dir, "data", "state", "tlsrpt")
	yesterday := time.Now().UTC().Add(-24 * time.Hour).Format(time.DateOnly)
	day := `{"remote.example":{"sts\u0000version: STSv1":{"policy":{"policy-type":"sts","policy-string":["version: STSv1"],"policy-domain":"remote.example"},"summary":{"total-successful-session-count":7,"total-failure-session-count":0}}}}`
	if err := os.WriteFile(filepath.Join(dir, yesterday+".json"), []byte(day), 0o640); err != nil {
		t.Fatal(err)
	}
	h.restart() // the recorder reads the day back
	h.srv.mta.sendTLSReports(context.Background())
	waitFor(t, "the report in alice's inbox", func() bool { return len(inboxMessages(t, h, h.user)) == 1 })
	m := string(inboxMessages(t, h, h.user)[0])
	if !strings.Contains(m, "\nTLS-Report-Domain: remote.example\n") || !strings.Contains(m, `report-type="tlsrpt"`) ||
		!strings.Contains(m, "Return-Path: <tls-reports@example.test>") || !strings.Contains(m, "application/tlsrpt+gzip") {
		t.Fatalf("report mail:\n%s", m)
	}
	if _, err := os.Stat(filepath.Join(dir, yesterday+".json")); !os.IsNotExist(err) {
		t.Fatalf("the sent day is still kept: %v", err)
	}
}
