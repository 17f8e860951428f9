package milter

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"postern/filters"
)

// scanner is a test milter in the manner of clamav-milter and Rspamd: it
// decides on the body (VIRUS: reject, SPAM: quarantine, LATER: tempfail,
// CUSTOM: a reply code of its own, DROP: discard), rejects a recipient
// named at RCPT, adds a header field to what it passes, and records what
// it was told.
type scanner struct {
	gomilter.NoOpMilter
	rec  *record
	body bytes.Buffer
}

type record struct {
	mu      sync.Mutex
	connect string
	helo    string
	from    string
	rcpts   []string
	headers []string
	body    string
	macros  map[string]string
}

func (s *scanner) Connect(host string, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.rec.mu.Lock()
	s.rec.connect = host + " " + family + " " + addr.String()
	s.rec.macros = map[string]string{}
	for k, v := range m.Macros {
		s.rec.macros[k] = v
	}
	s.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (s *scanner) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.rec.mu.Lock()
	s.rec.helo = name
	s.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (s *scanner) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.rec.mu.Lock()
	s.rec.from = from
	s.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (s *scanner) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.rec.mu.Lock()
	s.rec.rcpts = append(s.rec.rcpts, rcpt)
	s.rec.mu.Unlock()
	if strings.Contains(rcpt, "blocked@") {
		return gomilter.RespReject, nil
	}
	return gomilter.RespContinue, nil
}

func (s *scanner) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.rec.mu.Lock()
	s.rec.headers = append(s.rec.headers, name+": "+value)
	s.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (s *scanner) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *scanner) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	s.body.Write(chunk)
	return gomilter.RespContinue, nil
}

func (s *scanner) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	body := s.body.String()
	s.rec.mu.Lock()
	s.rec.body = body
	for k, v := range m.Macros {
		s.rec.macros[k] = v
	}
	s.rec.mu.Unlock()
	switch {
	case strings.Contains(body, "VIRUS"):
		return gomilter.RespReject, nil
	case strings.Contains(body, "LATER"):
		return gomilter.RespTempFail, nil
	case strings.Contains(body, "CUSTOM"):
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), "554 5.7.0 Eicar test signature found"), nil
	case strings.Contains(body, "DROP"):
		return gomilter.RespDiscard, nil
	case strings.Contains(body, "SPAM"):
		m.Quarantine("score 15.2")
	}
	m.AddHeader("X-Virus-Scanned", "test-scanner\n on the test host")
	return gomilter.RespAccept, nil
}

func startScanner(t *testing.T) (string, *record) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &scanner{rec: rec} },
		Actions:   gomilter.OptAddHeader | gomilter.OptQuarantine,
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	// ln.Close, not srv.Close: go-milter's Server sets its closed flag
	// without a lock, a race with Serve.
	t.Cleanup(func() { ln.Close(); <-done })
	return sock, rec
}

type message []byte

func (m message) ReadAt(p []byte, off int64) (int, error) { return bytes.NewReader(m).ReadAt(p, off) }
func (m message) Size() int64                             { return int64(len(m)) }

func session() *filters.Session {
	return &filters.Session{
		ID: "s1", ClientIP: netip.MustParseAddr("192.0.2.7"), ClientPort: 40000, ClientName: "client.example.net",
		HELO: "client.example.net", From: "bob@example.org", Rcpts: []string{"alice@example.test"},
	}
}

