package main

import (
	"math/bits"
	"time"
)

// latencyHistogram records durations in microseconds with a bounded
// relative error, so that a long -duration run keeps constant memory
// however many messages it sends. Values below 256µs are kept exactly;
// above that each power of two is split into 128 buckets, so a reported
// percentile is at most 1/128 (< 0.8%) above the true value. The exact
// minimum and maximum are kept beside the buckets, and percentiles are
// clamped to them so that p99 never exceeds max.
type latencyHistogram struct {
	counts [histogramBuckets]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

const (
	histogramSubBits = 7
	histogramSub     = 1 << histogramSubBits // buckets per power of two
	histogramExact   = 2 * histogramSub      // values below this are exact
	// 64-bit values need at most 64-histogramSubBits-1 shifted ranges.
	histogramBuckets = histogramExact + (64-histogramSubBits-1)*histogramSub
)

func histogramBucket(v uint64) int {
	if v < histogramExact {
		return int(v)
	}
	shift := bits.Len64(v) - histogramSubBits - 1
	mantissa := v >> shift // in [histogramSub, 2*histogramSub)
	return histogramExact + (shift-1)*histogramSub + int(mantissa-histogramSub)
}

// histogramUpperBound is the largest value that falls in bucket i.
func histogramUpperBound(i int) uint64 {
	if i < histogramExact {
		return uint64(i)
	}
	shift := (i-histogramExact)/histogramSub + 1
	mantissa := uint64((i-histogramExact)%histogramSub + histogramSub)
	return (mantissa+1)<<shift - 1
}

func (h *latencyHistogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
	h.counts[histogramBucket(uint64(d/time.Microsecond))]++
}

func (h *latencyHistogram) merge(o *latencyHistogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// percentile returns the smallest recorded bucket bound below which at
// least p (0 < p ≤ 1) of the samples fall, clamped to [min, max].
func (h *latencyHistogram) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(p*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			d := time.Duration(histogramUpperBound(i)) * time.Microsecond
			// The bucket bound is in whole microseconds; keep the answer
			// inside what was really observed.
			if d > h.max {
				d = h.max
			}
			if d < h.min {
				d = h.min
			}
			return d
		}
	}
	return h.max
}

func (h *latencyHistogram) summary() LatencySummary {
	s := LatencySummary{Count: int64(h.n), Min: h.min, Max: h.max}
	if h.n > 0 {
		s.Mean = h.sum / time.Duration(h.n)
		s.P50 = h.percentile(0.50)
		s.P90 = h.percentile(0.90)
		s.P99 = h.percentile(0.99)
	}
	return s
}
