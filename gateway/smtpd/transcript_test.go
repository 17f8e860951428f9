package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Transcripts in testdata/transcripts are played against a real listener.
// One connection per file. Lines:
//
//	# comment
//	@option ...     set up the server before connecting (see applyOption)
//	C: text         send text + CRLF (consecutive C:/R: lines go out in one write)
//	R: text         send text raw, Go escapes (\r \n \x00) decoded, no CRLF added
//	S: text         the next reply line is exactly text
//	S~ regexp       the next reply line matches regexp (anchored)
//	E:              the server closes the connection (no more reply lines)
//	!starttls       do the client side of a TLS handshake now
//	!sleep DURATION
//	!shutdown       start Server.Shutdown
//	I: Field=value  the last ConnInfo the session saw has Field = value
//	M: text         the last stored message is text (Go escapes decoded)
//	N: count        so many messages were stored
//	F: address      the last stored message's sender
//	T: a,b          the last stored message's recipients
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			checkGoroutines(t)
			playTranscript(t, f)
		})
	}
}

type transcriptStep struct {
	line int
	kind string
	arg  string
}

func parseTranscript(t *testing.T, path string) (opts []string, steps []transcriptStep) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSuffix(l, "\r")
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "@"):
			opts = append(opts, l[1:])
		case strings.HasPrefix(l, "!"):
			steps = append(steps, transcriptStep{i + 1, l[1:], ""})
		case len(l) >= 2 && (l[1] == ':' || l[1] == '~'):
			arg := strings.TrimPrefix(l[2:], " ")
			steps = append(steps, transcriptStep{i + 1, l[:2], arg})
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, i+1, l)
		}
	}
	return opts, steps
}

// applyOption sets one "@name value" option.
func applyOption(t *testing.T, o *Options, b *testBackend, opt string) {
	name, val, _ := strings.Cut(opt, " ")
	dur := func() time.Duration {
		d, err := time.ParseDuration(val)
		if err != nil {
			t.Fatalf("@%s: %v", name, err)
		}
		return d
	}
	num := func() int64 {
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			t.Fatalf("@%s: %v", name, err)
		}
		return n
	}
	switch name {
	case "tls":
		o.TLSConfig = testTLSConfig(t)
	case "implicittls":
		o.TLSConfig = testTLSConfig(t)
		o.ImplicitTLS = true
	case "authmechs":
		o.AuthMechanisms = []string{}
		if val != "none" {
			o.AuthMechanisms = strings.Fields(val)
		}
	case "insecureauth":
		o.AllowInsecureAuth = true
	case "noauth":
		b.noAuth = true
	case "xclient":
		o.XCLIENTFrom = []netip.Prefix{mustPrefix("127.0.0.0/8")}
	case "xclientfrom":
		o.XCLIENTFrom = []netip.Prefix{mustPrefix(val)}
	case "proxy":
		o.ProxyProtocol = true
		o.TrustedProxies = []netip.Prefix{mustPrefix("127.0.0.0/8")}
	case "proxyfrom":
		o.ProxyProtocol = true
		o.TrustedProxies = []netip.Prefix{mustPrefix(val)}
	case "greetdelay":
		o.GreetDelay = dur()
	case "readtimeout":
		o.ReadTimeout = dur()
	case "datatimeout":
		o.DataTimeout = dur()
	case "maxsessiontime":
		o.MaxSessionTime = dur()
	case "maxerrors":
		o.MaxErrors = int(num())
	case "maxcommands":
		o.MaxCommands = int(num())
	case "maxrcpts":
		o.MaxRecipients = int(num())
	case "maxsize":
		o.MaxMessageSize = num()
	case "maxdataline":
		o.MaxDataLineLength = int(num())
	case "bare":
		if val == "normalize" {
			o.BareLineEndings = BareLFNormalize
		}
	case "nochunking":
		o.EnableChunking = false
	case "minimal":
		*o = Options{Hostname: o.Hostname, Logger: o.Logger, ReadTimeout: o.ReadTimeout, DataTimeout: o.DataTimeout}
	case "banner":
		o.Banner = val
	case "qualify":
		o.QualifyDomain = val
	case "lmtp":
		o.LMTP = true
		b.lmtp = val != "plain" // "@lmtp plain": a session without DataLMTP
	default:
		t.Fatalf("unknown option @%s", name)
	}
}

// unescape decodes Go escapes in a transcript argument.
func unescape(t *testing.T, s string) string {
	u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
	if err != nil {
		t.Fatalf("bad escapes in %q: %v", s, err)
	}
	return u
}

