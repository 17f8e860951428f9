package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/filters/dns/dnstest"
	"postern/internal/gosmtptest"
	"postern/policy"
)

// remoteMTA is "someone else's" SMTP server for outbound tests: go-smtp's
// server on 127.0.0.2 (another loopback address, so outbound delivery
// really picks an address from DNS), recording what it receives, and able
// to refuse recipients or fail temporarily.
type remoteMTA struct {
	addr string
	srv  *smtp.Server

	mu       sync.Mutex
	received []remoteMsg
	tempFail int               // answer 451 to this many DATA commands first
	reject   map[string]string // rcpt -> 550 text
	ended    int               // sessions that ended (QUIT or connection closed)
}

type remoteMsg struct {
	from  string
	rcpts []string
	opts  []*smtp.RcptOptions
	mail  *smtp.MailOptions
	data  []byte
}

func startRemoteMTA(t *testing.T, tune ...func(*smtp.Server)) *remoteMTA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2 (loopback alias): %v", err)
	}
	r := &remoteMTA{addr: ln.Addr().String(), reject: map[string]string{}}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &remoteSession{r: r}, nil }))
	r.srv.Domain = "mx.remote.example"
	r.srv.EnableDSN = true
	r.srv.EnableSMTPUTF8 = true
	r.srv.AllowInsecureAuth = true
	for _, f := range tune {
		f(r.srv)
	}
	gosmtptest.Serve(t, r.srv, ln)
	return r
}

func (r *remoteMTA) messages() []remoteMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]remoteMsg(nil), r.received...)
}

type remoteSession struct {
	r   *remoteMTA
	msg remoteMsg
}

