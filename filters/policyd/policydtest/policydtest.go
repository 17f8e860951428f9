// Package policydtest runs a scripted Postfix policy server on a real
// socket for tests: it reads requests as Postfix (and Postern) sends them,
// records their attributes, answers each with what the test's function
// returns, and counts the connections its client keeps open. Only tests
// import it.
package policydtest

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Server is a running scripted policy server.
type Server struct {
	Listener net.Listener
	Accepts  atomic.Int32 // connections accepted so far
	Open     atomic.Int32 // connections open now
	// CloseAfter closes each connection after that many requests (0:
	// never), as a policy server with a request limit does.
	CloseAfter atomic.Int32

	answer   func(req map[string]string) string
	mu       sync.Mutex
	requests []map[string]string
}

// Start listens on network and addr ("tcp", "127.0.0.1:0"; "unix", a
// path) until the test ends. answer returns the whole reply, e.g.
// "action=DUNNO\n\n"; Action makes one from an action.
func Start(t testing.TB, network, addr string, answer func(req map[string]string) string) *Server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Listener: ln, answer: answer}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.Accepts.Add(1)
			s.Open.Add(1)
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// Action wraps a function returning an action ("DUNNO", "REJECT no") into
// the answer Start wants.
func Action(f func(req map[string]string) string) func(req map[string]string) string {
	return func(req map[string]string) string { return "action=" + f(req) + "\n\n" }
}

// Addr is the address to configure ("127.0.0.1:40123").
func (s *Server) Addr() string { return s.Listener.Addr().String() }

func (s *Server) serve(c net.Conn) {
	defer s.Open.Add(-1)
	defer c.Close()
	r := bufio.NewReader(c)
	served := 0
	for {
		req := map[string]string{}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, "=")
			req[k] = v
		}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		if _, err := c.Write([]byte(s.answer(req))); err != nil {
			return
		}
		served++
		if n := int(s.CloseAfter.Load()); n > 0 && served >= n {
			return
		}
	}
}

// Requests returns the attributes of every request so far, in order.
func (s *Server) Requests() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.requests...)
}

// Last returns the last request's attributes (nil before any).
func (s *Server) Last() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return nil
	}
	return s.requests[len(s.requests)-1]
}