func playTranscript(t *testing.T, path string) {
	opts, steps := parseTranscript(t, path)
	b := &testBackend{}
	o := testOptions(t)
	for _, opt := range opts {
		applyOption(t, &o, b, opt)
	}
	srv, addr := startServer(t, b, o)

	var nc net.Conn
	var err error
	if o.ImplicitTLS {
		nc, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	var out []byte
	flush := func() {
		if len(out) == 0 {
			return
		}
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(out); err != nil {
			t.Fatalf("write: %v", err)
		}
		out = out[:0]
	}
	readLine := func(st transcriptStep) string {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s:%d: want a reply for %q, got error %v", path, st.line, st.arg, err)
		}
		if !strings.HasSuffix(l, "\r\n") {
			t.Fatalf("%s:%d: reply %q does not end in CRLF", path, st.line, l)
		}
		return strings.TrimSuffix(l, "\r\n")
	}
	shutdownDone := make(chan error, 1)
	shutdownStarted := false
	for _, st := range steps {
		if st.kind != "C:" && st.kind != "R:" {
			flush()
		}
		switch st.kind {
		case "C:":
			out = append(out, unescape(t, st.arg)+"\r\n"...)
		case "R:":
			out = append(out, unescape(t, st.arg)...)
		case "S:":
			if got := readLine(st); got != st.arg {
				t.Fatalf("%s:%d: got %q, want %q", path, st.line, got, st.arg)
			}
		case "S~":
			re := regexp.MustCompile("^(?:" + st.arg + ")$")
			if got := readLine(st); !re.MatchString(got) {
				t.Fatalf("%s:%d: got %q, want match for %q", path, st.line, got, st.arg)
			}
		case "E:":
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, err := br.ReadString('\n')
			if err == nil || !errors.Is(err, io.EOF) && !isConnReset(err) {
				t.Fatalf("%s:%d: want the connection closed, got %q, %v", path, st.line, l, err)
			}
		case "I:":
			checkInfo(t, fmt.Sprintf("%s:%d", path, st.line), b.lastInfo(), st.arg)
		case "M:":
			m, ok := b.lastMessage()
			if want := unescape(t, st.arg); !ok || string(m.Data) != want {
				t.Fatalf("%s:%d: stored message %q, want %q", path, st.line, m.Data, want)
			}
		case "F:", "T:":
			m, _ := b.lastMessage()
			got := m.From
			if st.kind == "T:" {
				got = strings.Join(m.Rcpts, ",")
			}
			if want := unescape(t, st.arg); got != want {
				t.Fatalf("%s:%d: stored envelope %s %q, want %q", path, st.line, st.kind, got, want)
			}
		case "N:":
			b.mu.Lock()
			n := len(b.messages)
			b.mu.Unlock()
			if strconv.Itoa(n) != st.arg {
				t.Fatalf("%s:%d: %d messages stored, want %s", path, st.line, n, st.arg)
			}
		case "starttls":
			tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.test"})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("%s:%d: handshake: %v", path, st.line, err)
			}
			tc.SetDeadline(time.Time{})
			nc, br = tc, bufio.NewReader(tc)
		case "shutdown":
			shutdownStarted = true
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shutdownDone <- srv.Shutdown(ctx)
			}()
		default:
			if strings.HasPrefix(st.kind, "sleep ") {
				d, err := time.ParseDuration(strings.TrimPrefix(st.kind, "sleep "))
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(d)
				continue
			}
			t.Fatalf("%s:%d: unknown step %q", path, st.line, st.kind)
		}
	}
	flush()
	if shutdownStarted {
		if err := <-shutdownDone; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
}

func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// checkInfo compares one ConnInfo field with want ("Field=value").
func checkInfo(t *testing.T, where string, c ConnInfo, want string) {
	t.Helper()
	field, val, _ := strings.Cut(want, "=")
	var got string
	switch field {
	case "EarlyTalker":
		got = strconv.FormatBool(c.EarlyTalker)
	case "PipeliningViolation":
		got = strconv.FormatBool(c.PipeliningViolation)
	case "BareLF":
		got = strconv.FormatBool(c.BareLF)
	case "RemoteAddr":
		got = c.RemoteAddr.String()
	case "RemoteIP":
		got = c.RemoteAddr.Addr().String()
	case "LocalAddr":
		got = c.LocalAddr.String()
	case "ProxiedByIP":
		got = c.ProxiedBy.Addr().String()
	case "RemoteName":
		got = c.RemoteName
	case "HELO":
		got = c.HELO
	case "ESMTP":
		got = strconv.FormatBool(c.ESMTP)
	case "AuthUser":
		got = c.AuthUser
	case "TLS":
		got = strconv.FormatBool(c.TLS != nil)
	case "Listener":
		got = c.Listener
	default:
		if v, ok := strings.CutPrefix(field, "Values."); ok {
			got = c.Values[v]
			break
		}
		t.Fatalf("%s: unknown ConnInfo field %q", where, field)
	}
	if got != val {
		t.Fatalf("%s: ConnInfo.%s = %q, want %q", where, field, got, val)
	}
}