func (s *remoteSession) Reset() { s.msg = remoteMsg{} }
func (s *remoteSession) Logout() error {
	s.r.mu.Lock()
	s.r.ended++
	s.r.mu.Unlock()
	return nil
}
func (s *remoteSession) Mail(from string, opts *smtp.MailOptions) error {
	s.msg = remoteMsg{from: from, mail: opts}
	return nil
}
func (s *remoteSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.r.mu.Lock()
	text, bad := s.r.reject[to]
	s.r.mu.Unlock()
	if bad {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: text}
	}
	s.msg.rcpts = append(s.msg.rcpts, to)
	s.msg.opts = append(s.msg.opts, opts)
	return nil
}
func (s *remoteSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.tempFail > 0 {
		s.r.tempFail--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.msg.data = data
	s.r.received = append(s.r.received, s.msg)
	return nil
}

// mtaHarness is a harness with a DNS server that publishes remote.example's
// MX (pointing at the remote MTA on 127.0.0.2) and a fast retry schedule.
func newMTAHarness(t *testing.T) (*harness, *remoteMTA) {
	t.Helper()
	return newMTAHarnessWith(t, nil)
}

// newMTAHarnessWith is newMTAHarness with prep run on the configuration
// before the server starts.
func newMTAHarnessWith(t *testing.T, prep func(h *harness), tuneRemote ...func(*smtp.Server)) (*harness, *remoteMTA) {
	t.Helper()
	remote := startRemoteMTA(t, tuneRemote...)
	_, port, _ := net.SplitHostPort(remote.addr)
	zone := dnstest.NewZone().Add(
		"remote.example. 300 IN MX 10 mx.remote.example.",
		"mx.remote.example. 300 IN A 127.0.0.2",
		"nomx.example. 300 IN MX 0 .",
	)
	dnsSrv := dnstest.Start(t, zone)
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	h.writeSetting("resolvers", dnsSrv.Addr+"\n")
	h.writeSetting("remoteport", port+"\n")
	h.writeSetting("retryalpha", "1s\n")
	h.writeSetting("retrygamma", "1s\n")
	if prep != nil {
		prep(h)
	}
	h.start()
	t.Cleanup(h.stop)
	return h, remote
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func submit(t *testing.T, h *harness, from string, to []string, msg []byte, opts *smtp.MailOptions, ropts *smtp.RcptOptions) error {
	t.Helper()
	c, err := smtp.Dial(h.addr("submission"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		return err
	}
	if err := c.Mail(from, opts); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, ropts); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write(msg)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func inboxMessages(t *testing.T, h *harness, user string) [][]byte {
	t.Helper()
	var out [][]byte
	md := h.maildir(user)
	for _, sub := range []string{"new", "cur"} {
		files, _ := os.ReadDir(filepath.Join(md, sub))
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(md, sub, f.Name()))
			if err == nil {
				out = append(out, data)
			}
		}
	}
	return out
}

// Outbound: an authenticated user's message to remote.example is delivered
// to the MX that the local DNS server names, on 127.0.0.2, with the DSN
// parameters carried through.
func TestOutboundViaMX(t *testing.T) {
	h, remote := newMTAHarness(t)
	msg := testMessage("to the world", "hello remote\r\n")
	err := submit(t, h, h.user, []string{"bob@remote.example"}, msg,
		&smtp.MailOptions{EnvelopeID: "env-42", Return: smtp.DSNReturnHeaders},
		&smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "bob@remote.example"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery to the remote MTA", func() bool { return len(remote.messages()) == 1 })
	got := remote.messages()[0]
	if got.from != h.user || len(got.rcpts) != 1 || got.rcpts[0] != "bob@remote.example" {
		t.Fatalf("remote got from %q to %v", got.from, got.rcpts)
	}
	if !bytes.HasSuffix(got.data, msg) || !bytes.Contains(got.data, []byte("Received: from client.example.net")) {
		t.Fatalf("remote got:\n%s", got.data)
	}
	if got.mail.EnvelopeID != "env-42" || got.mail.Return != smtp.DSNReturnHeaders || len(got.opts[0].Notify) != 2 {
		t.Fatalf("DSN parameters not passed on: %+v %+v", got.mail, got.opts[0])
	}
}

// Outbound sessions are kept for the next message to the same host; a
// reload builds a new outbound client (new routes, credentials) and must end
// the old one's cached sessions rather than leave them open.
func TestReloadEndsCachedOutboundSessions(t *testing.T) {
	h, remote := newMTAHarness(t)
	if err := submit(t, h, h.user, []string{"bob@remote.example"}, testMessage("cached", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery to the remote MTA", func() bool { return len(remote.messages()) == 1 })
	time.Sleep(100 * time.Millisecond)
	remote.mu.Lock()
	ended := remote.ended
	remote.mu.Unlock()
	if ended != 0 {
		t.Fatalf("the outbound session ended after one message (%d); it should be cached", ended)
	}
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	// Well before the cache's own 5 s idle limit would end it.
	deadline := time.Now().Add(2 * time.Second)
	for {
		remote.mu.Lock()
		ended = remote.ended
		remote.mu.Unlock()
		if ended == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cached outbound session was still open 2 s after the reload")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A temporary failure is retried and later delivered.
func TestOutboundRetriesTemporaryFailure(t *testing.T) {
	h, remote := newMTAHarness(t)
	remote.mu.Lock()
	remote.tempFail = 1
	remote.mu.Unlock()
	if err := submit(t, h, h.user, []string{"carol@remote.example"}, testMessage("retry me", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry to succeed", func() bool { return len(remote.messages()) == 1 })
}

// A permanent failure makes a DSN that arrives in the sender's mailbox,
// from the null sender, naming the recipient, the remote server's reply
// and carrying the ENVID and ORCPT.
func TestOutboundPermanentFailureBounces(t *testing.T) {
	h, remote := newMTAHarness(t)
	remote.mu.Lock()
	remote.reject["nobody@remote.example"] = "no such user here"
	remote.mu.Unlock()
	err := submit(t, h, h.user, []string{"nobody@remote.example"}, testMessage("will bounce", "x\r\n"),
		&smtp.MailOptions{EnvelopeID: "bounce-env"},
		&smtp.RcptOptions{OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "nobody@remote.example"})
	if err != nil {
		t.Fatal(err)
	}
	var dsn []byte
	waitFor(t, "the DSN in the sender's INBOX", func() bool {
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("multipart/report")) {
				dsn = m
				return true
			}
		}
		return false
	})
	for _, want := range []string{
		"Return-Path: <>",
		"report-type=delivery-status",
		"Final-Recipient: rfc822;nobody@remote.example",
		"Original-Recipient: rfc822;nobody@remote.example",
		"Action: failed",
		"Status: 5.1.1",
		"Original-Envelope-Id: bounce-env",
		"no such user here",
	} {
		// Address types are case-insensitive (RFC 3464 2.1.2): compare folded.
		norm := func(b []byte) []byte { return bytes.ToLower(bytes.ReplaceAll(b, []byte("; "), []byte(";"))) }
		if !bytes.Contains(norm(dsn), norm([]byte(want))) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if _, err := mail.CreateReader(bytes.NewReader(dsn)); err != nil {
		t.Errorf("DSN is not a parseable message: %v", err)
	}
}

// A domain with a null MX (RFC 7505) fails at once and bounces.
func TestNullMXBounces(t *testing.T) {
	h, _ := newMTAHarness(t)
	if err := submit(t, h, h.user, []string{"x@nomx.example"}, testMessage("null mx", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the null-MX DSN", func() bool {
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Final-Recipient: rfc822;x@nomx.example")) || bytes.Contains(m, []byte("Final-Recipient: rfc822; x@nomx.example")) {
				return true
			}
		}
		return false
	})
}

// The same message sent with DATA and with BDAT is stored identically.
func TestBDATAndDATAStoreTheSame(t *testing.T) {
	h := newHarness(t)
	msg := testMessage("chunks", strings.Repeat("line of text\r\n", 500))
	send := func(useBDAT bool) {
		conn, err := net.Dial("tcp", h.addr("smtp"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(conn)
		expect := func(prefix string) {
			t.Helper()
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(l, prefix) {
					t.Fatalf("got %q, want %s", l, prefix)
				}
				if len(l) > 3 && l[3] == ' ' {
					return
				}
			}
		}
		expect("220")
		fmt.Fprintf(conn, "EHLO client.example.net\r\n")
		expect("250")
		fmt.Fprintf(conn, "MAIL FROM:<bob@example.net>\r\n")
		expect("250")
		fmt.Fprintf(conn, "RCPT TO:<%s>\r\n", h.user)
		expect("250")
		if useBDAT {
			half := len(msg) / 2
			fmt.Fprintf(conn, "BDAT %d\r\n%s", half, msg[:half])
			expect("250")
			fmt.Fprintf(conn, "BDAT %d LAST\r\n%s", len(msg)-half, msg[half:])
			expect("250")
		} else {
			fmt.Fprintf(conn, "DATA\r\n")
			expect("354")
			fmt.Fprintf(conn, "%s.\r\n", msg)
			expect("250")
		}
		fmt.Fprintf(conn, "QUIT\r\n")
	}
	send(false)
	send(true)
	msgs := inboxMessages(t, h, h.user)
	if len(msgs) != 2 {
		t.Fatalf("%d messages stored", len(msgs))
	}
	body := func(m []byte) []byte { // what follows our trace lines
		i := bytes.Index(m, []byte("From: Bob"))
		return m[i:]
	}
	if !bytes.Equal(body(msgs[0]), body(msgs[1])) {
		t.Fatalf("DATA and BDAT stored different messages")
	}
}

// An SMTPUTF8 recipient address and message deliver.
func TestSMTPUTF8Delivers(t *testing.T) {
	h := newHarness(t)
	h.addUser("jürgen@example.test", "pw")
	c, err := smtp.Dial(h.addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("From: björn@example.net\r\nTo: jürgen@example.test\r\nSubject: grüße\r\n\r\nhallo\r\n")
	if err := c.SendMail("björn@example.net", []string{"jürgen@example.test"}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("SMTPUTF8 send: %v", err)
	}
	msgs := inboxMessages(t, h, "jürgen@example.test")
	if len(msgs) != 1 || !bytes.Contains(msgs[0], []byte("Subject: grüße")) {
		t.Fatalf("stored: %q", msgs)
	}
}

// postern sendmail -t delivers locally and to a remote route, and mailq
// lists a message that is deferred.
func TestSendmailAndMailq(t *testing.T) {
	h, remote := newMTAHarness(t)
	bin := buildPostern(t)
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--config", h.etc}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	msg := "To: alice@example.test, dave@remote.example\nBcc: hidden@remote.example\nSubject: from cron\n\nnightly report\n"
	if out, err := run(msg, "sendmail", "-t", "-i", "-f", "cron@example.test"); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	found := false
	for _, m := range inboxMessages(t, h, h.user) {
		if bytes.Contains(m, []byte("Subject: from cron")) {
			found = true
			if bytes.Contains(m, []byte("Bcc:")) {
				t.Errorf("Bcc line kept: %s", m)
			}
		}
	}
	if !found {
		t.Fatal("sendmail -t did not deliver locally")
	}
	waitFor(t, "sendmail's remote copy", func() bool {
		for _, m := range remote.messages() {
			if len(m.rcpts) == 2 && bytes.Contains(m.data, []byte("nightly report")) {
				return true
			}
		}
		return false
	})

	// A deferred message shows in mailq.
	remote.mu.Lock()
	remote.tempFail = 1000
	remote.mu.Unlock()
	if out, err := run("Subject: deferred\n\nx\n", "sendmail", "erin@remote.example"); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	// In Postfix's format, which monitoring tools (check_mailq -M postfix)
	// parse: the reason in parentheses, the recipient indented under it,
	// the summary line. (Waited for by the reason's line, not a bare "451",
	// which a time-based queue ID may hold.)
	deferred := regexp.MustCompile(`(?m)^\(.*451.*\)\n {41}erin@remote\.example\n\n-- \d+ Kbytes in 1 Request\.\n$`)
	var out string
	waitFor(t, "mailq to show the deferred message", func() bool {
		out, _ = run("", "sendmail", "-bp")
		return deferred.MatchString(out)
	})
	if !deferred.MatchString(out) {
		t.Fatalf("sendmail -bp:\n%s", out)
	}
	if out2, err := run("", "queue", "list"); err != nil || !strings.Contains(out2, "erin@remote.example") {
		t.Fatalf("queue list: %v\n%s", err, out2)
	}
	// Unknown local users are refused with EX_NOUSER.
	_, err := run("Subject: x\n\nx\n", "sendmail", "nobody@example.test")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 67 {
		t.Fatalf("sendmail to an unknown local user: %v", err)
	}
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// buildPostern builds the real binary once per test run.
func buildPostern(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postern-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "postern")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", buildOnce.path, "postern/cmd/postern").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// A user other than root runs sendmail (a cron job, PHP as www-data): the
// message goes through the server's submission socket, which learns the
// sender from the kernel, and the exit statuses are those of root's
// sendmail.
func TestSendmailAsOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run sendmail as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	h, _ := newMTAHarness(t)
	// nobody must reach the binary, etc/datadir and data/submit.sock: make
	// the test's directories searchable as an installation's are.
	for d := h.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	binDir := t.TempDir()
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "postern")
	data, err := os.ReadFile(buildPostern(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(etc, stdin string, args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"--config", etc, "sendmail"}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("sendmail as nobody: %v", err)
		}
		return string(out), 0
	}
	if out, code := run(h.etc, "Subject: from www-data\n\nhello from php\n", "-i", h.user); code != 0 {
		t.Fatalf("sendmail as nobody: exit %d\n%s", code, out)
	}
	var got []byte
	for _, m := range inboxMessages(t, h, h.user) {
		if bytes.Contains(m, []byte("hello from php")) {
			got = m
		}
	}
	if got == nil {
		t.Fatal("the message sent as nobody did not arrive")
	}
	// Who sent it comes from the kernel; the defaults are that user's.
	for _, want := range []string{"(from nobody uid " + nobody.Uid + " via postern sendmail)", "From: nobody@example.test", "Return-Path: <nobody@example.test>"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("stored message lacks %q:\n%s", want, got)
		}
	}
	// An unknown local recipient: EX_NOUSER, as for root.
	if out, code := run(h.etc, "Subject: x\n\nx\n", "nosuchuser@example.test"); code != 67 {
		t.Errorf("unknown recipient: exit %d, want 67\n%s", code, out)
	}
	// No server listening: EX_TEMPFAIL and a message that says so.
	other := t.TempDir()
	os.Chmod(other, 0o755)
	os.WriteFile(filepath.Join(other, "datadir"), []byte(t.TempDir()+"\n"), 0o644)
	if out, code := run(other, "Subject: x\n\nx\n", h.user); code != 75 || !strings.Contains(out, "not reachable") {
		t.Errorf("no server: exit %d, want 75\n%s", code, out)
	}
}

// Aliases to programs and files (Courier's and sendmail's "|command",
// "/path/mbox", "/path/Maildir/") are delivered through the queue as the
// aliasuser, never as root; a program's exit status decides between
// delivered, bounced (a DSN to the sender) and retried.
func TestAliasToProgramAndFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to check that aliases run as the aliasuser")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	out, err := os.MkdirTemp("", "postern-alias")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	os.Chmod(out, 0o777)
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	h.writeSetting("aliases", "prog: |cat > "+out+"/prog.txt; id -u > "+out+"/prog.uid\n"+
		"box: "+out+"/mbox\n"+
		"md: "+out+"/Maildir/\n"+
		"both: alice, |cat > "+out+"/both.txt\n"+
		"bounce: \"|echo no such list >&2; exit 67\"\n")
	h.writeSetting("retryalpha", "1s\n")
	h.start()
	t.Cleanup(h.stop)
	h.srv.mta.Local.Self = []string{buildPostern(t)}
	bin := h.srv.mta.Local.Self[0]
	os.Chmod(filepath.Dir(bin), 0o755) // nobody runs it
	for d := filepath.Dir(bin); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	send := func(to, subject string) {
		t.Helper()
		msg := []byte("From: alice@example.test\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nFrom the start of a line\r\nbody of " + subject + "\r\n")
		if err := h.send("alice@example.test", []string{to}, msg); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
	}
	send("prog@example.test", "to a program")
	send("box@example.test", "to an mbox")
	send("md@example.test", "to a maildir")
	send("both@example.test", "to a list")
	send("bounce@example.test", "to a failing program")
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(out, name))
		return string(b)
	}
	waitFor(t, "the alias deliveries", func() bool {
		md, _ := filepath.Glob(filepath.Join(out, "Maildir", "new", "*"))
		return strings.Contains(read("prog.uid"), nobody.Uid) && strings.Contains(read("mbox"), "body of to an mbox") &&
			len(md) == 1 && strings.Contains(read("both.txt"), "to a list")
	})
	prog := read("prog.txt")
	for _, want := range []string{"Return-Path: <alice@example.test>\nDelivered-To: prog@example.test\n", "Subject: to a program\n", "body of to a program\n"} {
		if !strings.Contains(prog, want) {
			t.Errorf("program's input lacks %q:\n%s", want, prog)
		}
	}
	if strings.TrimSpace(read("prog.uid")) != nobody.Uid {
		t.Errorf("program ran as uid %q, want nobody (%s)", read("prog.uid"), nobody.Uid)
	}
	mbox := read("mbox")
	if !strings.HasPrefix(mbox, "From alice@example.test ") || !strings.Contains(mbox, "\n>From the start of a line\n") {
		t.Errorf("mbox entry:\n%s", mbox)
	}
	for _, p := range []string{filepath.Join(out, "mbox"), filepath.Join(out, "Maildir")} {
		fi, err := os.Stat(p)
		if err != nil || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != nobody.Uid {
			t.Errorf("%s not written as nobody: %v", p, err)
		}
	}
	// The list's account member got its copy too, directly.
	var inList, dsn bool
	waitFor(t, "the DSN for the failing program", func() bool {
		inList, dsn = false, false
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Subject: to a list")) {
				inList = true
			}
			if bytes.Contains(m, []byte("Final-Recipient: rfc822; bounce@example.test")) && bytes.Contains(m, []byte("no such list")) {
				dsn = true
			}
		}
		return inList && dsn
	})
}

