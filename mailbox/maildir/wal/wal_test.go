package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// harness opens logs on one path and remembers what replay saw.
type harness struct {
	t        *testing.T
	path     string
	size     int64
	syncs    atomic.Int64
	replayed []Record
}

func newHarness(t *testing.T, size int64) *harness {
	return &harness{t: t, path: filepath.Join(t.TempDir(), "journal"), size: size}
}

func (h *harness) open() *Log {
	h.t.Helper()
	h.replayed = nil
	l, err := Open(h.path, Options{Size: h.size, Sync: func() error { h.syncs.Add(1); return nil }, Interval: time.Hour, Buffered: bufferedHarness}, func(r Record) error {
		h.replayed = append(h.replayed, r)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// crash stops the log the way a killed process does: no checkpoint, the
// file just closed.
func (l *Log) crash() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.closeDirect()
	l.f.Close()
}

// bufferedHarness makes the harness open logs with Options.Buffered.
var bufferedHarness bool

// The buffered path (write, then fdatasync) is what file systems without
// O_DIRECT get; the same crash and wrap-around cases hold there.
func TestBufferedWrites(t *testing.T) {
	bufferedHarness = true
	defer func() { bufferedHarness = false }()
	runCrashCases(t)
}

// runCrashCases runs the crash, torn-record, wrap-around and concurrency
// tests in the write mode the caller set up.
func runCrashCases(t *testing.T) {
	t.Run("crash", TestCrashReplaysWhatIsNotCheckpointed)
	t.Run("torn", TestTornRecordAndOldEpoch)
	t.Run("wrap", TestWrapAround)
	t.Run("concurrent", TestConcurrentAppendsShareFlushesAndSurviveCrash)
}

// Where the file system takes O_DIRECT (ext4 and xfs do, tmpfs does not),
// records are written with it and read back whole by the next Open.
func TestDirectWrites(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	if l.direct == nil {
		l.Close()
		t.Skipf("no O_DIRECT on the file system of %s", h.path)
	}
	want := []string{"a", string(bytes.Repeat([]byte("b"), 5000)), "c"}
	for _, p := range want {
		if _, err := l.Append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if l.direct == nil {
		t.Fatal("direct writes were turned off: the file system refused one")
	}
	l.crash()
	l2 := h.open()
	defer l2.Close()
	if got := payloads(h.replayed); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %d records, want %d: %.40q", len(got), len(want), got)
	}
}

// The O_DSYNC write (every file system with O_DIRECT but ext4 without a
// journal) holds the same crash and wrap-around cases, whatever file
// system the tests run on.
func TestDSyncWrites(t *testing.T) {
	rootFlusher = func(string) *os.File { return nil }
	defer func() { rootFlusher = openRootFlusher }()
	h := newHarness(t, 0)
	l := h.open()
	mode := l.Stats().Mode
	l.Close()
	if mode == ModeBuffered {
		t.Skipf("no O_DIRECT on the file system of %s", h.path)
	}
	if mode != ModeDirectSync {
		t.Fatalf("mode %q, want %q", mode, ModeDirectSync)
	}
	runCrashCases(t)
	t.Run("direct", TestDirectWrites)
}

// On ext4 the flush goes through the root directory exactly when the file
// system has no journal. The test's oracle is another witness than the
// code's: /proc/fs/jbd2 lists the journal of every journaled file system.
func TestRootFlushOnlyOnExt4WithoutJournal(t *testing.T) {
	h := newHarness(t, 0)
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(h.path), &sfs); err != nil {
		t.Fatal(err)
	}
	l := h.open()
	defer l.Close()
	mode := l.Stats().Mode
	if sfs.Type != unix.EXT4_SUPER_MAGIC {
		if mode == ModeDirectFlush {
			t.Fatalf("mode %q on a file system that is not ext4 (magic %#x)", mode, sfs.Type)
		}
		t.Skipf("%s is not on ext4", h.path)
	}
	var st unix.Stat_t
	if err := unix.Stat(h.path, &st); err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Skipf("no sysfs entry for the device: %v", err)
	}
	jbd, _ := filepath.Glob("/proc/fs/jbd2/" + filepath.Base(link) + "-*")
	journaled := len(jbd) > 0
	if want := map[bool]string{true: ModeDirectSync, false: ModeDirectFlush}[journaled]; mode != want {
		t.Fatalf("ext4 on %s, journal %v (%v): mode %q, want %q", filepath.Base(link), journaled, jbd, mode, want)
	}
	if mode != ModeDirectFlush {
		return
	}
	// The flusher is the top directory of that file system.
	var fst, pst unix.Stat_t
	if err := unix.Fstat(int(l.flusher.Fd()), &fst); err != nil {
		t.Fatal(err)
	}
	if fst.Dev != st.Dev || fst.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("flusher: device %d (log on %d), mode %o: not a directory of the log's file system", fst.Dev, st.Dev, fst.Mode)
	}
	if err := unix.Fstatat(int(l.flusher.Fd()), "..", &pst, 0); err != nil {
		t.Fatal(err)
	}
	if pst.Dev == st.Dev && pst.Ino != fst.Ino {
		t.Fatalf("flusher is not the file system's top directory: its parent is on the same device")
	}
	// And records written that way come back after a crash.
	for _, p := range []string{"x", "y"} {
		if _, err := l.Append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if l.Stats().Mode != ModeDirectFlush {
		t.Fatal("the flushed direct writes were turned off")
	}
	l.crash()
	l2 := h.open()
	defer l2.Close()
	if got := payloads(h.replayed); fmt.Sprint(got) != "[x y]" {
		t.Fatalf("replayed %q", got)
	}
}

