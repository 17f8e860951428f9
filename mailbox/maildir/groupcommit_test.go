package maildir

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func benchDeliver(b *testing.B, parallelism int) {
	root := filepath.Join(b.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		b.Fatal(err)
	}
	md, err := Open(root)
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n"), 56)
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := md.Deliver(Inbox, bytes.NewReader(msg), DeliverOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// go test -run '^$' -bench DeliverConcurrent -benchtime 3000x ./mailbox/maildir/
func BenchmarkDeliverConcurrent1(b *testing.B)  { benchDeliver(b, 1) }  // 2 goroutines on 2 cores
func BenchmarkDeliverConcurrent5(b *testing.B)  { benchDeliver(b, 5) }  // 10
func BenchmarkDeliverConcurrent25(b *testing.B) { benchDeliver(b, 25) } // 50

// Both durability paths deliver, and many concurrent waiters on one
// barrier all return.
func TestDeliverBothDurabilityPaths(t *testing.T) {
	saved := groupCommit
	defer func() { groupCommit = saved }()
	for _, gc := range []bool{true, false} {
		groupCommit = gc
		root := filepath.Join(t.TempDir(), "Maildir")
		if err := Make(root); err != nil {
			t.Fatal(err)
		}
		md, _ := Open(root)
		done := make(chan error, 40)
		for i := 0; i < 40; i++ {
			go func() {
				_, err := md.Deliver(Inbox, bytes.NewReader([]byte("Subject: x\n\nbody\n")), DeliverOptions{})
				done <- err
			}()
		}
		for i := 0; i < 40; i++ {
			if err := <-done; err != nil {
				t.Fatalf("groupCommit=%v: %v", gc, err)
			}
		}
		f, _ := md.Folder(Inbox)
		snap, err := f.Sync(false)
		if err != nil || len(snap.Messages) != 40 {
			t.Fatalf("groupCommit=%v: %d messages, %v", gc, len(snap.Messages), err)
		}
		tmp, _ := filepath.Glob(filepath.Join(root, "tmp", "*"))
		if len(tmp) != 0 {
			t.Fatalf("groupCommit=%v: %d files left in tmp/", gc, len(tmp))
		}
	}
}

// With group commit a staged message is an unnamed O_TMPFILE file (tmp/
// stays empty) where the file system offers it, and a named tmp/ file
// otherwise; both commit the same bytes with the requested internal date,
// and both leave tmp/ empty after Commit and after Discard.
func TestStageAnonymousAndNamed(t *testing.T) {
	if !groupCommit {
		t.Skip("no group commit on this kernel: staging always uses named tmp/ files")
	}
	defer tmpfileWorks.Store(true)
	for _, anon := range []bool{true, false} {
		tmpfileWorks.Store(anon)
		root := filepath.Join(t.TempDir(), "Maildir")
		if err := Make(root); err != nil {
			t.Fatal(err)
		}
		md, _ := Open(root)
		inbox, _ := md.Folder(Inbox)
		date := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
		st, err := inbox.Stage(bytes.NewReader([]byte("Subject: s\n\nstaged\n")), DeliverOptions{InternalDate: date})
		if err != nil {
			t.Fatal(err)
		}
		inTmp, _ := os.ReadDir(filepath.Join(root, "tmp"))
		if anon && (st.anon == nil || len(inTmp) != 0) || !anon && (st.anon != nil || len(inTmp) != 1) {
			t.Fatalf("anon=%v: staged as unnamed %v, %d names in tmp/", anon, st.anon != nil, len(inTmp))
		}
		key, err := st.Commit()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(root, "new", key))
		if err != nil || string(data) != "Subject: s\n\nstaged\n" {
			t.Fatalf("anon=%v: committed %q %v", anon, data, err)
		}
		fi, _ := os.Stat(filepath.Join(root, "new", key))
		if !fi.ModTime().Equal(date) {
			t.Errorf("anon=%v: internal date %v, want %v", anon, fi.ModTime(), date)
		}
		st2, err := inbox.Stage(bytes.NewReader([]byte("dropped\n")), DeliverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st2.Discard()
		if left, _ := os.ReadDir(filepath.Join(root, "tmp")); len(left) != 0 {
			t.Errorf("anon=%v: tmp/ holds %d files after Commit and Discard", anon, len(left))
		}
		if all, _ := os.ReadDir(filepath.Join(root, "new")); len(all) != 1 {
			t.Errorf("anon=%v: new/ holds %d files, want 1", anon, len(all))
		}
	}
}