// A DSN to a sender that is an alias (a list owner) follows the alias, as
// mail to that address would, instead of bouncing into the void.
func TestDSNToAliasSender(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("aliases", "list-owner: alice\n")
	})
	bin := buildPostern(t)
	cmd := exec.Command(bin, "--config", h.etc, "sendmail", "-i", "-f", "list-owner@example.test", "someone@nomx.example")
	cmd.Stdin = strings.NewReader("Subject: list post\n\nto a domain that takes no mail\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	waitFor(t, "the DSN in the list owner's (alice's) mailbox", func() bool {
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Final-Recipient: rfc822; someone@nomx.example")) && bytes.Contains(m, []byte("Action: failed")) {
				return true
			}
		}
		return false
	})
}

// A message for an account with its own uid, delivered during the SMTP
// session by the root server through the delivery journal (the file is
// written just after the 250), is owned by the account.
func TestSMTPDeliveryGivesTheFileToTheAccount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to deliver as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	h := newHarness(t)
	passable(h.dir)
	h.addUser("bob@example.test", "pw", "--uid", nobody.Uid, "--gid", nobody.Gid)
	if err := sendOne(h.addr("smtp"), "bob@example.test", testMessage("owned", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	md := h.maildir("bob@example.test") // settles the deferred write
	files, _ := os.ReadDir(filepath.Join(md, "new"))
	if len(files) != 1 {
		t.Fatalf("%d messages in new/", len(files))
	}
	fi, err := os.Stat(filepath.Join(md, "new", files[0].Name()))
	if err != nil || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != nobody.Uid {
		t.Fatalf("the message file is not nobody's: %v %+v", err, fi.Sys())
	}
	if h.srv.mta.journal == nil || h.srv.mta.journal.Stats().Records == 0 {
		t.Fatal("the delivery did not go through the journal")
	}
}

// A destination named more than once in a message gets one copy: the same
// RCPT twice, another case of the same account, an alias with that account
// among its members, a remote address with its domain in capitals; and a
// sendmail -t message naming the same person in To, Cc and Bcc.
func TestDuplicateRecipientsGetOneCopy(t *testing.T) {
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("aliases", "team: alice, dave@remote.example\n")
	})
	count := func(subject string) int {
		n := 0
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Subject: "+subject+"\r\n")) || bytes.Contains(m, []byte("Subject: "+subject+"\n")) {
				n++
			}
		}
		return n
	}
	rcpts := []string{"alice@example.test", "alice@example.test", "ALICE@example.test", "team@example.test", "dave@remote.example", "dave@REMOTE.example"}
	if err := submit(t, h, h.user, rcpts, testMessage("dup smtp", "one copy each\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := count("dup smtp"); n != 1 {
		t.Fatalf("alice has %d copies, want 1", n)
	}
	waitFor(t, "the remote copy", func() bool { return len(remote.messages()) == 1 })
	if got := remote.messages()[0].rcpts; len(got) != 1 || got[0] != "dave@remote.example" {
		t.Fatalf("remote recipients %v, want [dave@remote.example]", got)
	}
	// Distinct destinations stay distinct: an address extension is its own.
	if err := submit(t, h, h.user, []string{"alice@example.test", "alice-lists@example.test"}, testMessage("dup ext", "two\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := count("dup ext"); n != 2 {
		t.Fatalf("alice and alice-lists gave %d copies, want 2", n)
	}

	cmd := exec.Command(buildPostern(t), "--config", h.etc, "sendmail", "-t", "-i")
	cmd.Stdin = strings.NewReader("To: alice@example.test\nCc: Alice@example.test\nBcc: alice@example.test\nSubject: dup sendmail\n\nx\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	if n := count("dup sendmail"); n != 1 {
		t.Fatalf("sendmail -t: alice has %d copies, want 1", n)
	}
}

// init --postmaster makes the role addresses work from the first start:
// postmaster@ (RFC 5321 4.5.1), a bare RCPT TO:<postmaster>, abuse@ (RFC
// 2142) all reach the named account. Without it they are refused.
func TestPostmasterAndAbuseFromInit(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) {
		if err := policy.SetPostmaster(h.etc, h.user); err != nil {
			t.Fatal(err)
		}
	})
	for _, rcpt := range []string{"postmaster@example.test", "POSTMASTER", "abuse@example.test", "MAILER-DAEMON@example.test"} {
		if err := h.send("someone@client.example.net", []string{rcpt}, testMessage("to "+rcpt, "x\r\n")); err != nil {
			t.Fatalf("to %s: %v", rcpt, err)
		}
	}
	got := 0
	for _, m := range inboxMessages(t, h, h.user) {
		if bytes.Contains(m, []byte("Subject: to ")) {
			got++
		}
	}
	if got != 4 {
		t.Fatalf("%d of 4 role-address messages in the postmaster's inbox", got)
	}

	// The file init writes without --postmaster leaves them commented out.
	h2, _ := newMTAHarness(t)
	err := h2.send("someone@client.example.net", []string{"postmaster@example.test"}, testMessage("x", "x\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("postmaster without an alias: %v, want 550", err)
	}
}

