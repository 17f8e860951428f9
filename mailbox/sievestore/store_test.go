package sievestore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// newStore returns a store over a fresh home directory.
func newStore(t *testing.T, lim Limits) (*Store, string) {
	t.Helper()
	home := filepath.Join(t.TempDir(), "alice")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	return Open(home, Owner{UID: os.Getuid(), GID: os.Getgid()}, lim), home
}

func mustPut(t *testing.T, s *Store, name, src string) {
	t.Helper()
	if err := s.Put(name, []byte(src)); err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
}

func listString(t *testing.T, s *Store) string {
	t.Helper()
	scripts, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var parts []string
	for _, sc := range scripts {
		p := fmt.Sprintf("%s:%d", sc.Name, sc.Size)
		if sc.Active {
			p += "*"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func TestPutGetListUsePigeonholeLayout(t *testing.T) {
	s, home := newStore(t, Limits{})
	if got := listString(t, s); got != "" {
		t.Fatalf("fresh store lists %q", got)
	}
	mustPut(t, s, "vacation", "keep;\n")
	mustPut(t, s, "Ferien ☀ \"quoted\"", "discard;\n")
	mustPut(t, s, "vacation", "stop;\r\n") // replaces

	src, err := os.ReadFile(filepath.Join(home, "sieve", "vacation.sieve"))
	if err != nil || string(src) != "stop;\r\n" {
		t.Fatalf("sieve/vacation.sieve = %q, %v", src, err)
	}
	info, err := os.Stat(filepath.Join(home, "sieve", "vacation.sieve"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("script mode %v, %v; want 0600", info.Mode(), err)
	}
	got, err := s.Get("Ferien ☀ \"quoted\"")
	if err != nil || string(got) != "discard;\n" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if want := "Ferien ☀ \"quoted\":9 vacation:7"; listString(t, s) != want {
		t.Errorf("List = %q, want %q", listString(t, s), want)
	}
	if _, err := s.Get("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	// Nothing is left behind in sieve/tmp.
	if left, _ := os.ReadDir(filepath.Join(home, "sieve", "tmp")); len(left) != 0 {
		t.Errorf("sieve/tmp holds %d files after Put", len(left))
	}
}

func TestListSkipsWhatIsNotAScript(t *testing.T) {
	s, home := newStore(t, Limits{})
	mustPut(t, s, "real", "keep;")
	dir := filepath.Join(home, "sieve")
	for name, content := range map[string]string{
		"real.svbin":        "binary",
		".hidden.sieve":     "x",
		"notes.txt":         "x",
		".sieve":            "x",
		"tmp/put-123":       "half a scr",
		"ctl\x01char.sieve": "x",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "adir.sieve"), 0o700)
	os.Symlink("/etc/passwd", filepath.Join(dir, "evil.sieve"))

	if got := listString(t, s); got != "real:5" {
		t.Errorf("List = %q, want only real:5", got)
	}
	// A symlink in the storage is never followed: running as root, that
	// would read any file on the machine.
	if _, err := s.Get("evil"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(evil symlink) = %v, want ErrNotFound", err)
	}
	if err := s.SetActive("evil"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetActive(evil symlink) = %v, want ErrNotFound", err)
	}
}

func TestSetActiveMakesTheDovecotLink(t *testing.T) {
	s, home := newStore(t, Limits{})
	link := filepath.Join(home, ".dovecot.sieve")
	if name, src, err := s.Active(); name != "" || src != nil || err != nil {
		t.Fatalf("Active with nothing = %q, %q, %v", name, src, err)
	}
	mustPut(t, s, "one", "keep;")
	mustPut(t, s, "two", "discard;")
	if err := s.SetActive("one"); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != "sieve/one.sieve" {
		t.Fatalf(".dovecot.sieve -> %q, %v; want sieve/one.sieve", target, err)
	}
	if err := s.SetActive("two"); err != nil {
		t.Fatal(err)
	}
	if got := listString(t, s); got != "one:5 two:8*" {
		t.Errorf("List = %q", got)
	}
	name, src, err := s.Active()
	if name != "two" || string(src) != "discard;" || err != nil {
		t.Errorf("Active = %q, %q, %v", name, src, err)
	}
	// Replacing the active script keeps it active with the new text.
	mustPut(t, s, "two", "stop;")
	if _, src, _ := s.Active(); string(src) != "stop;" {
		t.Errorf("Active after Put = %q", src)
	}
	if err := s.SetActive("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetActive(nope) = %v, want ErrNotFound", err)
	}
	if err := s.SetActive(""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf(".dovecot.sieve after deactivating: %v", err)
	}
	if err := s.SetActive(""); err != nil {
		t.Errorf("deactivating twice: %v", err)
	}
	if got := listString(t, s); got != "one:5 two:5" {
		t.Errorf("List = %q", got)
	}
	// No temporary link is left in the home directory.
	entries, _ := os.ReadDir(home)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".dovecot.sieve.tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestActiveReadsOnlyLinksIntoTheStorage(t *testing.T) {
	s, home := newStore(t, Limits{})
	link := filepath.Join(home, ".dovecot.sieve")
	mustPut(t, s, "mine", "keep;")
	cases := []struct {
		target, want string
	}{
		{"sieve/mine.sieve", "mine"},
		{filepath.Join(home, "sieve", "mine.sieve"), "mine"}, // absolute, as some setups write it
		{"./sieve/mine.sieve", "mine"},
		{"/etc/passwd", ""},
		{"sieve/../../../etc/passwd", ""},
		{"sieve/missing.sieve", ""}, // dangling
		{"sieve/tmp/x.sieve", ""},
		{"elsewhere/mine.sieve", ""},
	}
	for _, c := range cases {
		os.Remove(link)
		if err := os.Symlink(c.target, link); err != nil {
			t.Fatal(err)
		}
		name, src, err := s.Active()
		if err != nil || name != c.want || (c.want == "") != (src == nil) {
			t.Errorf("link to %q: Active = %q, %q, %v; want %q", c.target, name, src, err, c.want)
		}
	}
}

func TestHandMadeDovecotSieveIsRescued(t *testing.T) {
	s, home := newStore(t, Limits{MaxScripts: 1})
	link := filepath.Join(home, ".dovecot.sieve")
	if err := os.WriteFile(link, []byte("# by hand\nkeep;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name, src, err := s.Active()
	if name != "" || string(src) != "# by hand\nkeep;\n" || err != nil {
		t.Fatalf("Active over a regular file = %q, %q, %v", name, src, err)
	}
	if got := listString(t, s); got != "" {
		t.Errorf("List = %q, want nothing before the rescue", got)
	}
	mustPut(t, s, "new", "discard;")
	if err := s.SetActive("new"); err != nil {
		t.Fatal(err)
	}
	// The rescue ignores MaxScripts: the script was already the user's.
	if got := listString(t, s); got != "dovecot.orig:16 new:8*" {
		t.Errorf("List after SetActive = %q", got)
	}
	if target, _ := os.Readlink(link); target != "sieve/new.sieve" {
		t.Errorf("link -> %q", target)
	}

	// A second hand-made file does not overwrite the first rescue.
	s.lim = Limits{}
	os.Remove(link)
	os.WriteFile(link, []byte("other;"), 0o600)
	if err := s.SetActive(""); err != nil {
		t.Fatal(err)
	}
	if got := listString(t, s); got != "dovecot.orig:16 dovecot.orig-2:6 new:8" {
		t.Errorf("List after second rescue = %q", got)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("deactivate left %v", err)
	}
}

func TestDeleteAndRename(t *testing.T) {
	s, home := newStore(t, Limits{})
	mustPut(t, s, "a", "keep;")
	mustPut(t, s, "b", "discard;")
	os.WriteFile(filepath.Join(home, "sieve", "b.svbin"), []byte("compiled"), 0o600)
	if err := s.SetActive("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("a"); !errors.Is(err, ErrActive) {
		t.Errorf("Delete(active) = %v, want ErrActive", err)
	}
	if err := s.Delete("zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Rename("a", "b"); !errors.Is(err, ErrExists) {
		t.Errorf("Rename onto existing = %v, want ErrExists", err)
	}
	if err := s.Rename("zzz", "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rename(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Rename("a", "c"); err != nil {
		t.Fatal(err)
	}
	if got := listString(t, s); got != "b:8 c:5*" {
		t.Errorf("List after renaming the active script = %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(home, ".dovecot.sieve")); target != "sieve/c.sieve" {
		t.Errorf("link -> %q after rename", target)
	}
	if err := s.Delete("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "sieve", "b.svbin")); !os.IsNotExist(err) {
		t.Errorf("compiled binary of a deleted script: %v", err)
	}
	if got := listString(t, s); got != "c:5*" {
		t.Errorf("List = %q", got)
	}
}

func TestQuotaErrorsAreDistinct(t *testing.T) {
	s, _ := newStore(t, Limits{MaxScripts: 2, MaxScriptSize: 10, MaxStorage: 15})
	mustPut(t, s, "a", "1234567890")
	check := func(name string, size int64, want error) {
		t.Helper()
		err := s.HaveSpace(name, size)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("HaveSpace(%q, %d) = %v, want %v", name, size, err, want)
		}
		if want != nil && !errors.Is(err, ErrQuota) {
			t.Errorf("HaveSpace(%q, %d) = %v does not wrap ErrQuota", name, size, err)
		}
	}
	check("b", 11, ErrScriptTooLarge)
	check("b", 5, nil)
	check("b", 6, ErrStorageFull)
	check("a", 10, nil) // replacing counts the old size out
	mustPut(t, s, "b", "12345")
	check("c", 0, ErrTooManyScripts)
	check("b", 5, nil)
	if err := s.Put("c", nil); !errors.Is(err, ErrTooManyScripts) {
		t.Errorf("Put over MaxScripts = %v", err)
	}
	if err := s.Put("a", []byte("12345678901")); !errors.Is(err, ErrScriptTooLarge) {
		t.Errorf("Put over MaxScriptSize = %v", err)
	}
	if got, _ := s.Get("a"); string(got) != "1234567890" {
		t.Errorf("a refused Put changed the script: %q", got)
	}
	if errors.Is(ErrTooManyScripts, ErrScriptTooLarge) || errors.Is(ErrStorageFull, ErrTooManyScripts) {
		t.Error("quota errors match each other")
	}
}

func TestHostileNamesAreRefused(t *testing.T) {
	s, home := newStore(t, Limits{})
	mustPut(t, s, "ok", "keep;")
	for _, name := range []string{
		"", "../x", "a/b", "/etc/passwd", "\x00", "a\x00b", ".dovecot", "..", ".",
		"line\nbreak", "cr\r", "tab\t", "del\x7f", "c1\u0085", "ls\u2028", "ps\u2029",
		"bad\xffutf8", strings.Repeat("x", 250), strings.Repeat("é", 257),
	} {
		ops := map[string]error{
			"Put":       s.Put(name, []byte("x")),
			"SetActive": s.SetActive(name),
			"Delete":    s.Delete(name),
			"Rename to": s.Rename("ok", name),
			"Rename":    s.Rename(name, "ok2"),
			"HaveSpace": s.HaveSpace(name, 1),
		}
		_, ops["Get"] = s.Get(name)
		for op, err := range ops {
			if op == "SetActive" && name == "" {
				continue // "" deactivates
			}
			if !errors.Is(err, ErrBadName) {
				t.Errorf("%s(%q) = %v, want ErrBadName", op, name, err)
			}
		}
	}
	// Nothing escaped the storage directory.
	entries, _ := os.ReadDir(filepath.Dir(home))
	if len(entries) != 1 {
		t.Errorf("the home's parent holds %d entries", len(entries))
	}
	if got := listString(t, s); got != "ok:5" {
		t.Errorf("List = %q", got)
	}
}

func TestValidNameMessages(t *testing.T) {
	cases := map[string]string{
		"":                        "empty",
		"../x":                    `start with "."`,
		"a/b":                     `contain "/"`,
		"a\x00b":                  "U+0000 at octet 2",
		"\xc3":                    "UTF-8",
		strings.Repeat("a", 513):  "513 octets",
		"x\u2028":                 "U+2028",
		strings.Repeat("ü", 128):  "", // 256 octets: valid for the protocol
		"Sommer 2024 (Büro) #1 ✓": "",
	}
	for name, want := range cases {
		err := ValidName(name)
		if want == "" {
			if err != nil {
				t.Errorf("ValidName(%q) = %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidName(%q) = %v, want it to say %q", name, err, want)
		}
	}
	// 256 octets is a valid name but too long a file name here.
	s, _ := newStore(t, Limits{})
	if err := s.Put(strings.Repeat("ü", 128), nil); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), "at most 249") {
		t.Errorf("Put(256-octet name) = %v", err)
	}
	if err := s.Put(strings.Repeat("x", 249), []byte("keep;")); err != nil {
		t.Errorf("Put(249-octet name) = %v", err)
	}
}

func TestMissingHomeIsAClearError(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "nobody"), Owner{}, Limits{})
	err := s.Put("x", []byte("keep;"))
	if err == nil || !strings.Contains(err.Error(), "home directory") {
		t.Errorf("Put without a home = %v", err)
	}
	if got, err := s.List(); err != nil || len(got) != 0 {
		t.Errorf("List without a home = %v, %v", got, err)
	}
	if name, src, err := s.Active(); name != "" || src != nil || err != nil {
		t.Errorf("Active without a home = %q %q %v", name, src, err)
	}
}

// TestPutIsNeverSeenHalfWritten reads a script over and over while it is
// replaced: every read is one whole version. A write in place (truncate,
// then write) fails this at once.
func TestPutIsNeverSeenHalfWritten(t *testing.T) {
	s, home := newStore(t, Limits{})
	versions := [][]byte{
		bytes.Repeat([]byte("# version one\n"), 20000),
		bytes.Repeat([]byte("# version two, longer\n"), 30000),
	}
	mustPut(t, s, "big", string(versions[0]))
	if err := s.SetActive("big"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	var mu sync.Mutex
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				_, src, err := s.Active()
				if err == nil && !bytes.Equal(src, versions[0]) && !bytes.Equal(src, versions[1]) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("read %d octets", len(src)))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range 60 {
		if err := s.Put("big", versions[i%2]); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d torn reads, first: %s", len(bad), bad[0])
	}
	// A crash mid-upload leaves its temporary file in sieve/tmp, where it
	// is never taken for a script.
	os.WriteFile(filepath.Join(home, "sieve", "tmp", "put-crashed"), versions[1][:100], 0o600)
	if got := listString(t, s); got != fmt.Sprintf("big:%d*", len(versions[1])) {
		t.Errorf("List = %q", got)
	}
}

// TestConcurrentPutsRespectMaxScripts: the lock serializes the quota check
// with the write, so racing uploads cannot together pass the limit.
func TestConcurrentPutsRespectMaxScripts(t *testing.T) {
	s, _ := newStore(t, Limits{MaxScripts: 3})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine opens its own Store, as separate sessions do.
			other := Open(s.home, s.owner, s.lim)
			if err := other.Put(fmt.Sprintf("s%d", i), []byte("keep;")); err != nil && !errors.Is(err, ErrTooManyScripts) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	scripts, err := s.List()
	if err != nil || len(scripts) != 3 {
		t.Errorf("%d scripts stored with MaxScripts 3 (%v)", len(scripts), err)
	}
}

func TestRootChownsToTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	home := filepath.Join(t.TempDir(), "u")
	os.Mkdir(home, 0o700)
	s := Open(home, Owner{UID: 4242, GID: 4343}, Limits{})
	mustPut(t, s, "x", "keep;")
	if err := s.SetActive("x"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sieve", "sieve/tmp", "sieve/x.sieve", ".dovecot.sieve"} {
		info, err := os.Lstat(filepath.Join(home, p))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s owned by %d:%d, want 4242:4343", p, st.Uid, st.Gid)
		}
	}
}
