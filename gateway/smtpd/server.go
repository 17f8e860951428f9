package smtpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"postern/internal/netserve"
	"sync"
	"sync/atomic"
	"time"
)

// Server runs SMTP sessions on any number of listeners.
type Server struct {
	backend Backend
	opt     Options

	baseCtx    context.Context
	cancelBase context.CancelFunc
	nextID     atomic.Uint64

	mu        sync.Mutex
	shutdown  bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	wg        sync.WaitGroup
	// work hands a new connection to a goroutine that served an earlier
	// one and waits for another (see serveConn).
	work    chan connJob
	workers atomic.Int64 // goroutines started by work (tests)
	live    atomic.Int64 // sessions open now, for reads that cannot take mu

	stats struct {
		connections, refused, commands, errors, messages, bytes atomic.Int64
		quietReads                                              atomic.Int64
	}
}

// Stats are the server's counters since it was made (for Prometheus).
type Stats struct {
	Connections int64 // accepted TCP connections
	Active      int64 // connections open now
	Refused     int64 // connections refused by MaxConnections/MaxConnectionsPerIP or an untrusted PROXY peer
	Commands    int64 // command lines read
	Errors      int64 // 4xx/5xx replies sent
	Messages    int64 // messages accepted (2xx after DATA/BDAT LAST)
	Bytes       int64 // bytes of accepted messages
	QuietReads  int64 // reads taken the quiet way (Options.QuietSessions)
}

// NewServer makes a server that asks b about every session.
func NewServer(b Backend, opt Options) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		backend:    b,
		opt:        opt.withDefaults(),
		baseCtx:    ctx,
		cancelBase: cancel,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*conn]struct{}{},
		perIP:      map[netip.Addr]int{},
		work:       make(chan connJob),
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := int64(len(s.conns))
	s.mu.Unlock()
	return Stats{
		Connections: s.stats.connections.Load(),
		Active:      active,
		Refused:     s.stats.refused.Load(),
		Commands:    s.stats.commands.Load(),
		Errors:      s.stats.errors.Load(),
		Messages:    s.stats.messages.Load(),
		Bytes:       s.stats.bytes.Load(),
		QuietReads:  s.stats.quietReads.Load(),
	}
}

// Serve accepts connections on l until Shutdown (then it returns
// ErrServerClosed) or until l fails.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	acc := netserve.Acceptor{Listener: l, Name: "smtpd", Closing: s.closing, Logger: s.opt.Logger}
	for {
		nc, err := acc.Accept()
		if errors.Is(err, netserve.ErrClosing) {
			return ErrServerClosed
		}
		if err != nil {
			return err
		}
		s.stats.connections.Add(1)
		c := s.newConn(nc)
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		over := s.opt.MaxConnections > 0 && len(s.conns) >= s.opt.MaxConnections
		s.conns[c] = struct{}{}
		s.live.Add(1)
		s.wg.Add(1)
		s.mu.Unlock()
		job := connJob{c: c, over: over}
		select {
		case s.work <- job:
		default:
			s.workers.Add(1)
			go s.worker(job)
		}
	}
}

// connJob is an accepted connection on its way to a goroutine.
type connJob struct {
	c    *conn
	over bool // over MaxConnections: refuse it
}

// workerIdle is how long a goroutine whose session ended waits for the
// next connection before it exits.
const workerIdle = 30 * time.Second

// worker serves connections, one after the other, until none has come for
// workerIdle or the server has shut down. A goroutine's stack grows by
// copying as a session goes deeper into the code; one goroutine per
// connection paid for that growth at every connection (2% of the server's
// CPU time at one message per connection), a reused one keeps its stack.
func (s *Server) worker(job connJob) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.serveConn(job)
		idle.Reset(workerIdle)
		select {
		case job = <-s.work:
		case <-idle.C:
			return
		case <-s.baseCtx.Done():
			return
		}
	}
}

// serveConn runs one connection's session, or refuses it.
func (s *Server) serveConn(job connJob) {
	c := job.c
	defer s.wg.Done()
	defer s.forget(c)
	if job.over {
		s.stats.refused.Add(1)
		if s.opt.ImplicitTLS {
			// No TLS handshake for a connection we cannot
			// serve: just close.
			c.raw.Close()
			c.cancel()
			return
		}
		c.refuse(NewReply(421, "4.7.0", "%s Error: too many connections", s.opt.Hostname))
		return
	}
	c.serve()
}

func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.live.Add(-1)
	s.mu.Unlock()
}

// acquireIP counts a connection from a; false when a is over
// MaxConnectionsPerIP. Every true must be matched by releaseIP.
func (s *Server) acquireIP(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opt.MaxConnectionsPerIP > 0 && s.perIP[a] >= s.opt.MaxConnectionsPerIP {
		return false
	}
	s.perIP[a]++
	return true
}

func (s *Server) releaseIP(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[a]--; s.perIP[a] <= 0 {
		delete(s.perIP, a)
	}
}

// Shutdown stops accepting connections. Sessions in DATA/BDAT finish their
// message; every other session is told "421 4.3.2" at its next command
// boundary (at once when it is waiting for a command). Shutdown returns
// when every session has ended, or when ctx ends (then the remaining
// connections are closed and ctx.Err() returned).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.requestShutdown()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancelBase()
		return nil
	case <-ctx.Done():
		s.cancelBase()
		s.mu.Lock()
		for c := range s.conns {
			c.nc().Close()
		}
		s.mu.Unlock()
		// Sessions notice their closed connections at once, unless a
		// session method ignores its context; do not hang on those.
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.opt.Logger.Warn("smtpd: sessions still running after shutdown")
		}
		return ctx.Err()
	}
}