// NOTIFY=SUCCESS is answered (RFC 3461): a local recipient, delivered
// during the SMTP session, gives a "delivered" DSN; a remote one taken by
// a next hop without DSN, "relayed"; one whose next hop offers DSN gets
// the parameter passed on and no notice from us. Without NOTIFY, no
// success DSN.
func TestSuccessDSNs(t *testing.T) {
	success := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}}
	dsns := func(h *harness, action string) []string {
		var out []string
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Action: "+action)) {
				_, after, _ := bytes.Cut(m, []byte("Final-Recipient: "))
				line, _, _ := bytes.Cut(after, []byte("\n"))
				out = append(out, string(line))
			}
		}
		return out
	}

	h, remote := newMTAHarness(t)
	if err := submit(t, h, h.user, []string{h.user}, testMessage("no notify", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := submit(t, h, h.user, []string{h.user, "bob@remote.example"}, testMessage("notify", "x\r\n"), nil, success); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivered DSN", func() bool { return len(dsns(h, "delivered")) > 0 })
	waitFor(t, "the remote copy", func() bool { return len(remote.messages()) == 1 })
	if got := remote.messages()[0].opts[0].Notify; len(got) != 2 {
		t.Fatalf("NOTIFY passed on as %v", got)
	}
	time.Sleep(300 * time.Millisecond) // a wrong relayed DSN would be queued by now
	if got := dsns(h, "delivered"); len(got) != 1 || got[0] != "rfc822; alice@example.test" {
		t.Fatalf("delivered DSNs for %q, want one for alice", got)
	}
	if got := dsns(h, "relayed"); len(got) != 0 {
		t.Fatalf("relayed DSNs %q for a next hop that offers DSN", got)
	}
	if n := len(inboxMessages(t, h, h.user)); n != 3 {
		t.Fatalf("%d messages in the inbox, want 3 (two sent, one DSN)", n)
	}

	h2, _ := newMTAHarnessWith(t, nil, func(s *smtp.Server) { s.EnableDSN = false })
	if err := submit(t, h2, h2.user, []string{"bob@remote.example"}, testMessage("notify relayed", "x\r\n"), nil, success); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relayed DSN", func() bool { return len(dsns(h2, "relayed")) > 0 })
	if got := dsns(h2, "relayed"); got[0] != "rfc822; bob@remote.example" {
		t.Fatalf("relayed DSN for %q", got)
	}
}

// senderlogin "own" (what postern init writes): an authenticated user may
// send as addresses that reach its own account (its address in any case,
// an extension, an alias it is in) and as <>, not as another user or an
// outside address; "any" lets it use any.
func TestSenderLogin(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) {
		h.addUser("bob@example.test", "bob pass")
		h.writeSetting("aliases", "postmaster: alice\nsales: bob, alice\nsupport: bob\n")
	})
	for _, from := range []string{"alice@example.test", "Alice@EXAMPLE.test", "alice-lists@example.test", "postmaster@example.test", "sales@example.test", ""} {
		if err := submit(t, h, from, []string{"bob@example.test"}, testMessage("as "+from, "x\r\n"), nil, nil); err != nil {
			t.Errorf("alice as <%s>: %v", from, err)
		}
	}
	for _, from := range []string{"bob@example.test", "support@example.test", "alice@elsewhere.example", "nobody@example.test"} {
		err := submit(t, h, from, []string{"bob@example.test"}, testMessage("as "+from, "x\r\n"), nil, nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 553 || !strings.Contains(se.Message, "not owned by user") {
			t.Errorf("alice as <%s>: %v, want 553 not owned", from, err)
		}
	}
	h.writeSetting("senderlogin", "any\n")
	h.restart()
	if err := submit(t, h, "bob@example.test", []string{"bob@example.test"}, testMessage("any", "x\r\n"), nil, nil); err != nil {
		t.Fatalf("senderlogin any: %v", err)
	}
}

