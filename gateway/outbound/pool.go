package outbound

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// poolKey says which sessions are interchangeable: same address and port,
// same host name (TLS verification, Remote-MTA), same TLS policy and login.
type poolKey struct {
	addr     netip.AddrPort
	host     string
	security Security
	noTLS    bool
	user     string
	lmtp     bool
}

// Connection cache limits.
const (
	maxIdlePerKey = 4
	maxIdleTotal  = 100
)

// sessionPool keeps sessions that finished a transaction for a few seconds,
// so that the next message to the same host skips the connect, greeting,
// EHLO, STARTTLS and AUTH round trips (Postfix's connection cache does the
// same). An idle session is closed after idle; Client.Close closes all.
type sessionPool struct {
	idle   time.Duration // <= 0: no caching
	mu     sync.Mutex
	byKey  map[poolKey][]*pooled
	total  int
	closed bool
}

type pooled struct {
	s     *session
	timer *time.Timer
}

func newSessionPool(idle time.Duration) *sessionPool {
	return &sessionPool{idle: idle, byKey: map[poolKey][]*pooled{}}
}

// put parks s, or ends it when caching is off or the pool is full.
func (p *sessionPool) put(s *session) {
	s.unwatch()
	p.mu.Lock()
	if p.idle <= 0 || p.closed || len(p.byKey[s.key]) >= maxIdlePerKey || p.total >= maxIdleTotal {
		p.mu.Unlock()
		s.quit()
		return
	}
	e := &pooled{s: s}
	p.byKey[s.key] = append(p.byKey[s.key], e)
	p.total++
	e.timer = time.AfterFunc(p.idle, func() {
		if p.remove(e) {
			e.s.quit()
		}
	})
	p.mu.Unlock()
}

// remove takes e out of the pool; false when someone else already did.
func (p *sessionPool) remove(e *pooled) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.byKey[e.s.key]
	for i, x := range list {
		if x == e {
			p.byKey[e.s.key] = append(list[:i:i], list[i+1:]...)
			if len(p.byKey[e.s.key]) == 0 {
				delete(p.byKey, e.s.key)
			}
			p.total--
			return true
		}
	}
	return false
}

// take returns a live cached session for key, watched by ctx, or nil. A
// NOOP proves the peer is still there (it may have timed us out).
func (p *sessionPool) take(ctx context.Context, key poolKey) *session {
	for {
		p.mu.Lock()
		list := p.byKey[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		e := list[len(list)-1]
		p.mu.Unlock()
		if !p.remove(e) {
			continue // its timer got it first
		}
		e.timer.Stop()
		s := e.s
		s.watch(ctx)
		if err := s.sc.Noop(); err != nil {
			s.quit()
			continue
		}
		return s
	}
}

// close ends every cached session and stops caching.
func (p *sessionPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for _, list := range p.byKey {
		all = append(all, list...)
	}
	p.byKey = map[poolKey][]*pooled{}
	p.total = 0
	p.mu.Unlock()
	for _, e := range all {
		e.timer.Stop()
		e.s.quit()
	}
}
