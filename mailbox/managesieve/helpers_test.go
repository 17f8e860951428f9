package managesieve

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/passwd"
	"postern/auth/userdb"
)

// The accounts of the test userdb; every password is testPassword.
const testPassword = "s3cret pass"

// testValidate stands in for the Sieve parser (rules/sieve is another
// package's work): a line "bad" is an error with its line number, a line
// starting "redirect" draws a warning.
func testValidate(src []byte) error {
	for i, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "bad":
			return fmt.Errorf("line %d: unknown command \"bad\"", i+1)
		case strings.HasPrefix(line, "redirect"):
			return warning(fmt.Sprintf("line %d: redirect is limited to 2 a message", i+1))
		}
	}
	return nil
}

type warning string

func (w warning) Error() string { return string(w) }
func (w warning) Warning() bool { return true }

// testEnv is a running server over a real userdb and real home
// directories.
type testEnv struct {
	t    *testing.T
	srv  *Server
	addr string
	dir  string
	cert *x509.Certificate
	done chan error
}

// home is the user's home directory.
func (e *testEnv) home(user string) string { return filepath.Join(e.dir, user) }

// newTestEnv compiles a userdb with alice, bob (disablesieve=1) and dave
// (disableinsecuresieve=1) and starts a server on 127.0.0.1:0.
func newTestEnv(t *testing.T, opts ...func(*Options)) *testEnv {
	t.Helper()
	checkGoroutines(t)
	dir := t.TempDir()
	hash, err := passwd.Hash(testPassword, passwd.SchemeMD5Crypt)
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, u := range []struct{ name, options string }{{"alice", ""}, {"bob", "disablesieve=1"}, {"dave", "disableinsecuresieve=1"}} {
		home := filepath.Join(dir, u.name)
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&src, "%s\tuid=%d|gid=%d|home=%s|systempw=%s", u.name, os.Getuid(), os.Getgid(), home, hash)
		if u.options != "" {
			fmt.Fprintf(&src, "|options=%s", u.options)
		}
		src.WriteString("\n")
	}
	srcPath, dbPath := filepath.Join(dir, "userdb"), filepath.Join(dir, "userdb.db")
	if err := os.WriteFile(srcPath, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := userdb.Compile(srcPath, dbPath); err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Open(dbPath, userdb.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	tlsConf, cert := testTLSConfig(t)
	opt := Options{
		Hostname:         "sieve.example.test",
		TLSConfig:        tlsConf,
		Auth:             auth.NewService(db),
		Logger:           testLogger(t),
		AuthFailureDelay: time.Millisecond,
		Validate:         testValidate,
		Extensions:       func() []string { return []string{"fileinto", "vacation"} },
	}
	for _, o := range opts {
		o(&opt)
	}
	env := &testEnv{t: t, srv: NewServer(opt), dir: dir, cert: cert, done: make(chan error, 1)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.addr = l.Addr().String()
	go func() { env.done <- env.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := env.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-env.done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return env
}

// checkGoroutines fails the test if goroutines it started outlive it
// (registered first, so it runs after the other cleanups).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("MANAGESIEVE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testTLSConfig makes a self-signed certificate for sieve.example.test.
func testTLSConfig(t *testing.T) (*tls.Config, *x509.Certificate) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "sieve.example.test"},
		DNSNames:     []string{"sieve.example.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, cert
}

// client speaks ManageSieve over a real connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects and reads the greeting's capabilities.
func (e *testEnv) dial() (*client, map[string]string) {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: e.t, conn: conn, r: bufio.NewReader(conn)}
	return c, c.capabilities()
}

// login dials, upgrades to TLS and logs in as user with PLAIN.
func (e *testEnv) login(user string) *client {
	e.t.Helper()
	c, _ := e.dial()
	c.startTLS(e)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", user, testPassword)+`"`, "OK")
	return c
}

func plainResponse(authz, user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + password))
}

func (c *client) startTLS(e *testEnv) map[string]string {
	c.t.Helper()
	c.expect("STARTTLS", "OK")
	pool := x509.NewCertPool()
	pool.AddCert(e.cert)
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: "sieve.example.test"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return c.capabilities()
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(raw)); err != nil {
		c.t.Fatalf("send %q: %v", raw, err)
	}
}

// line reads one line, with a literal at its end read in whole: a line
// "{5}" followed by "hello" comes back as "{5}hello".
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	l = strings.TrimSuffix(l, "\r\n")
	if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
		if n, err := strconv.Atoi(l[i+1 : len(l)-1]); err == nil {
			buf := make([]byte, n)
			if _, err := io.ReadFull(c.r, buf); err != nil {
				c.t.Fatalf("read literal: %v", err)
			}
			return l + string(buf) + c.line()
		}
	}
	return l
}

// response reads data lines up to the OK, NO or BYE line.
func (c *client) response() (data []string, status string) {
	c.t.Helper()
	for {
		l := c.line()
		if l == "OK" || l == "NO" || l == "BYE" || strings.HasPrefix(l, "OK ") || strings.HasPrefix(l, "NO ") || strings.HasPrefix(l, "BYE ") {
			return data, l
		}
		data = append(data, l)
	}
}

// cmd sends a command line (CRLF added) and returns its response.
func (c *client) cmd(line string) ([]string, string) {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.response()
}

// expect sends a command and checks that its status line starts with want.
func (c *client) expect(line, want string) []string {
	c.t.Helper()
	data, status := c.cmd(line)
	if !strings.HasPrefix(status, want) {
		c.t.Fatalf("%q: got %q, want %s...", truncate(line), status, want)
	}
	return data
}

// capabilities reads a capability response into a map.
func (c *client) capabilities() map[string]string {
	c.t.Helper()
	data, status := c.response()
	if !strings.HasPrefix(status, "OK") {
		c.t.Fatalf("capability response ends in %q", status)
	}
	caps := map[string]string{}
	for _, l := range data {
		name, value, _ := strings.Cut(l, " ")
		caps[strings.Trim(name, `"`)] = strings.Trim(value, `"`)
	}
	return caps
}

// closed reports whether the server has closed the connection.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil
}

// literal makes a non-synchronizing literal.
func literal(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }
