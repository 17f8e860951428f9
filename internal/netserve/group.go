package netserve

import (
	"context"
	"log/slog"
	"net"
	"sync"
)

// Group is what a protocol server (IMAP, POP3, SMAP) keeps of its
// listeners and sessions: it accepts on any number of listeners, runs each
// session on its own goroutine, and shuts down by asking every session to
// end, waiting for them, and cutting those still running when the
// deadline comes. S is the server's session type. The zero value is ready
// to use.
type Group[S comparable] struct {
	Name   string // for logs and errors: "imap", "pop3", "smap"
	Logger *slog.Logger

	mu        sync.Mutex
	closing   bool
	done      chan struct{}
	listeners map[net.Listener]struct{}
	sessions  map[S]struct{}
	wg        sync.WaitGroup
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
func (g *Group[S]) Track(s S) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	if g.sessions == nil {
		g.sessions = make(map[S]struct{})
	}
	g.sessions[s] = struct{}{}
	g.wg.Add(1)
	return true
}

// Untrack is called once a tracked session has ended.
func (g *Group[S]) Untrack(s S) {
	g.mu.Lock()
	delete(g.sessions, s)
	g.mu.Unlock()
	g.wg.Done()
}

// Len counts the sessions running.
func (g *Group[S]) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Serve accepts connections on l until Shutdown, when it returns
// ErrClosing. For each connection start makes the session and returns the
// function that runs it; Serve tracks the session and runs it on a
// goroutine of its own, then untracks it.
func (g *Group[S]) Serve(l net.Listener, start func(net.Conn) (S, func())) error {
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
		sess, run := start(c)
		if !g.Track(sess) {
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
// those left (closing their connections) and waits for them to return.
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
		return ctx.Err()
	}
}
