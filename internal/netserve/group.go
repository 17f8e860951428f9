package netserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Group is what a protocol server (IMAP, POP3, SMAP) keeps of its
// listeners and sessions: it accepts on any number of listeners, runs each
// session on its own goroutine, and shuts down by asking every session to
// end, waiting for them, and cutting those still running when the
// deadline comes; it also turns away connections over its Limits
// (limits.go). S is the server's session type. The zero value is ready to
// use, without limits.
type Group[S comparable] struct {
	Name   string // for logs and errors: "imap", "pop3", "smap"
	Logger *slog.Logger
	// Limits, when set, is read at each accept and each AdmitLogin, so
	// that a configuration reload applies to the next connection.
	Limits func() Limits
	// Refusal is the line, with its line end, that turns away a
	// connection over the Total or PerIP limit before the greeting; why
	// is TooManyConnections or TooManyFromAddress. nil: such a
	// connection is closed with nothing said.
	Refusal func(why string) string
	// Closed is what Serve, ServeTLS and Run return once Shutdown has
	// begun: the server's own ErrServerClosed. nil: ErrClosing.
	Closed error

	mu        sync.Mutex
	closing   bool
	done      chan struct{}
	listeners map[net.Listener]struct{}
	sessions  map[S]netip.Addr // the client address of those Serve accepted
	perIP     map[netip.Addr]int
	pending   int          // admitted by Serve, not yet tracked
	admitted  map[S]string // the user each session's AdmitLogin let in
	refusing  int          // refusals being written
	wg        sync.WaitGroup

	started                     atomic.Uint64
	refusedConns, refusedLogins atomic.Uint64
	refusalLog                  logThrottle
}

// Done is closed when Shutdown begins.
func (g *Group[S]) Done() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done == nil {
		g.done = make(chan struct{})
	}
	return g.done
}

// Closing reports whether Shutdown has begun.
func (g *Group[S]) Closing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// Track registers a session about to run; false once Shutdown has begun
// (the caller closes the connection then). The wait group grows under the
// lock, so Shutdown never waits on a group that is still growing.
//
// A session tracked this way (ServeConn, a hand-off from another server)
// counts towards the Total limit, not the PerIP one.
func (g *Group[S]) Track(s S) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.trackLocked(s, netip.Addr{})
}

// trackAdmitted tracks a session Serve admitted from addr, turning its
// reservation into the session; the reservation is given back when
// Shutdown has begun.
func (g *Group[S]) trackAdmitted(s S, addr netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	if !g.trackLocked(s, addr) {
		g.releaseIP(addr)
		return false
	}
	return true
}

func (g *Group[S]) trackLocked(s S, addr netip.Addr) bool {
	if g.closing {
		return false
	}
	if g.sessions == nil {
		g.sessions = make(map[S]netip.Addr)
	}
	g.sessions[s] = addr
	g.wg.Add(1)
	g.started.Add(1)
	return true
}

// Untrack is called once a tracked session has ended.
func (g *Group[S]) Untrack(s S) {
	g.mu.Lock()
	if addr, ok := g.sessions[s]; ok {
		delete(g.sessions, s)
		g.releaseIP(addr)
	}
	delete(g.admitted, s)
	g.mu.Unlock()
	g.wg.Done()
}

// Len counts the sessions running.
func (g *Group[S]) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Started counts the sessions tracked since the start: those Serve ran
// and those Track (or Run) took.
func (g *Group[S]) Started() uint64 { return g.started.Load() }

// closed is the error of a Serve or Run after Shutdown.
func (g *Group[S]) closed() error {
	if g.Closed != nil {
		return g.Closed
	}
	return ErrClosing
}

// Run runs a session that Serve did not accept (ServeConn's connection
// from inetd or systemd, a hand-off from another server) on the caller's
// goroutine, tracked while run runs. Once Shutdown has begun it returns
// Closed without calling run, and the caller closes the connection.
func (g *Group[S]) Run(s S, run func()) error {
	if !g.Track(s) {
		return g.closed()
	}
	defer g.Untrack(s)
	run()
	return nil
}

// Serve accepts connections on l until Shutdown, when it returns Closed.
// For each connection start makes the session and returns the function
// that runs it; Serve tracks the session and runs it on a goroutine of its
// own, then untracks it. A connection over the Limits is refused
// (Refusal) before start sees it.
func (g *Group[S]) Serve(l net.Listener, start func(net.Conn) (S, func())) error {
	err := g.serve(l, start)
	if errors.Is(err, ErrClosing) {
		return g.closed()
	}
	return err
}

// ServeTLS is Serve for implicit TLS (RFC 8314): l's connections start
// with a TLS handshake with config, which the session runs (Conn's
// Handshake). l is wrapped before the accept loop, so that a refusal over
// the Limits is written inside TLS too.
func (g *Group[S]) ServeTLS(l net.Listener, config *tls.Config, start func(net.Conn) (S, func())) error {
	return g.Serve(tls.NewListener(l, config), start)
}

func (g *Group[S]) serve(l net.Listener, start func(net.Conn) (S, func())) error {
	done := g.Done()
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		l.Close()
		return ErrClosing
	}
	if g.listeners == nil {
		g.listeners = make(map[net.Listener]struct{})
	}
	g.listeners[l] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.listeners, l)
		g.mu.Unlock()
	}()
	acc := Acceptor{Listener: l, Name: g.Name, Closing: g.Closing, Done: done, Logger: g.Logger}
	for {
		c, err := acc.Accept()
		if err != nil {
			return err
		}
		addr := connIP(c)
		if why := g.admit(addr); why != "" {
			g.refuse(c, addr, why)
			continue
		}
		sess, run := start(c)
		if !g.trackAdmitted(sess, addr) {
			c.Close()
			return ErrClosing
		}
		go func() {
			defer g.Untrack(sess)
			run()
		}()
	}
}

// Shutdown stops accepting (the listeners are closed), calls interrupt
// for every session (which should end it at its next command boundary),
// and waits for the sessions to end or for ctx; then it calls kill for
// those left (closing their connections), waits for them to return, and
// returns ctx's error with the Group's Name ("imap: shutdown: context
// deadline exceeded").
func (g *Group[S]) Shutdown(ctx context.Context, interrupt, kill func(S)) error {
	g.Done()
	g.mu.Lock()
	if !g.closing {
		g.closing = true
		close(g.done)
	}
	for l := range g.listeners {
		l.Close()
	}
	for s := range g.sessions {
		interrupt(s)
	}
	g.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		for s := range g.sessions {
			kill(s)
		}
		g.mu.Unlock()
		<-finished
		return fmt.Errorf("%s: shutdown: %w", g.Name, ctx.Err())
	}
}
