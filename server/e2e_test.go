package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func testMessage(subject, body string) []byte {
	return []byte("From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n" + body)
}

func fetchAll(t *testing.T, c *imapclient.Client) []*imapclient.FetchMessageBuffer {
	t.Helper()
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch 1:*: %v", err)
	}
	return msgs
}

// A message sent over SMTP reads back over IMAP and POP3 with identical
// bytes: what the client sent, after the Return-Path and Received lines that
// delivery adds.
func TestSMTPToIMAPAndPOP3IdenticalBytes(t *testing.T) {
	h := newHarness(t)
	sent := testMessage("hello there", "Line one\r\n.leading dot\r\n\r\nLast line\r\n")
	if err := h.send("bob@example.net", []string{h.user}, sent); err != nil {
		t.Fatal(err)
	}

	c := h.imapLogin(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c)
	if len(msgs) != 1 {
		t.Fatalf("IMAP sees %d messages, want 1", len(msgs))
	}
	viaIMAP := msgs[0].BodySection[0].Bytes
	if !bytes.HasSuffix(viaIMAP, sent) {
		t.Fatalf("IMAP body does not end with the sent message:\n%q", viaIMAP)
	}
	if !bytes.HasPrefix(viaIMAP, []byte("Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\nReceived: from client.example.net")) {
		t.Fatalf("trace headers missing:\n%q", viaIMAP)
	}
	if msgs[0].RFC822Size != int64(len(viaIMAP)) {
		t.Fatalf("RFC822.SIZE %d != %d bytes fetched", msgs[0].RFC822Size, len(viaIMAP))
	}

	p := h.pop3Login()
	viaPOP3 := p.multi("RETR 1")
	if !bytes.Equal(viaPOP3, viaIMAP) {
		t.Fatalf("POP3 and IMAP bytes differ:\nPOP3 %q\nIMAP %q", viaPOP3, viaIMAP)
	}
	stat := p.cmd("STAT")
	if want := fmt.Sprintf("+OK 1 %d", len(viaIMAP)); !strings.HasPrefix(stat, want) {
		t.Fatalf("STAT %q, want %q", stat, want)
	}
	p.cmd("QUIT")
}

