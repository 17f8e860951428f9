package server

import (
	"strings"
	"testing"
	"time"
)

// DMARC failure reports end to end: with "dmarcfailurereports yes" and a
// cap of 2 per domain, three forged messages refused at DATA by p=reject
// make two RFC 6591 reports, delivered by the queue from the null sender
// to the ruf= address in another domain that authorized them (RFC 7489
// section 7.1), with the header and without the body; none go to the
// ruf= address whose domain did not authorize them. Without the setting
// (the default) nothing is sent.
func TestDMARCFailureReportsEndToEnd(t *testing.T) {
	for _, on := range []bool{false, true} {
		settings := map[string]string{}
		if on {
			settings["dmarcfailurereports"] = "yes\n"
			settings["dmarcfailureperdomain"] = "2\n"
		}
		remote, h := dmarcReportServer(t, `_dmarc.sender.example. 300 IN TXT "v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@remote.example!64k,mailto:nope@refuse.example"`, settings)

		msg := []byte("From: Bank <service@sender.example>\r\nTo: alice@example.test\r\nSubject: verify your account\r\nMessage-ID: <1@forger.example>\r\n\r\nsecret body text\r\n")
		for i := range 3 {
			c := dialRaw(t, h.addr("smtp"))
			c.as("203.0.113.7", "mta.forger.example")
			if code, text := c.send("bounce@sender.example", h.user, msg); code != 550 {
				t.Fatalf("forgery %d: %d %s, want 550", i, code, text)
			}
			c.cmd("QUIT")
		}
		if !on {
			time.Sleep(time.Second)
			if n := len(remote.messages()); n != 0 {
				t.Fatalf("off by default, yet %d reports sent", n)
			}
			h.stop()
			continue
		}
		waitFor(t, "two failure reports at the remote MTA", func() bool { return len(remote.messages()) >= 2 })
		time.Sleep(500 * time.Millisecond)
		got := remote.messages()
		if len(got) != 2 {
			t.Fatalf("%d reports, want 2 (the cap)", len(got))
		}
		for _, m := range got {
			if m.from != "" || len(m.rcpts) != 1 || m.rcpts[0] != "ruf@remote.example" {
				t.Errorf("report envelope: from %q to %v", m.from, m.rcpts)
			}
			data := string(m.data)
			for _, want := range []string{
				"multipart/report; report-type=feedback-report", "Content-Type: message/feedback-report",
				"Feedback-Type: auth-failure", "Auth-Failure: dmarc", "Source-IP: 203.0.113.7", "Reported-Domain: sender.example",
				"Delivery-Result: reject", "Original-Mail-From: <bounce@sender.example>", "Identity-Alignment: spf",
				"Content-Type: text/rfc822-headers", "Subject: verify your account", "From: <dmarc-reports@example.test>",
				"Authentication-Results: example.test; spf=softfail smtp.mailfrom=sender.example;\r\n\tdkim=none;\r\n\tdmarc=fail",
			} {
				if !strings.Contains(data, want) {
					t.Errorf("report lacks %q:\n%s", want, data)
				}
			}
			if strings.Contains(data, "secret body text") {
				t.Errorf("the report carries the body")
			}
		}
		h.stop()
	}
}
