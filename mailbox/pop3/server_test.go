package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// crlf is what POP3 must send for a stored message: CRLF line endings and
// a final line ending.
func crlf(stored string) string {
	s := strings.ReplaceAll(stored, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		if strings.HasSuffix(s, "\r") {
			return s + "\n"
		}
		s += "\r\n"
	}
	return s
}

func TestRetrSendsTheDeliveredMessage(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	bodies := []string{
		"Subject: plain LF\n\nline one\nline two\n",
		"Subject: CRLF stored\r\n\r\nkept as is\r\n",
		"Subject: no final newline\n\nlast line",
		"Subject: dots\n\n.\n..\n.leading\nmiddle.\n.\n",
		"Subject: mixed\r\n\nbare\rcr inside\n",
		"Subject: cr at end\n\nx\r",
		"Subject: 8bit Grüße\n\n\xff\xfe binary-ish \x00 bytes\n",
		strings.Repeat("X-Long: "+strings.Repeat("a", 990)+"\n", 200) + "\nbig\n",
	}
	for _, b := range bodies {
		env.deliver(b)
	}
	c := env.login()
	lines, _ := func() ([]string, []byte) { c.send("LIST"); c.line(); return c.multi() }()
	if len(lines) != len(bodies) {
		t.Fatalf("LIST has %d lines, want %d", len(lines), len(bodies))
	}
	var total int
	for i, body := range bodies {
		want := crlf(body)
		n := strconv.Itoa(i + 1)
		listed := c.ok("LIST " + n)
		if listed != "+OK "+n+" "+strconv.Itoa(len(want)) {
			t.Errorf("LIST %s = %q, want size %d", n, listed, len(want))
		}
		status := c.ok("RETR " + n)
		if status != "+OK "+strconv.Itoa(len(want))+" octets" {
			t.Errorf("RETR %s status %q, want %d octets", n, status, len(want))
		}
		_, raw := c.multi()
		got := unstuff(raw)
		if got != want {
			t.Errorf("RETR %s:\n got %q\nwant %q", n, got, want)
		}
		total += len(want)
	}
	if stat := c.ok("STAT"); stat != "+OK "+strconv.Itoa(len(bodies))+" "+strconv.Itoa(total) {
		t.Errorf("STAT = %q, want total %d", stat, total)
	}
	c.ok("QUIT")

	// RETR marked every message Seen in the maildir, as Courier does.
	snap := syncInbox(t, env)
	for _, m := range snap.Messages {
		if !strings.Contains(m.Flags, "S") {
			t.Errorf("message %s flags %q, want S", m.Key, m.Flags)
		}
	}
	if got := env.srv.Stats().MessagesRetrieved; got != int64(len(bodies)) {
		t.Errorf("Stats.MessagesRetrieved = %d", got)
	}
}

// unstuff undoes RFC 1939 byte-stuffing on CRLF lines.
func unstuff(raw []byte) string {
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(raw, []byte("\r\n")) {
		if bytes.HasPrefix(l, []byte(".")) {
			l = l[1:]
		}
		out.Write(l)
	}
	return out.String()
}

