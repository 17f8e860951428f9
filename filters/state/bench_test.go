package state

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks report ops/s for Incr and SetNX, serial and with 32
// concurrent callers (SMTP sessions), on each store. Run with
//
//	go test -run '^$' -bench . -benchtime 2000x ./filters/state/
//
// docs/state.md lists what they measured.

func benchStores(b *testing.B) map[string]func(b *testing.B) Store {
	return map[string]func(b *testing.B) Store{
		"embedded-batch2ms": func(b *testing.B) Store {
			s, err := OpenEmbedded(b.TempDir()+"/state.db", WithSweepInterval(0))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"embedded-unbatched": func(b *testing.B) Store {
			s, err := OpenEmbedded(b.TempDir()+"/state.db", WithSweepInterval(0), WithBatchDelay(0))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"embedded-nosync": func(b *testing.B) Store {
			s, err := OpenEmbedded(b.TempDir()+"/state.db", WithSweepInterval(0), WithNoSync(true))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"redis": func(b *testing.B) Store {
			s, err := OpenRedis(RedisOptions{Addr: redisAddr, Prefix: "postern-bench:" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Ping(context.Background()); err != nil {
				b.Skip("Redis unreachable:", err)
			}
			return s
		},
	}
}

func BenchmarkIncr(b *testing.B) {
	for name, open := range benchStores(b) {
		for _, par := range []int{1, 32} {
			b.Run(name+"/c"+strconv.Itoa(par), func(b *testing.B) {
				s := open(b)
				defer s.Close()
				ctx := context.Background()
				benchParallel(b, par, func(i int64) error {
					_, err := s.Incr(ctx, "bench-ctr-"+strconv.FormatInt(i%64, 10), 1, time.Minute)
					return err
				})
			})
		}
	}
}

func BenchmarkSetNX(b *testing.B) {
	for name, open := range benchStores(b) {
		for _, par := range []int{1, 32} {
			b.Run(name+"/c"+strconv.Itoa(par), func(b *testing.B) {
				s := open(b)
				defer s.Close()
				ctx := context.Background()
				benchParallel(b, par, func(i int64) error {
					_, err := s.SetNX(ctx, "bench-nx-"+strconv.FormatInt(i, 10), []byte("1"), time.Minute)
					return err
				})
			})
		}
	}
}

func BenchmarkGet(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := context.Background()
			if err := s.Set(ctx, "bench-get", []byte("value"), time.Minute); err != nil {
				b.Fatal(err)
			}
			benchParallel(b, 1, func(int64) error { _, _, err := s.Get(ctx, "bench-get"); return err })
		})
	}
}

// benchParallel runs b.N calls of op spread over par goroutines and reports
// ops/s.
func benchParallel(b *testing.B, par int, op func(i int64) error) {
	var next atomic.Int64
	done := make(chan error, par)
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < par; g++ {
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					done <- nil
					return
				}
				if err := op(i); err != nil {
					done <- err
					return
				}
			}
		}()
	}
	for g := 0; g < par; g++ {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}
