package netserve

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limits bound a Group's sessions, as Courier's couriertcpd does with
// MAXDAEMONS and MAXPERIP and Dovecot with mail_max_userip_connections,
// so that one client cannot use up the server's file descriptors and
// memory. A zero field is no limit.
type Limits struct {
	Total  int // sessions at once
	PerIP  int // sessions at once from one client address
	UserIP int // logged-in sessions of one user from one client address
}

// Why a connection or login is refused: the text a server's Refusal, or
// its answer to a login that AdmitLogin refuses, gives the client.
const (
	TooManyConnections = "Too many connections, try again later"
	TooManyFromAddress = "Too many connections from your address, try again later"
	TooManyForUser     = "Too many connections for this user from your address"
)

const (
	// refuseTimeout bounds the refusal's write (and on an implicit-TLS
	// listener the handshake before it): a client that does not read
	// loses the line, not a file descriptor for long.
	refuseTimeout = 2 * time.Second
	// maxRefusing bounds the refusals being written at once; past it a
	// connection over a limit is closed with nothing said, so that a
	// flood costs neither goroutines nor descriptors.
	maxRefusing = 64
	// refusalLogEvery is the least time between two refusal log lines.
	refusalLogEvery = 10 * time.Second
)

// limits reads the limits in force (none without Group.Limits).
func (g *Group[S]) limits() Limits {
	if g.Limits == nil {
		return Limits{}
	}
	return g.Limits()
}

// connIP is the client address of c the way SessionInfo.RemoteIP reads
// a session's, so that the limits and `postern who` count alike.
func connIP(c net.Conn) netip.Addr {
	return SessionInfo{Remote: c.RemoteAddr().String()}.RemoteIP()
}

// admit reserves room for a connection from addr, or says why there is
// none. The reservation becomes a session with track, or is given back.
func (g *Group[S]) admit(addr netip.Addr) (why string) {
	lim := g.limits()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case lim.Total > 0 && len(g.sessions)+g.pending >= lim.Total:
		return TooManyConnections
	case lim.PerIP > 0 && addr.IsValid() && g.perIP[addr] >= lim.PerIP:
		return TooManyFromAddress
	}
	g.pending++
	if addr.IsValid() {
		if g.perIP == nil {
			g.perIP = make(map[netip.Addr]int)
		}
		g.perIP[addr]++
	}
	return ""
}

// releaseIP forgets one session from addr; g.mu is held.
func (g *Group[S]) releaseIP(addr netip.Addr) {
	if !addr.IsValid() {
		return
	}
	if g.perIP[addr]--; g.perIP[addr] <= 0 {
		delete(g.perIP, addr)
	}
}

// refuse turns away c, over a limit for why: the server's Refusal line is
// written on a goroutine of its own (the accept loop does not wait for a
// slow client) within refuseTimeout, and the connection closed.
func (g *Group[S]) refuse(c net.Conn, addr netip.Addr, why string) {
	g.refusedConns.Add(1)
	g.logRefusal("connection refused", addr, why)
	g.mu.Lock()
	if g.closing || g.Refusal == nil || g.refusing >= maxRefusing {
		g.mu.Unlock()
		c.Close()
		return
	}
	g.refusing++
	g.wg.Add(1) // Shutdown waits for the refusal too
	g.mu.Unlock()
	go func() {
		defer func() {
			g.mu.Lock()
			g.refusing--
			g.mu.Unlock()
			g.wg.Done()
		}()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		io.WriteString(c, g.Refusal(why))
	}()
}

// AdmitLogin reports whether s, which has just proved it is user, may
// log in under g's UserIP limit (Dovecot's mail_max_userip_connections):
// false when as many of g's other sessions are logged in as the same
// user from the same client address. The count reads each session's
// Tracker, whose User is set at login, and the logins AdmitLogin has
// admitted, so that two logins racing each other are counted before
// either has set its User: check and admission are one step under g's
// lock. A refusal is logged and counted; the caller answers the login
// with its protocol's NO and TooManyForUser, and the session goes on,
// not logged in.
func AdmitLogin[S Tracked](g *Group[S], s S, user string) bool {
	lim := g.limits()
	addr := s.Tracker().Info().RemoteIP()
	if lim.UserIP <= 0 || !addr.IsValid() {
		return true
	}
	n := 0
	g.mu.Lock()
	for o := range g.sessions {
		if o == s {
			continue
		}
		i := o.Tracker().Info()
		if i.RemoteIP() != addr {
			continue
		}
		if a, ok := g.admitted[o]; (ok && strings.EqualFold(a, user)) || (i.Protocol != "" && strings.EqualFold(i.User, user)) {
			n++
		}
	}
	admit := n < lim.UserIP
	if admit {
		if g.admitted == nil {
			g.admitted = make(map[S]string)
		}
		g.admitted[s] = user
	}
	g.mu.Unlock()
	if admit {
		return true
	}
	g.refusedLogins.Add(1)
	g.logRefusal("login refused", addr, TooManyForUser, "user", user, "limit", lim.UserIP)
	return false
}

// RefusedConnections counts the connections turned away over the Total
// or PerIP limit.
func (g *Group[S]) RefusedConnections() uint64 { return g.refusedConns.Load() }

// RefusedLogins counts the logins AdmitLogin refused.
func (g *Group[S]) RefusedLogins() uint64 { return g.refusedLogins.Load() }

// logRefusal logs a refusal, at most one line each refusalLogEvery: a
// flood of connections must not flood the log too. The line says how
// many refusals went unlogged before it.
func (g *Group[S]) logRefusal(msg string, addr netip.Addr, why string, args ...any) {
	if g.Logger == nil {
		return
	}
	suppressed, ok := g.refusalLog.allow(time.Now())
	if !ok {
		return
	}
	args = append([]any{"remote", addr.String(), "reason", why, "unlogged_refusals", suppressed}, args...)
	g.Logger.Warn(g.Name+": "+msg, args...)
}

// logThrottle lets one log line through each period and counts the
// others.
type logThrottle struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now, and how many were
// held back since the last one.
func (t *logThrottle) allow(now time.Time) (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.suppressed++
		return 0, false
	}
	suppressed, t.suppressed = t.suppressed, 0
	t.next = now.Add(refusalLogEvery)
	return suppressed, true
}