func payloads(rs []Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Payload))
	}
	return out
}

func TestReleasedAndCheckpointedAreNotReplayed(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	for i := range 10 {
		seq, err := l.Append([]byte(fmt.Sprintf("rec %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		l.Release(seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if h.syncs.Load() == 0 {
		t.Fatal("Close did not sync the released effects before checkpointing")
	}
	l = h.open()
	defer l.Close()
	if len(h.replayed) != 0 {
		t.Fatalf("replayed %q after a clean close", payloads(h.replayed))
	}
}

func TestCrashReplaysWhatIsNotCheckpointed(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	var want []string
	for i := range 5 {
		p := fmt.Sprintf("first %d", i)
		seq, err := l.Append([]byte("first "), []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		l.Release(seq)
		_ = p
	}
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p := fmt.Sprintf("second %d", i)
		seq, err := l.Append([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			l.Release(seq) // released but not checkpointed: replayed too
		}
		want = append(want, p)
	}
	cancelled, err := l.Append([]byte("cancelled"))
	if err != nil {
		t.Fatal(err)
	}
	l.Cancel(cancelled)
	l.crash()

	l = h.open()
	if got := payloads(h.replayed); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %q, want %q", got, want)
	}
	for i := 1; i < len(h.replayed); i++ {
		if h.replayed[i].Seq != h.replayed[i-1].Seq+1 {
			t.Fatalf("replay out of order: %d after %d", h.replayed[i].Seq, h.replayed[i-1].Seq)
		}
	}
	// Replayed records are checkpointed by Open: not replayed again.
	l.crash()
	l = h.open()
	defer l.Close()
	if len(h.replayed) != 0 {
		t.Fatalf("second open replayed %q again", payloads(h.replayed))
	}
}

func TestReplayErrorKeepsRecords(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	if _, err := l.Append([]byte("keep me")); err != nil {
		t.Fatal(err)
	}
	l.crash()
	_, err := Open(h.path, Options{Sync: func() error { return nil }}, func(Record) error { return errors.New("disk on fire") })
	if err == nil {
		t.Fatal("Open succeeded although replay failed")
	}
	l = h.open()
	defer l.Close()
	if got := payloads(h.replayed); len(got) != 1 || got[0] != "keep me" {
		t.Fatalf("after a failed replay the record was not kept: %q", got)
	}
}

// A torn record (the batch was being flushed when the machine died, so it
// was never acknowledged) ends the replay; an intact record after it from
// the same lost batch must not be replayed later either.
func TestTornRecordAndOldEpoch(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	var offs []int64
	for i := range 3 {
		seq, err := l.Append(bytes.Repeat([]byte{byte('a' + i)}, 100))
		if err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		offs = append(offs, l.live[len(l.live)-1].off)
		l.mu.Unlock()
		_ = seq
	}
	l.crash()
	f, err := os.OpenFile(h.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage"), offs[1]+headerSize+10) // record 2 torn
	f.Close()

	l = h.open()
	if got := payloads(h.replayed); len(got) != 1 || got[0][0] != 'a' {
		t.Fatalf("replayed %d records, want only the one before the torn record", len(got))
	}
	// The next record takes the torn one's place, same size: the old
	// record 3 right after it is of the previous epoch.
	if _, err := l.Append(bytes.Repeat([]byte{'x'}, 100)); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	gotOff := l.live[len(l.live)-1].off
	l.mu.Unlock()
	if gotOff != offs[1] {
		t.Fatalf("new record at %d, want %d (the torn record's place)", gotOff, offs[1])
	}
	l.crash()
	l = h.open()
	defer l.Close()
	if got := payloads(h.replayed); len(got) != 1 || got[0][0] != 'x' {
		t.Fatalf("replayed %d records (%q…); want only the new one", len(got), got)
	}
}

func TestWrapAround(t *testing.T) {
	h := newHarness(t, minFileSize) // 16 data blocks
	l := h.open()
	var unreleased []string
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i)}, 100+(i*997)%5000)
		seq, err := l.Append(p)
		if errors.Is(err, ErrFull) {
			t.Fatalf("record %d: log full although everything before was released", i)
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= 197 {
			unreleased = append(unreleased, string(p))
			continue
		}
		l.Release(seq)
		if i%7 == 0 {
			if err := l.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.crash()
	l = h.open()
	defer l.Close()
	got := payloads(h.replayed)
	// Released records after the last checkpoint may be replayed too; the
	// unreleased ones must be there, last, in order.
	if len(got) < len(unreleased) || fmt.Sprint(got[len(got)-len(unreleased):]) != fmt.Sprint(unreleased) {
		t.Fatalf("replay after wrapping lost records: got %d records", len(got))
	}
}

func TestTooBigAndFull(t *testing.T) {
	h := newHarness(t, minFileSize)
	l := h.open()
	defer l.Close()
	if _, err := l.Append(make([]byte, l.MaxRecord()+1)); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversized record: err %v, want ErrTooBig", err)
	}
	var err error
	n := 0
	for n = 0; n < 100; n++ {
		if _, err = l.Append(make([]byte, blockSize)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("unreleased records filling the log: err %v after %d records, want ErrFull", err, n)
	}
}

func TestConcurrentAppendsShareFlushesAndSurviveCrash(t *testing.T) {
	h := newHarness(t, 4<<20)
	l := h.open()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				p := fmt.Sprintf("g%d-%d", g, i)
				seq, err := l.Append([]byte(p))
				if errors.Is(err, ErrFull) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					mu.Lock()
					acked[p] = true // effect "lost": must come back by replay
					mu.Unlock()
					continue
				}
				l.Release(seq)
			}
		}()
	}
	wg.Wait()
	l.crash()
	l = h.open()
	defer l.Close()
	seen := map[string]bool{}
	for _, r := range h.replayed {
		if seen[string(r.Payload)] {
			t.Fatalf("record %q replayed twice", r.Payload)
		}
		seen[string(r.Payload)] = true
	}
	for p := range acked {
		if !seen[p] {
			t.Fatalf("acknowledged, unreleased record %q not replayed", p)
		}
	}
}

