package imap

import (
	"strings"
	"time"
)

// IDLE (RFC 2177): the client waits for untagged updates until it sends
// DONE. Changes are noticed through the folder hub (other sessions of this
// server, and inotify on new/ and cur/ for other processes), with a poll
// every 30 seconds as the safe fallback when watching is not possible or an
// event is lost.
func idleCommands() []*commandSpec {
	return []*commandSpec{
		{name: "IDLE", states: authenticated, caps: []string{"IDLE"}, exec: execIdle, noUpdates: true},
	}
}

type idleLine struct {
	line string
	err  error
}

// idleDebounce lets a burst of file events (a delivery is a link and a
// rename) become one rescan.
const idleDebounce = 20 * time.Millisecond

func execIdle(s *session, c *command) result {
	// The folder is watched before the last sync and the continuation:
	// a message delivered once the client has "+ idling" must wake this
	// session, not wait for the next poll.
	if s.sel != nil {
		path := s.sel.folder.Path()
		if s.srv.hub.watch(path) {
			defer s.srv.hub.unwatch(path)
		}
		if r, failed := s.syncResult(s.sendUpdates(true, false)); failed {
			return r
		}
	}
	s.w.line("+ idling").end()
	if err := s.w.flush(); err != nil {
		return fatal()
	}
	lines := make(chan idleLine, 1)
	go func() {
		line, err := s.readAuthLine(s.srv.opt.IdleTimeout)
		lines <- idleLine{line, err}
	}()
	// stop ends the reader goroutine before the session goes on.
	stop := func() {
		s.conn.SetReadDeadline(time.Now())
		<-lines
	}
	ticker := time.NewTicker(s.srv.idlePoll)
	defer ticker.Stop()
	for {
		var err error
		select {
		case l := <-lines:
			if l.err != nil {
				if s.shuttingDown() {
					s.bye(s.endText())
				} else if isTimeout(l.err) {
					s.bye("autologout; idle for too long")
				}
				return fatal()
			}
			if strings.EqualFold(strings.TrimSpace(l.line), "DONE") {
				return ok("IDLE terminated")
			}
			return bad("Expected DONE to end IDLE")
		case <-s.changed:
			time.Sleep(idleDebounce)
			select {
			case <-s.changed:
			default:
			}
			if s.sel != nil {
				err = s.syncSelected(true)
			}
		case <-ticker.C:
			if s.sel != nil {
				err = s.syncSelected(true)
			}
		case <-s.srv.done:
			stop()
			s.bye(s.endText())
			return fatal()
		case <-s.track.Kicked():
			stop()
			s.bye(s.endText())
			return fatal()
		}
		if r, failed := s.syncResult(err); failed {
			stop()
			if r.fatal {
				return r
			}
			s.bye("mailbox unavailable")
			return fatal()
		}
		if err := s.w.flush(); err != nil {
			stop()
			return fatal()
		}
	}
}
