package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"postern/internal/netserve"
)

// sessionServer is a mailbox service (IMAP, POP3, SMAP) whose sessions
// `postern who` lists and `postern kick` ends, as doveadm who and doveadm
// kick do for Dovecot.
type sessionServer interface {
	Who() []netserve.SessionInfo
	Kick(netserve.Match) []netserve.SessionInfo
}

// Who lists the IMAP, POP3 and SMAP sessions open now, oldest first.
func (s *Server) Who() []netserve.SessionInfo {
	var out []netserve.SessionInfo
	for _, svc := range s.services {
		if ss, ok := svc.(sessionServer); ok {
			out = append(out, ss.Who()...)
		}
	}
	sortSessions(out)
	return out
}

// Kick ends the sessions m selects and logs each, saying who asked (by
// is "control socket" or the web admin's login).
func (s *Server) Kick(m netserve.Match, by string) []netserve.SessionInfo {
	var out []netserve.SessionInfo
	for _, svc := range s.services {
		if ss, ok := svc.(sessionServer); ok {
			out = append(out, ss.Kick(m)...)
		}
	}
	sortSessions(out)
	for _, i := range out {
		s.log.Info("session kicked by the administrator", "protocol", i.Protocol, "user", i.User, "remote", i.Remote, "by", by)
	}
	return out
}

func sortSessions(infos []netserve.SessionInfo) {
	slices.SortStableFunc(infos, func(a, b netserve.SessionInfo) int { return a.Since.Compare(b.Since) })
}

// controlWho answers `who [USER-MASK [IP[/BITS]]]` and `kick USER-MASK
// [IP[/BITS]]` on the control socket: a JSON array of the sessions
// listed or kicked, for the command to print.
func (s *Server) controlWho(_ context.Context, kick bool, args []string, stdout, stderr io.Writer) int {
	if len(args) > 2 || kick && len(args) == 0 {
		fmt.Fprintln(stderr, "want USER-MASK [IP[/BITS]]")
		return 64
	}
	var mask, network string
	if len(args) > 0 {
		mask = args[0]
	}
	if len(args) > 1 {
		network = args[1]
	}
	m, err := netserve.ParseMatch(mask, network)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 64
	}
	var out []netserve.SessionInfo
	if kick {
		out = s.Kick(m, "control socket")
	} else {
		for _, i := range s.Who() {
			if m.Lists(i) {
				out = append(out, i)
			}
		}
	}
	if out == nil {
		out = []netserve.SessionInfo{}
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintln(stderr, err)
		return 70
	}
	return 0
}