func newFilter(t *testing.T, network, addr string, onError filters.OnError) *Filter {
	t.Helper()
	f, err := New(Options{Config: Config{Name: "scan", Network: network, Address: addr, OnError: onError, Timeout: 2 * time.Second}, Hostname: "mx.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const header = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: hello\r\n  folded\r\n\r\n"

func TestMilterVerdicts(t *testing.T) {
	sock, rec := startScanner(t)
	f := newFilter(t, "unix", sock, filters.OnErrorTempfail)
	ctx := context.Background()
	cases := []struct {
		body     string
		verdict  filters.Verdict
		code     int
		enhanced string
	}{
		{"clean\r\n", filters.NoOpinion, 0, ""},
		{"X5O!P%@AP VIRUS\r\n", filters.Reject, 550, "5.7.1"},
		{"come back LATER\r\n", filters.Tempfail, 451, "4.7.1"},
		{"CUSTOM\r\n", filters.Reject, 554, "5.7.0"},
		{"cheap SPAM\r\n", filters.Quarantine, 0, ""},
		{"DROP me\r\n", filters.Quarantine, 0, ""},
	}
	for _, c := range cases {
		r := f.CheckData(ctx, session(), message(header+c.body))
		if r.Verdict != c.verdict || r.Code != c.code || r.Enhanced != c.enhanced || r.Filter != "milter:scan" {
			t.Errorf("body %q: %+v", c.body, r)
		}
		if r.Hold != (c.verdict == filters.Quarantine) {
			t.Errorf("body %q: hold %v (a milter's quarantine and discard hold queued copies)", c.body, r.Hold)
		}
		if c.code == 554 && r.Message != "Eicar test signature found" {
			t.Errorf("replycode text %q", r.Message)
		}
	}
	// What the milter was told: the whole transaction, as Postfix tells it.
	r := f.CheckData(ctx, session(), message(header+"line one\r\nline two\r\n"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.connect != "client.example.net tcp4 192.0.2.7" || rec.helo != "client.example.net" || strings.Trim(rec.from, "<>") != "bob@example.org" {
		t.Errorf("told connect %q helo %q from %q", rec.connect, rec.helo, rec.from)
	}
	if n := len(rec.rcpts); n == 0 || strings.Trim(rec.rcpts[n-1], "<>") != "alice@example.test" {
		t.Errorf("told rcpts %q", rec.rcpts)
	}
	if rec.body != "line one\r\nline two\r\n" {
		t.Errorf("told body %q", rec.body)
	}
	if rec.macros["i"] != "s1" || rec.macros["j"] != "mx.example.test" || rec.macros["{client_addr}"] != "192.0.2.7" {
		t.Errorf("macros %v", rec.macros)
	}
	found := false
	for _, h := range rec.headers {
		found = found || strings.HasPrefix(h, "Subject: hello\r\n  folded")
	}
	if !found {
		t.Errorf("headers %q", rec.headers)
	}
	// The field it added, with its folding made safe.
	if len(r.HeaderFields) != 1 || r.HeaderFields[0] != "X-Virus-Scanned: test-scanner\r\n on the test host" {
		t.Errorf("added fields %q", r.HeaderFields)
	}
}

// A recipient the milter refuses at RCPT refuses the message.
func TestMilterRejectsAtRcpt(t *testing.T) {
	sock, _ := startScanner(t)
	s := session()
	s.Rcpts = append(s.Rcpts, "blocked@example.test")
	r := newFilter(t, "unix", sock, filters.OnErrorTempfail).CheckData(context.Background(), s, message(header+"x\r\n"))
	if r.Verdict != filters.Reject || r.Code != 550 {
		t.Fatalf("%+v", r)
	}
}

// A milter that is not there: the configured action.
func TestMilterUnavailable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		on   filters.OnError
		want filters.Verdict
	}{{filters.OnErrorTempfail, filters.Tempfail}, {filters.OnErrorAccept, filters.NoOpinion}, {filters.OnErrorReject, filters.Reject}} {
		r := newFilter(t, "unix", missing, c.on).CheckData(context.Background(), session(), message(header+"x\r\n"))
		if r.Verdict != c.want || !strings.Contains(r.Reason, "failed") {
			t.Errorf("onerror %v: %+v", c.on, r)
		}
	}
}

// A milter that accepts the connection and never answers is cut off by
// the stage's deadline.
func TestMilterStalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	f := newFilter(t, "tcp", ln.Addr().String(), filters.OnErrorTempfail)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := f.CheckData(ctx, session(), message(header+"x\r\n"))
	if r.Verdict != filters.Tempfail || time.Since(start) > 2*time.Second {
		t.Fatalf("%+v after %v", r, time.Since(start))
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"unix:/run/milter.sock":    "unix /run/milter.sock",
		"inet:127.0.0.1:11332":     "tcp 127.0.0.1:11332",
		"inet:[::1]:11332":         "tcp [::1]:11332",
		"localhost:8891":           "tcp localhost:8891",
		"/var/run/clamav/clm.sock": "unix /var/run/clamav/clm.sock",
	} {
		n, a, err := ParseAddress(in)
		if err != nil || n+" "+a != want {
			t.Errorf("ParseAddress(%q) = %q %q %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"unix:relative", "inet:nohost", "inet:", ""} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func FuzzSplitMessage(f *testing.F) {
	f.Add([]byte(header + "body\r\n"))
	f.Add([]byte("no header at all"))
	f.Add([]byte(" leading continuation\r\nA: b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fields, body := splitMessage(raw)
		for _, fl := range fields {
			if strings.ContainsRune(fl.name, ':') {
				t.Fatalf("field name %q has a colon", fl.name)
			}
		}
		if len(body) > len(raw) {
			t.Fatal("body longer than the message")
		}
		v := normalizeFolding(string(raw))
		for k := 0; k < len(v); k++ {
			switch {
			case v[k] == '\n' && (k == 0 || v[k-1] != '\r'):
				t.Fatalf("normalizeFolding(%q) = %q has a bare LF", raw, v)
			case v[k] == '\r' && (k+2 >= len(v) || v[k+1] != '\n' || (v[k+2] != ' ' && v[k+2] != '\t')):
				t.Fatalf("normalizeFolding(%q) = %q starts a line without white space", raw, v)
			}
		}
	})
}

// rewriter is a milter that changes what it passes, as Rspamd's "rewrite
// subject" and its removal of forged spam headers do, and as MIMEDefang
// does with bodies and recipients.
type rewriter struct {
	gomilter.NoOpMilter
}

func (rewriter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	m.ChangeHeader(1, "Subject", "***SPAM*** hello")
	m.ChangeHeader(2, "X-Spam", "") // the second X-Spam goes
	m.ChangeHeader(1, "X-Missing", "added\n as a new field")
	m.ChangeHeader(3, "X-Absent", "")    // deleting what is not there: nothing
	m.InsertHeader(1, "X-Second", "yes") // after the first field
	m.ReplaceBody([]byte("new body\nsecond line\n"))
	m.ChangeFrom("<bounces@example.org>")
	m.AddRecipient("archive@example.test") // go-milter adds the angle brackets
	m.DeleteRecipient("alice@example.test")
	m.AddRecipient("bad address")
	return gomilter.RespAccept, nil
}

func startMilter(t *testing.T, m gomilter.Milter, actions gomilter.OptAction) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return m }, Actions: actions}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return sock
}

// Header and body changes come back as the rewritten message, envelope
// changes as an EnvelopeChange; a bad address is left out.
func TestMilterModifications(t *testing.T) {
	sock := startMilter(t, rewriter{}, gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptChangeBody|
		gomilter.OptChangeFrom|gomilter.OptAddRcpt|gomilter.OptRemoveRcpt)
	f := newFilter(t, "unix", sock, filters.OnErrorTempfail)
	in := "From: bob@example.org\r\nX-Spam: no\r\nSubject: hello\r\n  folded\r\nX-Spam: yes\r\nnot a field\r\nTo: alice@example.test\r\n\r\nold body\r\n"
	r := f.CheckData(context.Background(), session(), message(in))
	if r.Verdict != filters.NoOpinion {
		t.Fatalf("%+v", r)
	}
	want := "From: bob@example.org\r\nX-Second: yes\r\nX-Spam: no\r\nSubject: ***SPAM*** hello\r\nnot a field\r\nTo: alice@example.test\r\n" +
		"X-Missing: added\r\n as a new field\r\n\r\nnew body\r\nsecond line\r\n"
	if string(r.Rewritten) != want {
		t.Errorf("rewritten\n%q\nwant\n%q", r.Rewritten, want)
	}
	e := r.Envelope
	if e == nil || e.From == nil || *e.From != "bounces@example.org" ||
		!slices.Equal(e.AddRcpts, []string{"archive@example.test"}) || !slices.Equal(e.DelRcpts, []string{"alice@example.test"}) {
		t.Errorf("envelope %+v", e)
	}
	if !strings.Contains(r.Reason, `bad recipient "<bad address>" ignored`) || !strings.Contains(r.Reason, "body replaced") {
		t.Errorf("reason %q", r.Reason)
	}
}

func TestEditor(t *testing.T) {
	fields, body := splitMessage([]byte("A: 1\r\nB: 2\r\na: 3\r\n\r\nbody\r\n"))
	ed := editor{header: fields, body: body}
	ed.change("a", 2, "three")
	ed.change("A", 0, "") // 0 counts as the first
	ed.insert(99, "Z", "last")
	ed.insert(0, "Top", "first")
	if got, want := string(ed.message()), "Top: first\r\nB: 2\r\na: three\r\nZ: last\r\n\r\nbody\r\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	// No empty line in the original: one is made before the new body.
	fields, body = splitMessage([]byte("A: 1\r\n"))
	ed = editor{header: fields, body: body}
	ed.replaceBody([]byte("x\ry\r\nz"))
	if got, want := string(ed.message()), "A: 1\r\n\r\nx\r\ny\r\nz\r\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	for in, want := range map[string]string{"<a@b.c>": "a@b.c", "a@b.c": "a@b.c", " <x@y> ": "x@y"} {
		if got, ok := envelopeAddress(in, false); !ok || got != want {
			t.Errorf("envelopeAddress(%q) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"<>", "a b@c", "@c", "a@", "a\r\n@b", "noat"} {
		if _, ok := envelopeAddress(bad, false); ok {
			t.Errorf("envelopeAddress(%q) accepted", bad)
		}
	}
	if a, ok := envelopeAddress("<>", true); !ok || a != "" {
		t.Errorf("null sender: %q %v", a, ok)
	}
}

func FuzzEditor(f *testing.F) {
	f.Add([]byte(header+"body\r\n"), "Subject", uint8(1), "new", []byte("b\n"))
	f.Add([]byte("X: 1\r\n"), "X", uint8(0), "", []byte(""))
	f.Fuzz(func(t *testing.T, raw []byte, name string, index uint8, value string, body []byte) {
		fields, b := splitMessage(raw)
		ed := editor{header: fields, body: b}
		if validFieldName(name) && !strings.ContainsRune(value, 0) {
			ed.change(name, int(index), value)
			ed.insert(int(index), name, value)
		}
		ed.replaceBody(body)
		out := ed.message()
		// The result parses back into at least the fields it was given,
		// and its new body has no bare line end.
		_, nb := splitMessage(out)
		if nb == nil {
			t.Fatalf("no body separator in %q", out)
		}
		if bytes.Contains(bytes.ReplaceAll(nb, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(bytes.ReplaceAll(nb, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatalf("bare line end in new body %q", nb)
		}
	})
}

// A milter speaking protocol version 6, as libmilter (Rspamd, OpenDKIM,
// clamav-milter) does, gets every action asked for at the first try and
// may change the sender.
func TestMilterVersion6ChangeFrom(t *testing.T) {
	addr, conns, offered := startRawMilter(t, 6, nil)
	f := newFilter(t, "tcp", addr, filters.OnErrorTempfail)
	r := f.CheckData(context.Background(), session(), message(header+"x\r\n"))
	if r.Envelope == nil || r.Envelope.From == nil || *r.Envelope.From != "srs@example.org" {
		t.Fatalf("%+v", r)
	}
	if conns.Load() != 1 || gomilter.OptAction(offered.Load()) != fullActions {
		t.Errorf("%d connections, actions offered %#x, want 1 and %#x", conns.Load(), offered.Load(), fullActions)
	}
}

// A version-2 milter is asked again with version 2's actions, and the
// connection that asked for more is closed, not left open.
func TestMilterVersion2Fallback(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr, conns, offered := startRawMilter(t, 2, closed)
	f := newFilter(t, "tcp", addr, filters.OnErrorTempfail)
	r := f.CheckData(context.Background(), session(), message(header+"x\r\n"))
	if r.Verdict != filters.NoOpinion || conns.Load() != 2 || gomilter.OptAction(offered.Load()) != fullActions&v2Actions {
		t.Fatalf("%+v after %d connections, last asking %#x", r, conns.Load(), offered.Load())
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the refused connection was left open")
	}
}

// startRawMilter serves milter sessions with serveRaw on a loopback port;
// it returns the address, the count of connections and what the last one
// asked for.
func startRawMilter(t *testing.T, version uint32, closed chan<- struct{}) (string, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns, offered atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go serveRaw(c, version, &offered, closed)
		}
	}()
	return ln.Addr().String(), &conns, &offered
}

// serveRaw answers one milter session by hand: the given protocol
// version with every action it has, "continue" to each step, and at the
// end of the body a new sender and "accept". A version-2 server sees a
// client that asks for more hang up (closed gets the time it saw EOF).
func serveRaw(c net.Conn, version uint32, offered *atomic.Int64, closed chan<- struct{}) {
	defer c.Close()
	packet := func(code byte, data []byte) error {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
		_, err := c.Write(append(append(b, code), data...))
		return err
	}
	for {
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil || len(msg) == 0 {
			return
		}
		switch msg[0] {
		case 'O':
			asked := binary.BigEndian.Uint32(msg[5:9])
			offered.Store(int64(asked))
			actions := uint32(0x1ff)
			if version == 2 {
				actions = 0x3f
			}
			packet('O', binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, version), actions), 0))
			if version == 2 && asked&^0x3f != 0 {
				// The client gives up on this connection: it must close it.
				var b [1]byte
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(b[:]); err == io.EOF && closed != nil {
					closed <- struct{}{}
				}
				return
			}
		case 'D', 'A':
		case 'Q':
			return
		case 'E':
			packet('e', []byte("<srs@example.org>\x00"))
			packet('a', nil)
		default:
			packet('c', nil)
		}
	}
}
