package outbound

import (
	"maps"
	"sync"

	"postern/gateway/delivery"
)

// Stats are the Client's counters since it was made, for metrics.
type Stats struct {
	Attempts  uint64 // connection attempts (one per address tried)
	Delivered uint64 // recipients accepted by a remote server
	Temporary uint64 // recipients with a temporary failure
	Permanent uint64 // recipients with a permanent failure
	// Failures by reason, e.g. "connect", "dns", "rcpt", "data",
	// "tls-verify", "smtputf8", "null-mx", keyed "temporary/REASON" or
	// "permanent/REASON".
	ByReason map[string]uint64
}

type statsCounter struct {
	mu sync.Mutex
	s  Stats
}

func newStatsCounter() statsCounter {
	return statsCounter{s: Stats{ByReason: map[string]uint64{}}}
}

func (c *statsCounter) attempt() {
	c.mu.Lock()
	c.s.Attempts++
	c.mu.Unlock()
}

func (c *statsCounter) count(r delivery.Result, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Err == nil && r.Status != "" && r.Status[0] == '2':
		c.s.Delivered++
	case r.Permanent:
		c.s.Permanent++
		c.s.ByReason["permanent/"+reason]++
	default:
		c.s.Temporary++
		c.s.ByReason["temporary/"+reason]++
	}
}

// Stats returns a copy of the counters.
func (c *Client) Stats() Stats {
	c.stats.mu.Lock()
	defer c.stats.mu.Unlock()
	s := c.stats.s
	s.ByReason = maps.Clone(c.stats.s.ByReason)
	return s
}