// hosteddomains: mail to an alias domain reaches the target domain's
// mailbox, and so does a DSN to a sender written with the alias domain
// (the queue's local delivery, not the SMTP session, resolves that one).
func TestAliasDomain(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("hosteddomains", "alias.test\texample.test\n")
	})
	if err := h.send("someone@client.example.net", []string{"Alice@alias.test"}, testMessage("via alias domain", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildPostern(t), "--config", h.etc, "sendmail", "-i", "-f", "alice@alias.test", "someone@nomx.example")
	cmd.Stdin = strings.NewReader("Subject: to nowhere\n\nx\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	waitFor(t, "the message and the DSN in alice's mailbox", func() bool {
		got, dsn := false, false
		for _, m := range inboxMessages(t, h, h.user) {
			got = got || bytes.Contains(m, []byte("Subject: via alias domain"))
			dsn = dsn || bytes.Contains(m, []byte("Final-Recipient: rfc822; someone@nomx.example"))
		}
		return got && dsn
	})
}

// A message that has made more hops than hoplimit allows (RFC 5321 6.3:
// a mail loop) is refused with 554 5.4.6 during the SMTP session, and by
// sendmail; one at the limit passes.
func TestMailLoopRefused(t *testing.T) {
	h, _ := newMTAHarness(t)
	hops := func(n int) []byte {
		return []byte(strings.Repeat("Received: from a.example by b.example; Thu, 26 Nov 2026 10:00:00 +0000\r\n", n) + "Subject: hops\r\n\r\nx\r\n")
	}
	err := h.send("someone@client.example.net", []string{h.user}, hops(101))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 4, 6}) {
		t.Fatalf("101 hops: %v, want 554 5.4.6", err)
	}
	if err := h.send("someone@client.example.net", []string{h.user}, hops(100)); err != nil {
		t.Fatalf("100 hops: %v", err)
	}
	cmd := exec.Command(buildPostern(t), "--config", h.etc, "sendmail", "-i", h.user)
	cmd.Stdin = bytes.NewReader(hops(101))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 65 || !strings.Contains(string(out), "Too many hops") {
		t.Fatalf("sendmail with 101 hops: %v (want exit 65)\n%s", err, out)
	}
	if n := len(inboxMessages(t, h, h.user)); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}
}

