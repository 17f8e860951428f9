package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postern/gateway/delivery"
)

// BenchmarkEnqueue measures durable Enqueues of 4 KiB messages, from 1
// and from 50 concurrent goroutines, in each commit mode. msgs/s is the
// number to compare; docs/queue.md records a run.
func BenchmarkEnqueue(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64) // 4096 bytes
	e := delivery.Envelope{From: "a@s.example", Rcpts: []delivery.Recipient{{Addr: "r@x.example"}}}
	for _, mode := range []struct {
		name string
		mode commitMode
	}{{"group-perfile", commitGroup}, {"group-syncfs", commitGroupSyncfs}, {"per-message", commitPerMessage}} {
		for _, writers := range []int{1, 50} {
			b.Run(mode.name+"/writers="+itoa(writers), func(b *testing.B) {
				q, err := Open(Options{Dir: b.TempDir(), commit: mode.mode})
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				ctx := context.Background()
				b.SetBytes(int64(len(body)))
				start := time.Now()
				if writers == 1 {
					for b.Loop() {
						if _, err := q.Enqueue(ctx, e, bytes.NewReader(body)); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := q.Enqueue(ctx, e, bytes.NewReader(body)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
				b.ReportMetric(float64(b.N)/float64(max(q.flushes.Load(), 1)), "msgs/flush")
			})
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestMeasureCommitModes compares the commit modes fairly on a shared,
// noisy disk: short rounds of each mode, interleaved, the median kept.
// It is a measurement, not a check: run it with
// POSTERN_QUEUE_MEASURE=1 go test -run TestMeasureCommitModes -v.
func TestMeasureCommitModes(t *testing.T) {
	if os.Getenv("POSTERN_QUEUE_MEASURE") == "" {
		t.Skip("set POSTERN_QUEUE_MEASURE=1 to measure")
	}
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	e := delivery.Envelope{From: "a@s.example", Rcpts: []delivery.Recipient{{Addr: "r@x.example"}}}
	modes := []struct {
		name string
		mode commitMode
	}{{"group-perfile", commitGroup}, {"group-syncfs", commitGroupSyncfs}, {"per-message", commitPerMessage}}
	rates := map[string][]float64{}
	for range 7 {
		for _, m := range modes {
			for _, writers := range []int{1, 50} {
				q, err := Open(Options{Dir: t.TempDir(), commit: m.mode})
				if err != nil {
					t.Fatal(err)
				}
				var n atomic.Int64
				start := time.Now()
				var wg sync.WaitGroup
				for range writers {
					wg.Go(func() {
						for time.Since(start) < 700*time.Millisecond {
							if _, err := q.Enqueue(context.Background(), e, bytes.NewReader(body)); err != nil {
								t.Error(err)
								return
							}
							n.Add(1)
						}
					})
				}
				wg.Wait()
				key := fmt.Sprintf("%s writers=%d", m.name, writers)
				rates[key] = append(rates[key], float64(n.Load())/time.Since(start).Seconds())
				q.Close()
			}
		}
	}
	var keys []string
	for k := range rates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r := rates[k]
		sort.Float64s(r)
		t.Logf("%-26s median %6.0f msgs/s  (min %6.0f, max %6.0f)", k, r[len(r)/2], r[0], r[len(r)-1])
	}
}
