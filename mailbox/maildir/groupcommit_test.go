package maildir

import (
	"bytes"
	"path/filepath"
	"testing"
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
