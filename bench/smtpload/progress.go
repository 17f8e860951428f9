package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// barRedrawInterval is how often the terminal progress bar is redrawn.
const barRedrawInterval = 200 * time.Millisecond

// startProgress writes progress to w until the returned function is
// called; that function writes the final state, stops the writer
// goroutine and waits for it.
func (r *runner) startProgress(w io.Writer) (stop func()) {
	interval := r.cfg.ProgressInterval
	if r.cfg.ProgressBar {
		interval = barRedrawInterval
	}
	if interval <= 0 {
		interval = DefaultConfig().ProgressInterval
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				r.writeProgress(w, false)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		r.writeProgress(w, true)
	}
}

// writeProgress writes one progress report: a redrawn bar for a
// terminal, or one plain line for a log.
func (r *runner) writeProgress(w io.Writer, final bool) {
	sent, failed := r.sent.Load(), r.failed.Load()
	done := sent + failed
	elapsed := time.Since(r.start)
	rate := 0.0
	if secs := elapsed.Seconds(); secs > 0 {
		rate = float64(sent) / secs
	}
	// The fraction done is by count when there is one, else by time.
	fraction := 0.0
	total := "?"
	switch {
	case r.cfg.Messages > 0:
		fraction = float64(done) / float64(r.cfg.Messages)
		total = fmt.Sprint(r.cfg.Messages)
	case r.cfg.Duration > 0:
		fraction = elapsed.Seconds() / r.cfg.Duration.Seconds()
	}
	if final && r.cfg.Messages == 0 {
		fraction = 1
	}
	fraction = min(max(fraction, 0), 1)
	if !r.cfg.ProgressBar {
		fmt.Fprintf(w, "smtpload: %d/%s done, %d sent, %d failed, %.1f msg/s, %s elapsed\n",
			done, total, sent, failed, rate, elapsed.Round(time.Millisecond))
		return
	}
	const width = 30
	filled := int(fraction * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	fmt.Fprintf(w, "\r[%s] %3.0f%% %d/%s done, %d sent, %d failed, %.1f msg/s ", bar, fraction*100, done, total, sent, failed, rate)
	if final {
		fmt.Fprint(w, "\n")
	}
}