func TestBackgroundCheckpoint(t *testing.T) {
	h := newHarness(t, 0)
	l, err := Open(h.path, Options{Sync: func() error { h.syncs.Add(1); return nil }, Interval: 10 * time.Millisecond}, func(Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seq, err := l.Append([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	l.Release(seq)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		done := l.ckptSeq >= seq
		l.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no background checkpoint within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h.syncs.Load() == 0 {
		t.Fatal("checkpoint without Sync")
	}
}

func TestSecondProcessRefused(t *testing.T) {
	h := newHarness(t, 0)
	l := h.open()
	defer l.Close()
	if _, err := Open(h.path, Options{Sync: func() error { return nil }}, func(Record) error { return nil }); err == nil {
		t.Fatal("a second Open of the same log succeeded")
	}
}

func TestNotALog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "journal")
	os.WriteFile(p, bytes.Repeat([]byte("junk"), 50000), 0o600)
	if _, err := Open(p, Options{Sync: func() error { return nil }}, func(Record) error { return nil }); err == nil {
		t.Fatal("opened a file that is not a log")
	}
}

func BenchmarkAppend4K(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "journal"), Options{Sync: func() error { return nil }}, func(Record) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p := make([]byte, 4096)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		seq, err := l.Append(p)
		if err != nil {
			b.Fatal(err)
		}
		l.Release(seq)
	}
}

// After a failed sync the log checkpoints no more (a later sync could
// report success for pages whose write-back failed) and takes no records;
// what it holds is replayed at the next open.
func TestFailedSyncStopsCheckpoints(t *testing.T) {
	h := newHarness(t, 0)
	fail := true
	l, err := Open(h.path, Options{Sync: func() error {
		if fail {
			return errors.New("EIO")
		}
		return nil
	}, Interval: time.Hour}, func(Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append([]byte("written, sync failed"))
	if err != nil {
		t.Fatal(err)
	}
	l.Release(seq)
	if err := l.Checkpoint(); err == nil {
		t.Fatal("checkpoint succeeded although the sync failed")
	}
	fail = false
	if err := l.Checkpoint(); err == nil {
		t.Fatal("a checkpoint after a failed sync went ahead")
	}
	if _, err := l.Append([]byte("more")); err == nil {
		t.Fatal("the log took a record after a failed sync")
	}
	l.Close()
	l = h.open()
	defer l.Close()
	if got := payloads(h.replayed); len(got) != 1 || got[0] != "written, sync failed" {
		t.Fatalf("replayed %q", got)
	}
}
