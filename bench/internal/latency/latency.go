// Package latency is the latency recorder shared by the bench tools: a
// histogram with bounded relative error, so that a long run keeps constant
// memory, and the summary (min, mean, p50, p90, p99, max) the tools report.
package latency

import (
	"math/bits"
	"time"
)

// Histogram records durations in microseconds with a bounded
// relative error, so that a long -duration run keeps constant memory
// however many messages it sends. Values below 256µs are kept exactly;
// above that each power of two is split into 128 buckets, so a reported
// percentile is at most 1/128 (< 0.8%) above the true value. The exact
// minimum and maximum are kept beside the buckets, and percentiles are
// clamped to them so that p99 never exceeds max.
type Histogram struct {
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

// Record adds one sample; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
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

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
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

// Percentile returns the smallest recorded bucket bound below which at
// least p (0 < p ≤ 1) of the samples fall, clamped to [min, max].
func (h *Histogram) Percentile(p float64) time.Duration {
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

// Summary describes the samples recorded so far.
func (h *Histogram) Summary() Summary {
	s := Summary{Count: int64(h.n), Min: h.min, Max: h.max}
	if h.n > 0 {
		s.Mean = h.sum / time.Duration(h.n)
		s.P50 = h.Percentile(0.50)
		s.P90 = h.Percentile(0.90)
		s.P99 = h.Percentile(0.99)
	}
	return s
}

// Summary describes one latency distribution.
type Summary struct {
	Count                         int64
	Min, Mean, P50, P90, P99, Max time.Duration
}

// Consistent reports whether the summary holds the invariants every
// report must: min ≤ p50 ≤ p90 ≤ p99 ≤ max and min ≤ mean ≤ max.
func (s Summary) Consistent() bool {
	return s.Min <= s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max &&
		s.Min <= s.Mean && s.Mean <= s.Max
}

// JSON is a Summary in milliseconds, the form the tools print with -json.
type JSON struct {
	Count  int64   `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Milliseconds converts d for printing.
func Milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// JSON converts the summary to milliseconds.
func (s Summary) JSON() JSON {
	return JSON{Count: s.Count, MinMS: Milliseconds(s.Min), MeanMS: Milliseconds(s.Mean), P50MS: Milliseconds(s.P50),
		P90MS: Milliseconds(s.P90), P99MS: Milliseconds(s.P99), MaxMS: Milliseconds(s.Max)}
}
