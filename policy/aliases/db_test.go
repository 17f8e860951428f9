package aliases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCompileOpenExpand(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"aliases":  "root: postmaster\npostmaster: alice, |/usr/bin/archive, /var/mail/pm\n@virt.example: john\nempty:\n",
		"aliases2": "",
	})
	dbPath := filepath.Join(dir, DefaultDBName)
	if err := Compile(dir, dbPath); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDB(dbPath, WithLocalDomains(func(d string) bool { return d == "example.org" }))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cases := []struct {
		addr string
		want []string
		ok   bool
	}{
		{"ROOT@example.org", []string{"address:alice", "program:/usr/bin/archive", "file:/var/mail/pm"}, true},
		{"root", []string{"address:alice", "program:/usr/bin/archive", "file:/var/mail/pm"}, true},
		{"root@elsewhere.example", []string{}, false},
		{"sales@virt.example", []string{"address:john-sales"}, true},
		{"empty", []string{}, true},
		{"alice", []string{}, false},
	}
	for _, c := range cases {
		got, ok := expandValues(t, db, c.addr)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Expand(%q) = %v, %v; want %v, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
	ts, _, _ := db.Expand(context.Background(), "root")
	if want := filepath.Join(dir, "aliases") + ":2"; ts[0].Origin != want {
		t.Errorf("origin = %q, want %q", ts[0].Origin, want)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestBadSourceKeepsOldDB(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, DefaultDBName)
	writeFiles(t, dir, map[string]string{"aliases": "a: b\n"})
	if err := Compile(dir, dbPath); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(dbPath)
	writeFiles(t, dir, map[string]string{"aliases": "a: b\nbroken line\n"})
	if err := Compile(dir, dbPath); err == nil {
		t.Fatal("bad source compiled")
	}
	after, _ := os.ReadFile(dbPath)
	if !reflect.DeepEqual(before, after) {
		t.Error("compiled file changed by a failed compile")
	}
}

func TestDBReloadsRecompiledFile(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, DefaultDBName)
	writeFiles(t, dir, map[string]string{"aliases": "a: first\n"})
	if err := Compile(dir, dbPath); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	db, err := OpenDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Readers run throughout the swap; -race checks the locking.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, ok, err := db.Expand(context.Background(), "a"); err != nil || !ok {
					t.Errorf("concurrent Expand: %v, %v", ok, err)
					return
				}
			}
		}()
	}
	writeFiles(t, dir, map[string]string{"aliases": "a: second\n"})
	if err := Compile(dir, dbPath); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := expandValues(t, db, "a")
		if reflect.DeepEqual(got, []string{"address:second"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %v after recompile", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	db.Close()
	// The package starts no goroutines of its own: none may be left.
	for i := 0; runtime.NumGoroutine() > baseline && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		t.Errorf("%d goroutines after close, %d before", n, baseline)
	}
}

func TestDBClosedAndNotADB(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, DefaultDBName)
	if _, err := OpenDB(dbPath); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	writeFiles(t, dir, map[string]string{"aliases": "a: b\n"})
	if err := Compile(dir, dbPath); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, _, err := db.Expand(context.Background(), "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err = %v", err)
	}
	// A compiled userdb-like file of another format is refused.
	other := filepath.Join(dir, "other.db")
	writeFiles(t, dir, map[string]string{"other.db": strings.Repeat("x", 8192)})
	if _, err := OpenDB(other); err == nil {
		t.Error("garbage file opened as alias index")
	}
}

