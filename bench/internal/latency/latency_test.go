package latency

import (
	"testing"
	"time"
)

// TestPercentilesWithinBoundedError checks the histogram against exact
// values.
func TestPercentilesWithinBoundedError(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	for name, c := range map[string]struct{ got, want time.Duration }{
		"p50": {s.P50, 500 * time.Millisecond}, "p90": {s.P90, 900 * time.Millisecond},
		"p99": {s.P99, 990 * time.Millisecond}, "max": {s.Max, time.Second}, "min": {s.Min, time.Millisecond},
	} {
		if c.got < c.want || float64(c.got-c.want) > float64(c.want)/128 {
			t.Errorf("%s = %v, want %v within 1/128", name, c.got, c.want)
		}
	}
	if s.Mean != 500500*time.Microsecond || s.Count != 1000 || !s.Consistent() {
		t.Errorf("summary %+v", s)
	}
}

func TestSingleSampleAndMerge(t *testing.T) {
	var one Histogram
	one.Record(1234567 * time.Nanosecond)
	if s := one.Summary(); s.P50 != s.Max || s.P99 != s.Max || s.Min != s.Max || !s.Consistent() {
		t.Errorf("single sample: %+v", s)
	}
	var a, b, empty Histogram
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	a.Merge(&empty)
	if s := a.Summary(); s.Count != 2 || s.Min != time.Millisecond || s.Max != 3*time.Millisecond || s.Mean != 2*time.Millisecond {
		t.Errorf("merged: %+v", s)
	}
	if s := empty.Summary(); s != (Summary{}) {
		t.Errorf("empty: %+v", s)
	}
	var neg Histogram
	neg.Record(-time.Second)
	if s := neg.Summary(); s.Max != 0 || s.Count != 1 {
		t.Errorf("negative sample: %+v", s)
	}
}

func TestBucketBoundsRoundTrip(t *testing.T) {
	for i := range histogramBuckets {
		if histogramBucket(histogramUpperBound(i)) != i {
			t.Fatalf("bucket %d: upper bound %d maps to %d", i, histogramUpperBound(i), histogramBucket(histogramUpperBound(i)))
		}
	}
	if histogramBucket(1<<64-1) != histogramBuckets-1 {
		t.Errorf("largest value does not map to the last bucket")
	}
}

func TestJSONInMilliseconds(t *testing.T) {
	j := Summary{Count: 1, Min: time.Millisecond, P50: 1500 * time.Microsecond, Max: 2 * time.Second}.JSON()
	if j.MinMS != 1 || j.P50MS != 1.5 || j.MaxMS != 2000 {
		t.Errorf("JSON %+v", j)
	}
}
