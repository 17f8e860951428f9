package boltindex

import (
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

	bolt "go.etcd.io/bbolt"
)

const testFormat = "boltindex-test 1"

var bucketData = []byte("data")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// writeValue compiles an index whose "data" bucket maps "key" to value.
func writeValue(path, value string) error {
	return Write(path, WriteOptions{Name: "test"}, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketData)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("key"), []byte(value)); err != nil {
			return err
		}
		return PutMeta(tx, testFormat, 1, "source")
	})
}

var validate = RequireFormat(testFormat, "not a test index", bucketData)

func openIndex(t *testing.T, path string, interval time.Duration) *Index {
	t.Helper()
	x, err := Open(path, Options{Name: "test", Interval: interval, Logger: quiet, Validate: validate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// readValue returns the value of "key", copied out of the memory map.
func readValue(x *Index) (string, error) {
	var v string
	err := x.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketData).Get([]byte("key")))
		return nil
	})
	return v, err
}

func mustWrite(t *testing.T, path, value string) {
	t.Helper()
	if err := writeValue(path, value); err != nil {
		t.Fatal(err)
	}
}

// leftovers lists the temporary files Write left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			tmp = append(tmp, e.Name())
		}
	}
	return tmp
}

func TestWriteThenViewReadsWhatFillPut(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	mustWrite(t, path, "one")
	x := openIndex(t, path, time.Hour)
	if v, err := readValue(x); err != nil || v != "one" {
		t.Fatalf("value = %q, %v; want one", v, err)
	}
	if x.Path() != path {
		t.Errorf("Path() = %q", x.Path())
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestWriteSetsTheRequestedMode(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0, 0o600, 0o644} {
		path := filepath.Join(dir, fmt.Sprintf("index-%o.db", mode))
		err := Write(path, WriteOptions{Name: "test", Mode: mode}, func(tx *bolt.Tx) error { return PutMeta(tx, testFormat, 0, "") })
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		want := mode
		if want == 0 {
			want = 0o600
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("mode %o: file has %o", mode, got)
		}
	}
}

// A failing fill leaves the old file in place and no temporary file behind.
func TestFailedWriteKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	mustWrite(t, path, "old")
	errFill := errors.New("bad record")
	err := Write(path, WriteOptions{Name: "test"}, func(tx *bolt.Tx) error { return errFill })
	if !errors.Is(err, errFill) {
		t.Fatalf("err = %v; want it to wrap the fill error", err)
	}
	if !strings.HasPrefix(err.Error(), "test "+path+": compile: ") {
		t.Errorf("err = %q; want the name and path first", err)
	}
	x := openIndex(t, path, time.Hour)
	if v, err := readValue(x); err != nil || v != "old" {
		t.Errorf("value = %q, %v; want old", v, err)
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TmpDir puts the temporary file elsewhere on the same file system.
func TestWriteBuildsInTmpDir(t *testing.T) {
	dir := t.TempDir()
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index.db")
	var seen []string
	err := Write(path, WriteOptions{Name: "test", TmpDir: tmpDir}, func(tx *bolt.Tx) error {
		seen = leftovers(t, tmpDir)
		return PutMeta(tx, testFormat, 0, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 {
		t.Errorf("temporary files in TmpDir during fill: %v; want one", seen)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}

func TestOpenRefusesWhatValidateRefuses(t *testing.T) {
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "text")
	if err := os.WriteFile(notBolt, []byte("alice: bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherFormat := filepath.Join(dir, "other.db")
	if err := Write(otherFormat, WriteOptions{}, func(tx *bolt.Tx) error { return PutMeta(tx, "something else", 0, "") }); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{notBolt, otherFormat, filepath.Join(dir, "missing")} {
		x, err := Open(path, Options{Name: "test", Logger: quiet, Validate: validate})
		if err == nil {
			x.Close()
			t.Errorf("%s: opened", path)
			continue
		}
		if !strings.HasPrefix(err.Error(), "test "+path+": ") {
			t.Errorf("%s: err = %q; want the name and path first", path, err)
		}
		if path == otherFormat && !strings.Contains(err.Error(), "not a test index: no data bucket") {
			t.Errorf("%s: err = %q; want RequireFormat's refusal", path, err)
		}
	}
}

func TestClosedIndexRefusesViews(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	mustWrite(t, path, "one")
	x := openIndex(t, path, 0)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	called := false
	err := x.View(func(*bolt.Tx) error { called = true; return nil })
	if !errors.Is(err, ErrClosed) || called {
		t.Errorf("View after Close: %v, fn called %v; want ErrClosed, not called", err, called)
	}
	// A recompile after Close must not reopen anything.
	mustWrite(t, path, "two")
	if err := x.View(func(*bolt.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("View after recompile of a closed index: %v", err)
	}
}

func TestViewReturnsTheCallbacksError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	mustWrite(t, path, "one")
	x := openIndex(t, path, time.Hour)
	errMine := errors.New("mine")
	if err := x.View(func(*bolt.Tx) error { return errMine }); err != errMine {
		t.Errorf("View = %v; want the callback's error unchanged", err)
	}
}

// Within the interval the open file is kept; after it, the new one is used.
func TestRecompileIsSeenAfterTheInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	mustWrite(t, path, "one")
	slow := openIndex(t, path, time.Hour)
	eager := openIndex(t, path, 0)
	mustWrite(t, path, "two")
	if v, _ := readValue(slow); v != "one" {
		t.Errorf("hour-interval index read %q right after the recompile; want one", v)
	}
	if v, err := readValue(eager); err != nil || v != "two" {
		t.Errorf("zero-interval index read %q, %v; want two", v, err)
	}
}

// A file at the path that cannot be opened as an index is logged and
// ignored; the loaded copy keeps answering.
func TestBadReplacementKeepsServingTheLoadedCopy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	mustWrite(t, path, "one")
	var logs strings.Builder
	var logMu sync.Mutex
	x, err := Open(path, Options{Name: "test", Interval: 0, Validate: validate,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not an index"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(garbage, path); err != nil {
		t.Fatal(err)
	}
	if v, err := readValue(x); err != nil || v != "one" {
		t.Errorf("value = %q, %v; want the loaded copy's one", v, err)
	}
	logMu.Lock()
	got := logs.String()
	logMu.Unlock()
	if !strings.Contains(got, "test: cannot open recompiled file") {
		t.Errorf("log = %q; want the failed reload reported", got)
	}
	mustWrite(t, path, "two")
	if v, err := readValue(x); err != nil || v != "two" {
		t.Errorf("after a good recompile: %q, %v; want two", v, err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Readers on several Index values keep reading, with no error, no torn
// value and no deadlock, while the file is recompiled again and again.
func TestRecompileWhileReadersRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	mustWrite(t, path, "v-start")
	readers := []*Index{openIndex(t, path, 0), openIndex(t, path, time.Millisecond)}
	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := range 4 {
		x := readers[i%len(readers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, err := readValue(x)
				if err != nil || !strings.HasPrefix(v, "v-") {
					errs <- fmt.Errorf("read during recompile: %q, %v", v, err)
					return
				}
			}
		}()
	}
	for i := range 30 {
		mustWrite(t, path, fmt.Sprintf("v-%d", i))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	time.Sleep(5 * time.Millisecond) // past the 1ms interval
	for _, x := range readers {
		if v, err := readValue(x); err != nil || v != "v-29" {
			t.Errorf("reader did not reach the last compile: %q, %v", v, err)
		}
	}
}

// TestMain lets the test binary act as a separate compiling process.
func TestMain(m *testing.M) {
	if path := os.Getenv("BOLTINDEX_TEST_WRITE"); path != "" {
		for i := range 20 {
			if err := writeValue(path, fmt.Sprintf("v-other-%d", i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A server process reads while another process recompiles: bbolt's file
// locks must make neither wait nor fail.
func TestReadsWhileAnotherProcessRecompiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	mustWrite(t, path, "v-start")
	x := openIndex(t, path, 0)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOLTINDEX_TEST_WRITE="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("compiling process: %v: %s", err, stderr.String())
			}
			if reads == 0 {
				t.Fatal("no reads ran")
			}
			if v, err := readValue(x); err != nil || v != "v-other-19" {
				t.Errorf("after the other process finished: %q, %v; want v-other-19", v, err)
			}
			return
		default:
		}
		if v, err := readValue(x); err != nil || !strings.HasPrefix(v, "v-") {
			t.Fatalf("read while another process compiles: %q, %v", v, err)
		}
		reads++
	}
}