func TestDecodeTargetsRefusesCorruptRecords(t *testing.T) {
	good := encodeTargets([]Target{{Kind: Address, Value: "a@b", Origin: "f:1"}, {Kind: Program, Value: "/bin/x", Origin: "f:2"}})
	if ts, err := decodeTargets(good); err != nil || len(ts) != 2 {
		t.Fatalf("good record: %v, %v", ts, err)
	}
	for i := range len(good) {
		if _, err := decodeTargets(good[:i]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d bytes: err = %v", i, err)
		}
	}
	bad := append([]byte{}, good...)
	bad[1] = 9 // unknown kind
	if _, err := decodeTargets(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad kind: err = %v", err)
	}
	if _, err := decodeTargets(append(good, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: err = %v", err)
	}
}

func TestMakealiasesMain(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases": "root: postmaster\npostmaster: alice\n"})
	run := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := MakealiasesMain(args, &out, &errb, dir)
		return code, out.String(), errb.String()
	}

	code, out, errs := run("-v")
	if code != 0 || !strings.Contains(out, "2 aliases compiled into "+filepath.Join(dir, "aliases.db")) || errs != "" {
		t.Fatalf("compile: %d %q %q", code, out, errs)
	}
	db, err := OpenDB(filepath.Join(dir, "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := expandValues(t, db, "root")
	db.Close()
	if !reflect.DeepEqual(got, []string{"address:alice"}) {
		t.Errorf("root = %v", got)
	}

	code, out, _ = run("-dump")
	if code != 0 || out != "postmaster: alice\nroot: alice\n" {
		t.Errorf("-dump: %d %q", code, out)
	}

	// -src and -alias, with the module argument Courier allows.
	writeFiles(t, dir, map[string]string{"other/src": "x: y\n"})
	code, _, errs = run("-src="+filepath.Join(dir, "other/src"), "-alias="+filepath.Join(dir, "other/out.db"), "-tmp="+filepath.Join(dir, "other/t"), "local")
	if code != 0 || errs != "" {
		t.Fatalf("-src/-alias: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "other/out.db")); err != nil {
		t.Error(err)
	}

	// -protocol reads aliases-esmtp and writes aliases-esmtp.db.
	writeFiles(t, dir, map[string]string{"aliases-esmtp": "everyone: alice, bob\n"})
	if code, _, errs = run("-protocol=esmtp"); code != 0 {
		t.Fatalf("-protocol: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "aliases-esmtp.db")); err != nil {
		t.Error(err)
	}

	// Problems: every one as FILE:LINE: reason, exit 1, old file kept.
	writeFiles(t, dir, map[string]string{"aliases": "root: postmaster\nbad\npostmaster: alice\nx: a@\n"})
	before, _ := os.ReadFile(filepath.Join(dir, "aliases.db"))
	code, _, errs = run()
	f := filepath.Join(dir, "aliases")
	if code != 1 || !strings.Contains(errs, f+":2: missing ':'") || !strings.Contains(errs, f+":4: bad address") ||
		!strings.Contains(errs, "2 problem(s)") {
		t.Errorf("bad source: %d\n%s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "aliases.db"))
	if !reflect.DeepEqual(before, after) {
		t.Error("failed run changed aliases.db")
	}
	if code, _, _ = run("-chk"); code != 1 {
		t.Errorf("-chk on bad source: %d", code)
	}

	for _, args := range [][]string{{"-nosuch"}, {"esmtp"}, {"-protocol=uucp"}, {"local", "extra"}} {
		if code, _, errs := run(args...); code != 1 || errs == "" {
			t.Errorf("%v: %d %q", args, code, errs)
		}
	}
	if code, out, _ := run("-h"); code != 0 || !strings.Contains(out, "Usage: postern makealiases") {
		t.Errorf("-h: %d %q", code, out)
	}
}

// BenchmarkExpand: a hit through the local-part probe and a miss, from a
// compiled index of 100,000 aliases.
func BenchmarkExpand(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&sb, "user%d: target%d@example.net, other%d\n", i, i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	dbPath := filepath.Join(dir, DefaultDBName)
	if err := Compile(dir, dbPath); err != nil {
		b.Fatal(err)
	}
	db, err := OpenDB(dbPath, WithLocalDomains(func(d string) bool { return d == "example.org" }))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok, err := db.Expand(ctx, fmt.Sprintf("user%d@example.org", i%100000)); !ok || err != nil {
			b.Fatal(ok, err)
		}
		if _, ok, _ := db.Expand(ctx, "nobody@example.org"); ok {
			b.Fatal("miss found")
		}
	}
}
