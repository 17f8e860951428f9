package userdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/passwd"
)

// Hashes of "correct horse" made outside Go (see auth/passwd tests):
// openssl passwd -1 -salt abcdefgh 'correct horse'
const md5Horse = "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80"

// openssl passwd -5 -salt imapsalt 'imap secret'
const sha256ImapSecret = "$5$imapsalt$3EWjzbIL9valDVKU4vNvnfhYRLd9rxLzN28XtTWSdS."

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func compileSource(t *testing.T, source string) (srcPath, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	srcPath = filepath.Join(dir, "userdb")
	dbPath = filepath.Join(dir, "userdb.db")
	writeFile(t, srcPath, source)
	if err := Compile(srcPath, dbPath); err != nil {
		t.Fatal(err)
	}
	return srcPath, dbPath
}

func openDB(t *testing.T, dbPath string, opts ...Option) *DB {
	t.Helper()
	db, err := Open(dbPath, append([]Option{WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

const testSource = "alice@example.test\tuid=1000|gid=1000|home=/srv/mail/example.test/alice|systempw=" + md5Horse + "|imappw=" + sha256ImapSecret + "|quota=10000000S|options=disablepop3=1|mailhost=mx2\n" +
	"bob@example.test\tuid=1001|gid=1002|home=/srv/mail/example.test/bob|mail=Mail/box|systempw=" + md5Horse + "\n" +
	"nopw@example.test\tuid=1|gid=1|home=/srv/nopw\n" +
	"weird@example.test\tuid=1|gid=1|home=/srv/weird|systempw={ROT13}pbeerpg\n"

func TestLookupReturnsAccountFields(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath)
	if db.Name() != "userdb" {
		t.Errorf("Name = %q", db.Name())
	}
	a, err := db.Lookup(context.Background(), "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice@example.test" || a.UID != 1000 || a.GID != 1000 || a.Home != "/srv/mail/example.test/alice" ||
		a.Quota != "10000000S" || a.Module != "userdb" || a.Options["disablepop3"] != "1" || a.Fields["mailhost"] != "mx2" {
		t.Errorf("account = %+v", a)
	}
	if got := a.MaildirPath(); got != "/srv/mail/example.test/alice/Maildir" {
		t.Errorf("MaildirPath = %q", got)
	}
	b, err := db.Lookup(context.Background(), "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if b.GID != 1002 || b.Maildir != "/srv/mail/example.test/bob/Mail/box" {
		t.Errorf("bob = %+v (relative mail is under home)", b)
	}
}

func TestLookupMatchesNamesExactly(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath)
	for _, name := range []string{"Alice@example.test", "alice@EXAMPLE.test", "alice", "alice@example.test ", ""} {
		if _, err := db.Lookup(context.Background(), name); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("Lookup(%q) err = %v, want ErrNoSuchUser", name, err)
		}
	}
}

func TestAuthenticatePrefersPerServicePassword(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath)
	ctx := context.Background()
	// imappw wins for imap: the systempw no longer works there...
	if _, err := db.Authenticate(ctx, "imap", "alice@example.test", "correct horse"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("imap with systempw: err = %v, want ErrBadPassword", err)
	}
	if a, err := db.Authenticate(ctx, "imap", "alice@example.test", "imap secret"); err != nil || a.UID != 1000 {
		t.Errorf("imap with imappw: %v, %v", a, err)
	}
	// ...and other services still use systempw.
	if _, err := db.Authenticate(ctx, "smtp", "alice@example.test", "correct horse"); err != nil {
		t.Errorf("smtp with systempw: %v", err)
	}
	if _, err := db.Authenticate(ctx, "smtp", "alice@example.test", "imap secret"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("smtp with imappw: err = %v, want ErrBadPassword", err)
	}
}

func TestAuthenticateFailures(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath)
	ctx := context.Background()
	if _, err := db.Authenticate(ctx, "imap", "nobody@example.test", "x"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := db.Authenticate(ctx, "imap", "nopw@example.test", ""); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("account without password: %v", err)
	}
	_, err := db.Authenticate(ctx, "imap", "weird@example.test", "correct")
	if !errors.Is(err, auth.ErrBadPassword) || !errors.Is(err, passwd.ErrUnknownScheme) {
		t.Errorf("unknown hash scheme: err = %v, want ErrBadPassword and ErrUnknownScheme", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Lookup(cancelled, "alice@example.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	db.Close()
	if _, err := db.Lookup(ctx, "alice@example.test"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestServiceHonoursDisableOption(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	svc := auth.NewService(openDB(t, dbPath))
	ctx := context.Background()
	if _, err := svc.Authenticate(ctx, auth.ServicePOP3, "alice@example.test", "correct horse"); !errors.Is(err, auth.ErrDisabled) {
		t.Errorf("pop3 for disablepop3=1: %v, want ErrDisabled", err)
	}
	if _, err := svc.Authenticate(ctx, auth.ServiceSMTP, "alice@example.test", "correct horse"); err != nil {
		t.Errorf("smtp: %v", err)
	}
}

func TestSeesRecompiledFileWithoutRestart(t *testing.T) {
	srcPath, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath, WithCheckInterval(0))
	second := openDB(t, dbPath) // another reader holding the old file, default interval
	ctx := context.Background()
	if _, err := db.Lookup(ctx, "carol@example.test"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Fatalf("carol before: %v", err)
	}
	writeFile(t, srcPath, testSource+"carol@example.test\tuid=7|gid=7|home=/srv/carol\n")
	if err := Compile(srcPath, dbPath); err != nil {
		t.Fatal(err)
	}
	a, err := db.Lookup(ctx, "carol@example.test")
	if err != nil || a.UID != 7 {
		t.Fatalf("carol after recompile: %v, %v", a, err)
	}
	// The default interval still picks the change up within about a second.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := second.Lookup(ctx, "carol@example.test")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second reader never saw the recompile: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBadSourceKeepsOldCompiledFile(t *testing.T) {
	srcPath, dbPath := compileSource(t, testSource)
	writeFile(t, srcPath, testSource+"broken line without tab\n")
	err := Compile(srcPath, dbPath)
	var se *SourceError
	if !errors.As(err, &se) || se.Line != 5 {
		t.Fatalf("Compile(bad) err = %v, want SourceError at line 5", err)
	}
	db := openDB(t, dbPath)
	if _, err := db.Lookup(context.Background(), "alice@example.test"); err != nil {
		t.Fatalf("old db lost: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dbPath), ".userdb.db.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestOpenRefusesFilesThatAreNotCompiledUserdbs(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	writeFile(t, junk, strings.Repeat("not a bolt file\n", 1000))
	if _, err := Open(junk); err == nil {
		t.Error("Open(junk) succeeded")
	}
	if _, err := Open(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) err = %v, want ErrNotExist", err)
	}
}

func TestCompiledFileIsPrivate(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	st, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600 (it holds password hashes)", st.Mode().Perm())
	}
}

// Lookups from several readers keep working, with no error and no
// deadlock, while the file is recompiled and renamed over again and again.
func TestConcurrentLookupsWhileRecompiling(t *testing.T) {
	srcPath, dbPath := compileSource(t, testSource)
	readers := []*DB{openDB(t, dbPath, WithCheckInterval(0)), openDB(t, dbPath, WithCheckInterval(time.Millisecond))}
	ctx := context.Background()
	stop := make(chan struct{})
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		db := readers[i%len(readers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := db.Lookup(ctx, "alice@example.test")
				if err != nil || a.UID != 1000 {
					errs <- fmt.Errorf("lookup during recompile: %v, %v", a, err)
					return
				}
				if _, err := db.Authenticate(ctx, "smtp", "bob@example.test", "correct horse"); err != nil {
					errs <- fmt.Errorf("authenticate during recompile: %v", err)
					return
				}
			}
		}()
	}
	for i := 0; i < 30; i++ {
		writeFile(t, srcPath, testSource+fmt.Sprintf("extra%d@example.test\tuid=%d|gid=1|home=/x\n", i, i))
		if err := Compile(srcPath, dbPath); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	time.Sleep(5 * time.Millisecond) // past the 1ms check interval
	for _, db := range readers {
		if _, err := db.Lookup(ctx, "extra29@example.test"); err != nil {
			t.Errorf("reader did not reach the last compile: %v", err)
		}
	}
}

// BenchmarkLookup looks names up in a 100,000-account compiled file.
func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	entries := make([]Entry, 100_000)
	for i := range entries {
		entries[i] = Entry{Name: fmt.Sprintf("user%06d@example.test", i), Fields: map[string]string{
			"uid": "1000", "gid": "1000", "home": fmt.Sprintf("/srv/mail/example.test/user%06d", i),
			"systempw": md5Horse, "quota": "100000000S",
		}}
	}
	dbPath := filepath.Join(dir, "userdb.db")
	if err := WriteDB(entries, dbPath, ""); err != nil {
		b.Fatal(err)
	}
	db, err := Open(dbPath, WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := db.Lookup(ctx, entries[(i*7919)%len(entries)].Name); err != nil {
			b.Fatal(err)
		}
	}
}

// An unknown name costs a bcrypt check too, so timing does not reveal
// which names exist. (A loose lower bound: bcrypt cost 10 takes tens of ms.)
func TestAuthenticateUnknownUserSpendsBcryptTime(t *testing.T) {
	_, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath)
	start := time.Now()
	_, err := db.Authenticate(context.Background(), "imap", "nobody@example.test", "guess")
	if !errors.Is(err, auth.ErrNoSuchUser) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Errorf("unknown user answered in %v; want a bcrypt-sized delay", el)
	}
}

// TestMain lets the test binary act as a separate "makeuserdb" process.
func TestMain(m *testing.M) {
	if src := os.Getenv("USERDB_TEST_COMPILE_SOURCE"); src != "" {
		for i := 0; i < 20; i++ {
			if err := Compile(src, os.Getenv("USERDB_TEST_COMPILE_DB")); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A server process reads while another process recompiles: bbolt's file
// locks must not make either wait or fail.
func TestLookupsWhileAnotherProcessRecompiles(t *testing.T) {
	srcPath, dbPath := compileSource(t, testSource)
	db := openDB(t, dbPath, WithCheckInterval(0))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "USERDB_TEST_COMPILE_SOURCE="+srcPath, "USERDB_TEST_COMPILE_DB="+dbPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	lookups := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("compiling process: %v: %s", err, stderr.String())
			}
			if lookups == 0 {
				t.Fatal("no lookups ran")
			}
			return
		default:
		}
		if _, err := db.Lookup(context.Background(), "alice@example.test"); err != nil {
			t.Fatalf("lookup while another process compiles: %v", err)
		}
		lookups++
	}
}
