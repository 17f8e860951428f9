package netserve

import (
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SessionInfo is what `postern who` shows of one session (doveadm who):
// who is logged in, from where, over what, since when.
type SessionInfo struct {
	Protocol string    `json:"protocol"` // "imap", "pop3", "smap"
	User     string    `json:"user,omitempty"`
	Remote   string    `json:"remote"` // client address, ip:port
	Local    string    `json:"local"`  // the listener's address
	Since    time.Time `json:"since"`
	TLS      bool      `json:"tls"`
	Mailbox  string    `json:"mailbox,omitempty"` // IMAP's selected folder
	Proxied  bool      `json:"proxied,omitempty"` // relayed to another mailbox host
}

// RemoteIP is the client's address without its port; the zero Addr when
// it cannot be parsed (a Unix socket).
func (i SessionInfo) RemoteIP() netip.Addr {
	ap, err := netip.ParseAddrPort(i.Remote)
	if err != nil {
		a, _ := netip.ParseAddr(i.Remote)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// Match selects sessions the way doveadm who and doveadm kick do: a user
// mask with shell wildcards (`*`, `?`, `[...]`; case folded, as logins
// are) and an optional client address or network. An empty mask matches
// every logged-in user; an invalid mask or network matches nothing.
type Match struct {
	UserMask string
	Network  netip.Prefix // !IsValid(): any address
}

// ParseMatch reads the arguments USER-MASK [IP[/BITS]].
func ParseMatch(userMask, network string) (Match, error) {
	m := Match{UserMask: strings.ToLower(userMask)}
	if _, err := path.Match(m.UserMask, ""); err != nil {
		return Match{}, err
	}
	if network == "" {
		return m, nil
	}
	if strings.Contains(network, "/") {
		p, err := netip.ParsePrefix(network)
		if err != nil {
			return Match{}, err
		}
		m.Network = p.Masked()
		return m, nil
	}
	a, err := netip.ParseAddr(network)
	if err != nil {
		return Match{}, err
	}
	a = a.Unmap()
	m.Network = netip.PrefixFrom(a, a.BitLen())
	return m, nil
}

// Matches reports whether i is selected. A session not logged in yet is
// selected only by an empty mask with a network (kick every connection
// from a host).
func (m Match) Matches(i SessionInfo) bool {
	if m.Network.IsValid() && !m.Network.Contains(i.RemoteIP()) {
		return false
	}
	if m.UserMask == "" {
		return i.User != "" || m.Network.IsValid()
	}
	ok, err := path.Match(m.UserMask, strings.ToLower(i.User))
	return err == nil && ok && i.User != ""
}

// Lists is Matches for who's listing: with neither a mask nor a network
// every session is listed, logged in or not.
func (m Match) Lists(i SessionInfo) bool {
	if m.UserMask == "" && !m.Network.IsValid() {
		return true
	}
	return m.Matches(i)
}

// Tracker is kept by a session for Who and Kick: its current SessionInfo
// (replaced whole on login and SELECT, read from other goroutines) and
// the channel closed when an admin kicks it. Its zero value is not ready:
// use NewTracker.
type Tracker struct {
	info     atomic.Pointer[SessionInfo]
	kick     chan struct{}
	kickOnce sync.Once
}

// NewTracker starts the record of a session accepted now.
func NewTracker(protocol, remote, local string, tls bool) *Tracker {
	t := &Tracker{kick: make(chan struct{})}
	t.info.Store(&SessionInfo{Protocol: protocol, Remote: remote, Local: local, Since: time.Now().UTC(), TLS: tls})
	return t
}

// Info is the session as it is now.
func (t *Tracker) Info() SessionInfo { return *t.info.Load() }

// Update changes the record; only the session's own goroutine calls it,
// so a read-modify-write cannot race with another update.
func (t *Tracker) Update(change func(*SessionInfo)) {
	i := *t.info.Load()
	change(&i)
	t.info.Store(&i)
}

// Kicked is closed once an admin has asked the session to end.
func (t *Tracker) Kicked() <-chan struct{} { return t.kick }

// IsKicked reports whether Kicked is closed.
func (t *Tracker) IsKicked() bool {
	select {
	case <-t.kick:
		return true
	default:
		return false
	}
}

// Kick closes Kicked; it is safe to call more than once.
func (t *Tracker) Kick() { t.kickOnce.Do(func() { close(t.kick) }) }

// KickedText is the reason a kicked session gives its client.
const KickedText = "disconnected by the administrator"

// kickGrace is how long a kicked session has to end at its next command
// boundary before its connection is cut.
const kickGrace = 5 * time.Second

// Tracked is a session type Who and Kick can work with.
type Tracked interface {
	comparable
	Tracker() *Tracker
}

// Who lists g's sessions, oldest first. A session whose Protocol is
// empty was handed to another server, which lists it.
func Who[S Tracked](g *Group[S]) []SessionInfo {
	g.mu.Lock()
	out := make([]SessionInfo, 0, len(g.sessions))
	for s := range g.sessions {
		if i := s.Tracker().Info(); i.Protocol != "" {
			out = append(out, i)
		}
	}
	g.mu.Unlock()
	sortInfos(out)
	return out
}

// Kick ends g's sessions that m selects and returns them (not those an
// earlier Kick is already ending): interrupt asks
// each to end at its next command boundary (it says why to its client);
// those still running after a grace period are cut with kill.
func Kick[S Tracked](g *Group[S], m Match, interrupt, kill func(S)) []SessionInfo {
	var kicked []S
	var infos []SessionInfo
	g.mu.Lock()
	for s := range g.sessions {
		if i := s.Tracker().Info(); i.Protocol != "" && !s.Tracker().IsKicked() && m.Matches(i) {
			s.Tracker().Kick()
			interrupt(s)
			kicked = append(kicked, s)
			infos = append(infos, i)
		}
	}
	g.mu.Unlock()
	if len(kicked) > 0 {
		time.AfterFunc(kickGrace, func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, s := range kicked {
				if _, running := g.sessions[s]; running {
					kill(s)
				}
			}
		})
	}
	sortInfos(infos)
	return infos
}

func sortInfos(infos []SessionInfo) {
	slices.SortFunc(infos, func(a, b SessionInfo) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Remote, b.Remote)
	})
}