// esmtpacceptmailfor: a perimeter MX or backup MX takes mail for a domain
// that is not its own from any client and relays it on (here by MX to
// the "inner" server); other foreign domains are still refused.
func TestRelayDomainFromAnyClient(t *testing.T) {
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("esmtpacceptmailfor", "remote.example\n")
	})
	if err := h.send("someone@client.example.net", []string{"bob@remote.example"}, testMessage("via the gateway", "x\r\n")); err != nil {
		t.Fatalf("to a relay domain: %v", err)
	}
	waitFor(t, "the relayed copy", func() bool { return len(remote.messages()) == 1 })
	if got := remote.messages()[0]; got.from != "someone@client.example.net" || got.rcpts[0] != "bob@remote.example" {
		t.Fatalf("relayed from %q to %v", got.from, got.rcpts)
	}
	err := h.send("someone@client.example.net", []string{"bob@elsewhere.example"}, testMessage("open relay?", "x\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("to a foreign domain: %v, want 554", err)
	}
}

// SRS: an alias that forwards outside sends its copy with the author's
// SRS address as envelope sender (the local copy keeps the author's); a
// bounce to that address, from any client, goes back to the author; a
// forged or damaged one is refused during the session.
func TestSRSForwardAndBounceBack(t *testing.T) {
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("aliases", "team: alice, bob@remote.example\n")
		h.writeSetting("srssecrets", "a long enough SRS secret\n")
	})
	if err := h.send("carol@remote.example", []string{"team@example.test"}, testMessage("to the team", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forwarded copy", func() bool { return len(remote.messages()) == 1 })
	fwd := remote.messages()[0]
	if !strings.HasPrefix(fwd.from, "SRS0=") || !strings.HasSuffix(fwd.from, "=remote.example=carol@example.test") || fwd.rcpts[0] != "bob@remote.example" {
		t.Fatalf("forwarded from %q to %v", fwd.from, fwd.rcpts)
	}
	waitFor(t, "alice's copy", func() bool { return len(inboxMessages(t, h, h.user)) == 1 })
	if m := inboxMessages(t, h, h.user)[0]; !bytes.HasPrefix(m, []byte("Return-Path: <carol@remote.example>")) {
		t.Fatalf("local copy:\n%.200s", m)
	}

	// bob's server bounces it: the bounce reaches carol.
	if err := h.send("", []string{fwd.from}, testMessage("Undelivered Mail", "bob has left\r\n")); err != nil {
		t.Fatalf("bounce to the SRS address: %v", err)
	}
	waitFor(t, "the bounce passed on to the author", func() bool { return len(remote.messages()) == 2 })
	if b := remote.messages()[1]; b.from != "" || len(b.rcpts) != 1 || b.rcpts[0] != "carol@remote.example" {
		t.Fatalf("bounce passed on from %q to %v", b.from, b.rcpts)
	}

	// Nobody can relay through us by making SRS addresses up.
	forged := strings.Replace(fwd.from, "=carol@", "=mallory@", 1)
	for _, bad := range []string{forged, "SRS0=abcd=AA=remote.example=carol@example.test", "SRS0=x@example.test"} {
		err := h.send("", []string{bad}, testMessage("relay?", "x\r\n"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("to %s: %v, want 550 5.1.1", bad, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(remote.messages()); n != 2 {
		t.Fatalf("%d messages reached the remote server, want 2", n)
	}
}

// sendmail -bs: an SMTP session on standard input, answered to the end
// (QUIT gets its 221 even when the input ends right after it), whose
// message names the local user in Received and gets the Date and
// Message-ID a script left out. Addresses without a domain are local, as
// with sendmail -t: "cron" and "alice" get the default domain.
func TestSendmailBS(t *testing.T) {
	h, _ := newMTAHarness(t)
	cmd := exec.Command(buildPostern(t), "--config", h.etc, "sendmail", "-bs")
	local, domain, _ := strings.Cut(h.user, "@")
	cmd.Stdin = strings.NewReader("EHLO localhost\r\nMAIL FROM:<cron>\r\nRCPT TO:<" + local + ">\r\nDATA\r\nSubject: via -bs\r\n\r\nhello\r\n.\r\nQUIT\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sendmail -bs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\r\n250 2.0.0 Ok: queued as ") || !strings.HasSuffix(string(out), "221 2.0.0 Bye\r\n") {
		t.Fatalf("sendmail -bs said:\n%s", out)
	}
	msgs := inboxMessages(t, h, h.user)
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered", len(msgs))
	}
	m := string(msgs[0])
	if !strings.Contains(m, fmt.Sprintf("Received: from localhost (uid %d", os.Getuid())) || !strings.Contains(m, "\nDate: ") || !strings.Contains(m, "\nMessage-ID: <") ||
		!strings.HasPrefix(m, "Return-Path: <cron@"+domain+">") {
		t.Fatalf("delivered:\n%s", m)
	}
}

// relayverify: for a relay domain without relayrecipients, the gateway asks
// the next hop (RCPT TO without a message) before answering: an address it
// refuses gets 550 during the session (no backscatter), one it takes is
// relayed, and while it cannot be reached an unknown address is deferred.
func TestRelayVerify(t *testing.T) {
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("esmtpacceptmailfor", "remote.example\n")
		h.writeSetting("relayverify", "yes\n")
	})
	remote.mu.Lock()
	remote.reject["nobody@remote.example"] = "No such user"
	remote.mu.Unlock()
	err := h.send("someone@client.example.net", []string{"nobody@remote.example"}, testMessage("to nobody", "x\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || !strings.Contains(se.Message, "undeliverable address") {
		t.Fatalf("to an address the next hop refuses: %v, want 550 5.1.1", err)
	}
	if err := h.send("someone@client.example.net", []string{"bob@remote.example"}, testMessage("to bob", "x\r\n")); err != nil {
		t.Fatalf("to an address the next hop takes: %v", err)
	}
	waitFor(t, "the relayed copy", func() bool { return len(remote.messages()) == 1 })
	if got := remote.messages()[0]; got.rcpts[0] != "bob@remote.example" || got.from != "someone@client.example.net" {
		t.Fatalf("relayed from %q to %v", got.from, got.rcpts)
	}
	// The probes sent no message: only bob's copy arrived.
	remote.srv.Close() // the next hop goes away
	err = h.send("someone@client.example.net", []string{"carol@remote.example"}, testMessage("to carol", "x\r\n"))
	if !errors.As(err, &se) || se.Code != 450 || se.EnhancedCode != (smtp.EnhancedCode{4, 1, 1}) {
		t.Fatalf("next hop down, unverified address: %v, want 450 4.1.1", err)
	}
	// bob was verified a moment ago: still taken while the next hop is down.
	if err := h.send("someone@client.example.net", []string{"bob@remote.example"}, testMessage("to bob again", "x\r\n")); err != nil {
		t.Fatalf("verified address, next hop down: %v", err)
	}
}

// cron's way: "sendmail -FCronDaemon -i -odi -oem root" and MAILTO lists
// without domains reach root's alias; a bare -f sender gets the default
// domain too (so its bounces come back here); a full mailbox is refused
// for good (exit 69), not "try again" (75).
func TestSendmailBareNames(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) {
		if err := policy.SetPostmaster(h.etc, h.user); err != nil {
			t.Fatal(err)
		}
	})
	bin := buildPostern(t)
	run := func(stdin string, args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"--config", h.etc, "sendmail"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := run("Subject: Cron <root@host> run-parts\n\noutput\n", "-FCronDaemon", "-i", "-odi", "-oem", "-f", "cron", "root"); code != 0 {
		t.Fatalf("sendmail root: %d %s", code, out)
	}
	if code, out := run("To: Cron Daemon <root>, postmaster\nSubject: MAILTO list\n\noutput\n", "-t", "-i"); code != 0 {
		t.Fatalf("sendmail -t with bare names: %d %s", code, out)
	}
	var cron, list int
	for _, m := range inboxMessages(t, h, h.user) {
		if bytes.Contains(m, []byte("Subject: Cron <root@host>")) && bytes.HasPrefix(m, []byte("Return-Path: <cron@example.test>")) {
			cron++
		}
		if bytes.Contains(m, []byte("Subject: MAILTO list")) {
			list++
		}
	}
	if cron != 1 || list != 1 {
		t.Fatalf("cron's mail %d, the MAILTO list's %d (one each wanted)", cron, list)
	}
	if code, out := run("Subject: x\n\nx\n", "nobody"); code != 67 || !strings.Contains(out, "nobody@example.test") {
		t.Fatalf("unknown bare name: %d %s", code, out)
	}
	if err := os.WriteFile(filepath.Join(h.maildir(h.user), "maildirsize"), []byte("1S\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("Subject: too big\n\nxxxxxxxx\n", h.user); code != 69 {
		t.Fatalf("to a full mailbox: %d %s, want 69", code, out)
	}
}

// An MX that resolves to this server's own smtp listener (another name for
// it) is seen as a loop: bounced with 5.4.6 at once, not sent to ourselves.
func TestSelfMXByAddressLoops(t *testing.T) {
	h, _ := newMTAHarness(t)
	_, port, _ := net.SplitHostPort(h.addr("smtp"))
	// Deliveries to MX hosts go to remoteport: make it our own smtp port,
	// and give a domain an MX that resolves to 127.0.0.1.
	h.writeSetting("remoteport", port+"\n")
	zone := dnstest.NewZone().Add(
		"alias-of-us.example. 300 IN MX 10 mx.alias-of-us.example.",
		"mx.alias-of-us.example. 300 IN A 127.0.0.1",
	)
	h.writeSetting("resolvers", dnstest.Start(t, zone).Addr+"\n")
	// The listener was bound to port 0; name the port it got, as a real
	// configuration does.
	listen, err := os.ReadFile(filepath.Join(h.etc, "listen"))
	if err != nil {
		t.Fatal(err)
	}
	h.writeSetting("listen", strings.Replace(string(listen), "smtp 127.0.0.1:0", "smtp 127.0.0.1:"+port, 1))
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := submit(t, h, h.user, []string{"x@alias-of-us.example"}, testMessage("loop?", "x\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the loop's DSN", func() bool {
		for _, m := range inboxMessages(t, h, h.user) {
			if bytes.Contains(m, []byte("Status: 5.4.6")) && bytes.Contains(m, []byte("loops back to myself")) {
				return true
			}
		}
		return false
	})
}

// softbounce: every 5xx the server would answer goes out as 4xx (Postfix's
// soft_bounce), so the client keeps the mail and tries again.
func TestSoftBounceReplies(t *testing.T) {
	h, _ := newMTAHarnessWith(t, func(h *harness) { h.writeSetting("softbounce", "yes\n") })
	for _, rcpt := range []string{"nobody@example.test", "someone@elsewhere.example"} {
		err := h.send("x@client.example.net", []string{rcpt}, testMessage("soft", "x\r\n"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code/100 != 4 || se.EnhancedCode[0] != 4 {
			t.Errorf("to %s: %v, want a 4xx with a 4.X.X code", rcpt, err)
		}
	}
	if err := h.send("x@client.example.net", []string{h.user}, testMessage("fine", "x\r\n")); err != nil {
		t.Fatalf("a good recipient: %v", err)
	}
}