func syncInbox(t *testing.T, env *testEnv) *maildir.Snapshot {
	t.Helper()
	f, err := env.md.Folder(maildir.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestTopSendsHeaderAndLines(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("A: 1\nB: 2\n\nb1\nb2\n.b3\nb4\n")
	env.deliver("Only: header\n")
	c := env.login()
	cases := []struct {
		cmd  string
		want []string
	}{
		{"TOP 1 0", []string{"A: 1", "B: 2", ""}},
		{"TOP 1 2", []string{"A: 1", "B: 2", "", "b1", "b2"}},
		{"TOP 1 3", []string{"A: 1", "B: 2", "", "b1", "b2", ".b3"}},
		{"TOP 1 100", []string{"A: 1", "B: 2", "", "b1", "b2", ".b3", "b4"}},
		{"TOP 2 5", []string{"Only: header"}},
	}
	for _, tc := range cases {
		c.ok(tc.cmd)
		got, _ := c.multi()
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s = %q, want %q", tc.cmd, got, tc.want)
		}
	}
	c.ok("QUIT")
	// TOP is not reading: no Seen flag.
	for _, m := range syncInbox(t, env).Messages {
		if strings.Contains(m.Flags, "S") {
			t.Errorf("TOP set Seen on %s", m.Key)
		}
	}
}

func TestDeleQuitRemovesFilesAndUpdatesQuota(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	if err := env.md.SetQuota(maildir.Quota{Bytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	keep := env.deliver("Subject: keep\n\nkeep me\n")
	gone := env.deliver("Subject: gone\n\ndelete me please\n")
	_, before, err := env.md.Quota()
	if err != nil {
		t.Fatal(err)
	}
	c := env.login()
	c.ok("DELE 2")
	if r := c.ok("QUIT"); r != "+OK Postern POP3 server signing off (1 messages left)" {
		t.Errorf("QUIT = %q", r)
	}
	if !c.closed() {
		t.Error("connection open after QUIT")
	}
	snap := syncInbox(t, env)
	if len(snap.Messages) != 1 || snap.Messages[0].Key != keep {
		t.Fatalf("after QUIT: %+v, want only %s", snap.Messages, keep)
	}
	if matches, _ := filepath.Glob(filepath.Join(env.root, "*", gone+"*")); len(matches) != 0 {
		t.Errorf("file still there: %v", matches)
	}
	_, after, err := env.md.Quota()
	if err != nil {
		t.Fatal(err)
	}
	if after.Messages != before.Messages-1 || after.Bytes >= before.Bytes {
		t.Errorf("quota usage %+v -> %+v, want one message fewer", before, after)
	}
	if got := env.srv.Stats().MessagesDeleted; got != 1 {
		t.Errorf("Stats.MessagesDeleted = %d", got)
	}
}

func TestRsetAndDroppedConnectionRemoveNothing(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	env.deliver("Subject: 2\n\ntwo\n")

	c := env.login()
	c.ok("DELE 1")
	c.ok("DELE 2")
	if r := c.ok("RSET"); r != "+OK Maildrop has 2 messages (38 octets)" {
		t.Errorf("RSET = %q", r)
	}
	c.ok("QUIT")

	c = env.login()
	c.ok("DELE 1")
	c.ok("DELE 2")
	c.conn.Close() // no QUIT: the session never reaches UPDATE
	waitFor(t, func() bool { return env.srv.Stats().ActiveSessions == 0 })

	if n := len(syncInbox(t, env).Messages); n != 2 {
		t.Errorf("%d messages left, want 2", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVanishedMessageIsNotAnErrorAtUpdate(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	env.deliver("Subject: 2\n\ntwo\n")
	a := env.login()
	b := env.login()
	a.ok("DELE 1")
	b.ok("DELE 1")
	a.ok("QUIT")
	// b's message 1 is gone now; RETR says so, QUIT still succeeds.
	if r := b.cmd("RETR 2"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("RETR 2 = %q", r)
	}
	b.multi()
	if r := b.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("QUIT after concurrent removal = %q", r)
	}
	if n := len(syncInbox(t, env).Messages); n != 1 {
		t.Errorf("%d messages left, want 1", n)
	}
}

func TestRetrOfMessageRemovedByAnotherSession(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	a := env.login()
	b := env.login()
	a.ok("DELE 1")
	a.ok("QUIT")
	if r := b.cmd("RETR 1"); r != "-ERR [SYS/PERM] Message 1 was removed by another session" {
		t.Errorf("RETR = %q", r)
	}
	b.ok("NOOP")
}

func TestUIDLStableAcrossSessionsAndFlagChanges(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	env.deliver("Subject: 2\n\ntwo\n")
	uidls := func() []string {
		c := env.login()
		c.ok("UIDL")
		lines, _ := c.multi()
		c.ok("RETR 1") // sets Seen: renames the file
		c.multi()
		c.ok("QUIT")
		return lines
	}
	first := uidls()
	second := uidls()
	if strings.Join(first, ",") != strings.Join(second, ",") || len(first) != 2 {
		t.Fatalf("UIDLs changed: %q then %q", first, second)
	}
	for _, l := range first {
		_, id, _ := strings.Cut(l, " ")
		if len(id) == 0 || len(id) > 70 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			t.Errorf("unique-id %q breaks RFC 1939 section 7", id)
		}
	}
	// A new message gets the next number.
	env.deliver("Subject: 3\n\nthree\n")
	third := uidls()
	if len(third) != 3 || third[0] != first[0] || !strings.HasPrefix(third[2], "3 UID3-") {
		t.Errorf("after a new delivery: %q", third)
	}
}

// A maildrop Courier's pop3d has served keeps its UIDLs and sizes.
func TestReadsCourierSizeList(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	k1 := env.deliver("Subject: 1\n\none\n")
	k2 := env.deliver("Subject: 2\n\ntwo\n")
	syncInbox(t, env)
	f, _ := env.md.Folder(maildir.Inbox)
	if _, err := f.Sync(true); err != nil { // Courier moved them to cur/ too
		t.Fatal(err)
	}
	list := "/2 42 1111111111\n" + k1 + ":2,S 20 40:1111111111\n" + k2 + " 20 41:1111111111\n"
	if err := os.WriteFile(filepath.Join(env.root, sizeListName), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	env.deliver("Subject: 3\n\nthree\n")
	c := env.login()
	c.ok("UIDL")
	got, _ := c.multi()
	want := []string{"1 UID40-1111111111", "2 UID41-1111111111", "3 UID42-1111111111"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("UIDL = %q, want %q", got, want)
	}
	c.ok("QUIT")
	data, err := os.ReadFile(filepath.Join(env.root, sizeListName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "/3 43 1111111111\n") || strings.Count(string(data), "\n") != 4 {
		t.Errorf("size list rewritten as %q", data)
	}
}

func TestSTLSThenAuthPlain(t *testing.T) {
	env := newTestEnv(t)
	env.deliver("Subject: secret\n\nover TLS\n")
	c := env.dial()
	if r := c.cmd("USER alice"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Fatalf("USER before STLS = %q", r)
	}
	c.ok("STLS")
	tc := tls.Client(c.conn, env.clientTLSConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c = &client{t: t, conn: tc, r: newReader(tc)}
	c.ok("CAPA")
	capa, _ := c.multi()
	joined := strings.Join(capa, ",")
	if !strings.Contains(joined, "SASL PLAIN") || !strings.Contains(joined, "USER") || strings.Contains(joined, "STLS") {
		t.Errorf("CAPA after STLS = %q", capa)
	}
	if r := c.cmd("STLS"); r != "-ERR Command not permitted when TLS active" {
		t.Errorf("second STLS = %q", r)
	}
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN = %q", r)
	}
	c.ok(base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret pass")))
	c.ok("RETR 1")
	lines, _ := c.multi()
	if lines[len(lines)-1] != "over TLS" {
		t.Errorf("RETR over TLS = %q", lines)
	}
	c.ok("QUIT")
}

// RFC 2595 section 4 / CVE-2011-0411 style injection: commands pipelined
// in plaintext after STLS must be thrown away.
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	c := env.dial()
	c.send("STLS\r\nUSER alice\r\nPASS secret pass")
	if r := c.line(); r != "+OK Begin TLS negotiation" {
		t.Fatalf("STLS = %q", r)
	}
	tc := tls.Client(c.conn, env.clientTLSConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c = &client{t: t, conn: tc, r: newReader(tc)}
	if r := c.cmd("PASS secret pass"); r != "-ERR Send USER first" {
		t.Errorf("injected USER survived STLS: PASS = %q", r)
	}
}

func TestImplicitTLS(t *testing.T) {
	env := newTestEnv(t)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", env.tlsAddr, env.clientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, r: newReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	c.ok("CAPA")
	capa, _ := c.multi()
	if strings.Contains(strings.Join(capa, ","), "STLS") {
		t.Errorf("STLS offered on pop3s: %q", capa)
	}
	// dave has disableinsecurepop3=1: pop3s is secure enough.
	c.ok("USER dave")
	c.ok("PASS x")
	c.ok("QUIT")
}

func TestPipelining(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	c := env.dial()
	c.send("USER alice\r\nPASS secret pass\r\nSTAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\nQUIT")
	want := []string{"+OK Send your password", "+OK Logged in*", "+OK 1 19", "+OK 1 19", "+OK 1 UID1-*", "+OK", "+OK Postern*"}
	for _, w := range want {
		got := c.line()
		if p, ok := strings.CutSuffix(w, "*"); ok && strings.HasPrefix(got, p) || got == w {
			continue
		}
		t.Errorf("got %q, want %q", got, w)
	}
}

func TestLongLinesAndGarbage(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })

	// An overlong line is refused, and the session goes on.
	c := env.dial()
	c.send("NOOP " + strings.Repeat("x", 9000))
	if r := c.line(); r != "-ERR Line too long" {
		t.Errorf("9000-octet line: %q", r)
	}
	if r := c.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("after long line: %q", r)
	}

	// A megabyte without a newline ends the session.
	c = env.dial()
	go c.conn.Write(bytes.Repeat([]byte("A"), 1<<20+10))
	if r := c.line(); r != "-ERR Line too long, closing connection" {
		t.Errorf("1 MB line: %q", r)
	}
	if !c.closed() {
		t.Error("connection open after 1 MB line")
	}

	// Binary garbage gets errors, never a crash.
	c = env.dial()
	c.conn.Write([]byte("\x00\x01\x02\r\n\xff\xfe\xfd\r\nUSER \x00\r\n"))
	for range 3 {
		if r := c.line(); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("garbage answered %q", r)
		}
	}

	// The server still serves others.
	d := env.login()
	d.ok("QUIT")
}

func TestIdleTimeout(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	c := env.dial()
	if r := c.line(); r != "-ERR Autologout; idle for too long" {
		t.Errorf("idle: %q", r)
	}
	if !c.closed() {
		t.Error("connection open after idle timeout")
	}
}

func TestShutdownClosesSessionsWithoutUpdate(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	c := env.login()
	c.ok("DELE 1")
	idle := env.dial()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, cl := range []*client{c, idle} {
		if r := cl.line(); r != "-ERR [SYS/TEMP] Server shutting down" {
			t.Errorf("at shutdown: %q", r)
		}
		if !cl.closed() {
			t.Error("connection open after Shutdown")
		}
	}
	if n := len(syncInbox(t, env).Messages); n != 1 {
		t.Errorf("%d messages after shutdown, want 1 (nothing deleted)", n)
	}
	if _, err := net.DialTimeout("tcp", env.addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	for range 2 {
		if err := <-env.serveErrs; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
		env.serveErrs <- ErrServerClosed // for the cleanup's check
	}
}

func TestAuthFailureDelayAndLimit(t *testing.T) {
	env := newTestEnv(t, func(o *Options) {
		o.AllowInsecureAuth = true
		o.AuthFailureDelay = 100 * time.Millisecond
	})
	c := env.dial()
	start := time.Now()
	c.ok("USER alice")
	if r := c.cmd("PASS nope"); r != "-ERR [AUTH] Invalid user name or password" {
		t.Errorf("PASS = %q", r)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("failure answered after %v, want the delay", d)
	}
	c.ok("USER alice")
	c.cmd("PASS nope")
	c.ok("USER alice")
	if r := c.cmd("PASS nope"); r != "-ERR [AUTH] Too many failed logins, closing connection" {
		t.Errorf("third failure = %q", r)
	}
	if !c.closed() {
		t.Error("open after 3 failures")
	}
	if got := env.srv.Stats().LoginFailures; got != 3 {
		t.Errorf("LoginFailures = %d", got)
	}
}

func TestManyConnectionsLeaveNoGoroutines(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: 1\n\none\n")
	for range 20 {
		c := env.login()
		c.ok("STAT")
		c.conn.Close()
	}
	waitFor(t, func() bool { return env.srv.Stats().ActiveSessions == 0 })
}

// Sessions logging in at the same time agree on every new message's
// unique-id: the size list is updated under a lock.
func TestConcurrentLoginsAgreeOnUIDLs(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	for i := range 15 {
		env.deliver("Subject: " + strconv.Itoa(i) + "\n\nbody\n")
	}
	const sessions = 6
	results := make(chan string, sessions)
	clients := make([]*client, sessions)
	for i := range clients {
		clients[i] = env.dial()
	}
	for _, c := range clients {
		go func() {
			c.send("USER alice\r\nPASS secret pass\r\nUIDL")
			var b strings.Builder
			for {
				l, err := c.r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			results <- b.String()
		}()
	}
	first := <-results
	for range sessions - 1 {
		if got := <-results; got != first {
			t.Errorf("sessions disagree:\n%s\nvs\n%s", got, first)
		}
	}
	if !strings.Contains(first, "15 UID15-") {
		t.Errorf("UIDL listing %q", first)
	}
}

// Shutdown's context bounds the wait: a client that does not read a large
// RETR is cut off.
func TestShutdownDeadlineCutsStuckSessions(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	env.deliver("Subject: big\n\n" + strings.Repeat(strings.Repeat("y", 998)+"\n", 20000))
	c := env.login()
	c.send("RETR 1") // and never read the answer
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := env.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if n := env.srv.Stats().ActiveSessions; n != 0 {
		t.Errorf("%d sessions left", n)
	}
	if n := len(syncInbox(t, env).Messages); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestLoginPurgesStaleTmpFiles(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	old := filepath.Join(env.root, "tmp", "1.dead.delivery")
	fresh := filepath.Join(env.root, "tmp", "2.running.delivery")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-49 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	env.login().ok("QUIT")
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale tmp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh tmp file removed: %v", err)
	}
}

// An STLS whose handshake negotiates an ALPN protocol (the ACME CA's
// acme-tls/1, offered only by the server's challenge configuration) ends
// the connection with nothing sent after the handshake.
func TestSTLSWithALPNProtocolCloses(t *testing.T) {
	env := newTestEnv(t, func(o *Options) {
		c := o.TLSConfig.Clone()
		c.NextProtos = []string{"acme-tls/1"}
		o.TLSConfig = c
	})
	c := env.dial()
	c.ok("STLS")
	cfg := env.clientTLSConfig()
	cfg.NextProtos = []string{"acme-tls/1"}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "acme-tls/1" {
		t.Fatalf("negotiated %q", p)
	}
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := tc.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the handshake: %d bytes, %v; want the connection closed with nothing sent", n, err)
	}
}