// Flags set over IMAP and UIDs survive a restart of the server, and new
// deliveries get higher UIDs.
func TestFlagsAndUIDsSurviveRestart(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 3; i++ {
		if err := h.send("bob@example.net", []string{h.user}, testMessage(fmt.Sprintf("msg %d", i), "body\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	c := h.imapLogin(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	before := fetchAll(t, c)
	if len(before) != 3 {
		t.Fatalf("%d messages", len(before))
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagAnswered, "$Work"}, Silent: true}
	if err := c.Store(imap.SeqSetNum(2), store, nil).Close(); err != nil {
		t.Fatalf("store: %v", err)
	}
	c.Logout().Wait()

	h.restart()
	if err := h.send("bob@example.net", []string{h.user}, testMessage("msg 4", "body\r\n")); err != nil {
		t.Fatal(err)
	}
	c = h.imapLogin(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	after := fetchAll(t, c)
	if len(after) != 4 {
		t.Fatalf("%d messages after restart, want 4", len(after))
	}
	for i := range before {
		if after[i].UID != before[i].UID {
			t.Fatalf("message %d: UID %d before restart, %d after", i+1, before[i].UID, after[i].UID)
		}
	}
	if after[3].UID <= after[2].UID {
		t.Fatalf("new delivery got UID %d, not above %d", after[3].UID, after[2].UID)
	}
	flags := after[1].Flags
	for _, want := range []imap.Flag{imap.FlagFlagged, imap.FlagAnswered, "$Work"} {
		if !slices.Contains(flags, want) {
			t.Fatalf("flag %s lost over restart: %v", want, flags)
		}
	}
	if slices.Contains(after[0].Flags, imap.FlagFlagged) {
		t.Fatalf("flag set on the wrong message: %v", after[0].Flags)
	}
}

// 50 concurrent SMTP deliveries into one mailbox while an IMAP session has it
// selected: nothing lost or duplicated, UIDs strictly increasing, and the
// IMAP session learns about the new messages.
func TestConcurrentDeliveriesWhileSelected(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var exists uint32
	c := h.imapLogin(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = *d.NumMessages
				mu.Unlock()
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	stopPolling := make(chan struct{})
	pollDone := make(chan struct{})
	go func() { // the IMAP session keeps syncing while deliveries land
		defer close(pollDone)
		for {
			select {
			case <-stopPolling:
				return
			default:
			}
			c.Noop().Wait()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- h.send("bob@example.net", []string{h.user}, testMessage(fmt.Sprintf("concurrent %02d", i), "x\r\n"))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("delivery failed: %v", err)
		}
	}
	close(stopPolling)
	<-pollDone

	deadline := time.Now().Add(10 * time.Second)
	for {
		c.Noop().Wait()
		mu.Lock()
		got := exists
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IMAP session saw %d EXISTS, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	msgs := fetchAll(t, c)
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d", len(msgs), n)
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		if i > 0 && m.UID <= msgs[i-1].UID {
			t.Fatalf("UIDs not strictly increasing at %d: %d after %d", i, m.UID, msgs[i-1].UID)
		}
		subj := subjectOf(m.BodySection[0].Bytes)
		if seen[subj] {
			t.Fatalf("message %q delivered twice", subj)
		}
		seen[subj] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
}

func subjectOf(msg []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(msg))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "Subject: "); ok {
			return s
		}
	}
	return ""
}

// Unknown users and foreign domains are refused at RCPT; the classic relay
// tricks never get through unauthenticated.
func TestRecipientChecksAndNoRelay(t *testing.T) {
	h := newHarness(t)
	c, err := smtp.Dial(h.addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	cases := map[string]int{
		"nobody@example.test":              550,
		"bob@elsewhere.example":            554,
		"alice%bob@example.test":           550,
		"alice@example.test.":              501,
		"bob@elsewhere.example.":           501,
		"@a.example:bob@elsewhere.example": 554,
		"alice@[127.0.0.1]":                554,
		"bob!alice@example.test":           550,
		"\"bob@elsewhere\"@example.test":   550,
	}
	for rcpt, code := range cases {
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != code {
			t.Errorf("RCPT %s: %v, want %d", rcpt, err, code)
		}
	}
	if err := c.Rcpt(h.user, nil); err != nil {
		t.Fatalf("RCPT to a local user refused: %v", err)
	}
}

// Over quota: RCPT and DATA refuse with 552 5.2.2 the way Courier's
// deliverquota refuses, and maildirsize is recalculated after messages are
// removed behind its back.
func TestQuota(t *testing.T) {
	h := newHarness(t)
	h.addUser("carol@example.test", "pw", "--quota", "3000S")
	carol := "carol@example.test"
	big := testMessage("big", strings.Repeat("0123456789abcdef\r\n", 100)) // ~2 KB
	if err := h.send("bob@example.net", []string{carol}, big); err != nil {
		t.Fatalf("first message under quota: %v", err)
	}
	err := h.send("bob@example.net", []string{carol}, big)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 2, 2}) {
		t.Fatalf("second message over quota: %v, want 552 5.2.2", err)
	}
	// Delete the message behind maildirsize's back, and age maildirsize so
	// Courier's 15-minute rule makes the next over-quota verdict recalculate.
	md := h.maildir(carol)
	for _, sub := range []string{"new", "cur"} {
		files, _ := os.ReadDir(filepath.Join(md, sub))
		for _, f := range files {
			os.Remove(filepath.Join(md, sub, f.Name()))
		}
	}
	old := time.Now().Add(-20 * time.Minute)
	os.Chtimes(filepath.Join(md, "maildirsize"), old, old)
	if err := h.send("bob@example.net", []string{carol}, big); err != nil {
		t.Fatalf("after removing mail behind maildirsize's back, delivery still refused: %v", err)
	}
}

// Garbage and a 1 MB line are answered and the connection closed; the
// server keeps serving everyone else.
func TestBadInputDoesNotHurtOthers(t *testing.T) {
	h := newHarness(t)
	for _, svc := range []string{"smtp", "imap", "pop3"} {
		conn, err := net.DialTimeout("tcp", h.addr(svc), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(conn)
		r.ReadString('\n') // greeting
		fmt.Fprintf(conn, "\x00\x01\x02 garbage \xff\xfe\r\n")
		reply, err := r.ReadString('\n')
		if err != nil || reply == "" {
			t.Fatalf("%s: no answer to garbage: %v", svc, err)
		}
		// A 1 MB line without a newline, then one: must be refused and the
		// connection closed, not buffered forever.
		go func() {
			conn.Write(bytes.Repeat([]byte("A"), 1<<20))
			conn.Write([]byte("\r\n"))
		}()
		// The server must answer and close by itself, promptly: a read that
		// only ends by our own deadline means the connection stayed open.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var err2 error
		for i := 0; i < 1000 && err2 == nil; i++ {
			_, err2 = r.ReadString('\n')
		}
		var ne net.Error
		if err2 == nil || (errors.As(err2, &ne) && ne.Timeout()) {
			t.Fatalf("%s: connection still open 10s after a 1 MB line (%v)", svc, err2)
		}
		conn.Close()
	}
	// Everyone else is still served.
	if err := h.send("bob@example.net", []string{h.user}, testMessage("after garbage", "ok\r\n")); err != nil {
		t.Fatalf("SMTP after bad input: %v", err)
	}
	c := h.imapLogin(nil)
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("IMAP after bad input: %v %+v", err, sel)
	}
	h.pop3Login().cmd("QUIT")
}

// SIGHUP-style reload: a broken configuration is refused and the running one
// keeps serving; a good one is applied.
func TestReloadKeepsLastGoodConfig(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("acceptmailfor", "example.test\nbad domain!\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "acceptmailfor:2:") {
		t.Fatalf("bad reload: %v", err)
	}
	if err := h.send("bob@example.net", []string{h.user}, testMessage("still up", "x\r\n")); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	h.writeSetting("acceptmailfor", "example.test\nexample.org\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	h.addUser("dave@example.org", "pw")
	if err := h.send("bob@example.net", []string{"dave@example.org"}, testMessage("new domain", "x\r\n")); err != nil {
		t.Fatalf("domain added by reload refused: %v", err)
	}
}

// Submission: MAIL before AUTH is refused; after STARTTLS and AUTH PLAIN the
// user sends to a local mailbox; a wrong password is refused.
func TestSubmissionRequiresAuth(t *testing.T) {
	h := newHarness(t)
	dial := func() *smtp.Client {
		c, err := smtp.DialStartTLS(h.addr("submission"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	var se *smtp.SMTPError
	if err := c.Mail(h.user, nil); !errors.As(err, &se) || se.Code != 502 && se.Code != 530 {
		t.Fatalf("MAIL before AUTH: %v", err)
	}
	c = dial()
	if err := c.Auth(sasl.NewPlainClient("", h.user, "wrong")); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("AUTH with a wrong password: %v", err)
	}
	c = dial()
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail(h.user, []string{h.user}, bytes.NewReader(testMessage("note to self", "x\r\n"))); err != nil {
		t.Fatalf("authenticated send: %v", err)
	}
	// The Received field says how: ESMTPSA, and the TLS version and
	// cipher by OpenSSL's names with the key size, as Postfix writes them.
	files, _ := filepath.Glob(filepath.Join(h.maildir(h.user), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in new/", len(files))
	}
	stored, _ := os.ReadFile(files[0])
	if !regexp.MustCompile(`with ESMTPSA[^\n]*\r?\n\t\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ \((128|256)/(128|256) bits\)\)`).Match(stored) {
		t.Errorf("Received field of a message sent over TLS with AUTH:\n%s", stored[:min(len(stored), 600)])
	}
	// Authenticated, the user may relay; the same RCPT on the MX listener
	// without AUTH is refused (TestRecipientChecksAndNoRelay).
	if err := c.Mail(h.user, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("someone@elsewhere.example", nil); err != nil {
		t.Fatalf("authenticated relay refused: %v", err)
	}
}

// Graceful shutdown: an idle SMTP session is told 421 and the server stops.
func TestShutdownTells421(t *testing.T) {
	h := newHarness(t)
	conn, err := net.DialTimeout("tcp", h.addr("smtp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("banner %q", l)
	}
	fmt.Fprintf(conn, "EHLO client.example.net\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	done := make(chan struct{})
	go func() { h.stop(); close(done) }()
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "421 ") {
		t.Fatalf("idle session on shutdown got %q, %v; want 421", l, err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

// The web listener serves Prometheus metrics from every service.
func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t)
	if err := h.send("bob@example.net", []string{h.user}, testMessage("metrics", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	h.imapLogin(nil).Logout().Wait()
	h.pop3Login().cmd("QUIT")
	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`postern_smtp_messages_accepted_total{service="smtp"} 1`,
		`postern_imap_commands_total{command="LOGIN"} 1`,
		`postern_pop3_logins_total 1`,
		`postern_imap_sessions_total 1`,
		`postern_journal_records_total 1`, // the message went through the delivery journal
		`postern_journal_failed 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The record's flush took time, and the time is counted.
	m := regexp.MustCompile(`(?m)^postern_journal_flush_seconds_total (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatal("metrics lack postern_journal_flush_seconds_total")
	}
	if v, err := strconv.ParseFloat(string(m[1]), 64); err != nil || v <= 0 {
		t.Errorf("postern_journal_flush_seconds_total %s, want > 0", m[1])
	}
}

// authlimit: failed logins count per client across IMAP and SMTP AUTH;
// once over the limit every login from that client is refused, the right
// password too, over IMAP, POP3 and SMTP, and a metric says so.
func TestFailedLoginsBlockTheClient(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	// Loopback is exempt by default; these tests' clients are on it.
	h.writeSetting("authlimit", "failures 3/1h block 1h\nexempt 10.0.0.0/8\n")
	h.start()
	t.Cleanup(h.stop)

	imapTry := func(pass string) error {
		c, err := imapclient.DialInsecure(h.addr("imap"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(h.user, pass).Wait()
	}
	smtpTry := func(pass string) error {
		c, err := smtp.Dial(h.addr("submission"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example.net"); err != nil {
			return err
		}
		return c.Auth(sasl.NewPlainClient("", h.user, pass))
	}
	if err := imapTry("wrong 1"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := imapTry("wrong 2"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := imapTry(h.pass); err != nil {
		t.Fatalf("right password after 2 of 3 failures: %v", err)
	}
	if err := smtpTry("wrong 3"); err == nil {
		t.Fatal("wrong password accepted over SMTP")
	}
	// Three failures: blocked everywhere, whatever the password.
	if err := imapTry(h.pass); err == nil || !strings.Contains(err.Error(), "Too many failed logins") {
		t.Fatalf("IMAP login of a blocked client: %v", err)
	}
	var se *smtp.SMTPError
	if err := smtpTry(h.pass); !errors.As(err, &se) || se.Code != 454 {
		t.Fatalf("SMTP AUTH of a blocked client: %v, want 454", err)
	}
	conn, err := net.DialTimeout("tcp", h.addr("pop3"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	fmt.Fprintf(conn, "USER %s\r\n", h.user)
	r.ReadString('\n')
	fmt.Fprintf(conn, "PASS %s\r\n", h.pass)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "-ERR [SYS/TEMP] Too many failed logins") {
		t.Fatalf("POP3 login of a blocked client: %q", line)
	}
	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	if !strings.Contains(metrics, "postern_auth_blocks_total 1") {
		t.Fatalf("metrics lack the block:\n%s", grepLines(metrics, "postern_auth"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
