package admin

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"postern/internal/netserve"
	"postern/web/websession"
)

type sessionRow struct {
	netserve.SessionInfo
	IP, Since, For string
}

type sessionsData struct {
	Rows     []sessionRow
	Mask     string
	Network  string
	Total    int
	Disabled bool // the server gave no Who (a handler outside postern serve)
}

// sessionList is the Sessions page: doveadm who in the browser
// (docs/who.md), with the user mask and network filters of postern who.
func (h *Handler) sessionList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	v := view{Title: "Sessions", Section: "sessions"}
	d := sessionsData{Mask: r.URL.Query().Get("user"), Network: r.URL.Query().Get("network"), Disabled: h.opt.Who == nil}
	status := http.StatusOK
	if h.opt.Who != nil {
		m, err := netserve.ParseMatch(d.Mask, d.Network)
		if err != nil {
			v.Errors = errorLines(err)
			status = http.StatusBadRequest
		}
		all := h.opt.Who()
		d.Total = len(all)
		now := time.Now()
		for _, i := range all {
			if err == nil && m.Lists(i) {
				d.Rows = append(d.Rows, sessionRow{SessionInfo: i, IP: i.RemoteIP().String(),
					Since: i.Since.Local().Format(time.DateTime), For: now.Sub(i.Since).Round(time.Second).String()})
			}
		}
	}
	v.Data = d
	h.render(w, s, status, "sessions", v)
}

// sessionKick ends the sessions of a user (exact name) or of a client
// address, as postern kick does.
func (h *Handler) sessionKick(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	if h.opt.Kick == nil {
		http.NotFound(w, r)
		return
	}
	user, ip := r.PostFormValue("user"), r.PostFormValue("ip")
	var m netserve.Match
	var err error
	switch {
	case user != "" && ip == "":
		// The exact login: wildcard characters in a name are not a mask here.
		m, err = netserve.ParseMatch(escapeMask(user), "")
	case user == "" && ip != "":
		m, err = netserve.ParseMatch("", ip)
	default:
		err = errors.New("name a user or a client address")
	}
	if err != nil {
		h.render(w, s, http.StatusBadRequest, "sessions", view{Title: "Sessions", Section: "sessions", Errors: errorLines(err), Data: sessionsData{}})
		return
	}
	kicked := h.opt.Kick(m, s.Login)
	what := "user " + user
	if ip != "" {
		what = "client " + ip
	}
	h.done(w, r, s, "session-kick", pluralSessions(len(kicked))+" of "+what+" ended", Prefix+"sessions", "user", user, "ip", ip)
}

func pluralSessions(n int) string {
	if n == 1 {
		return "1 session"
	}
	return strconv.Itoa(n) + " sessions"
}

// escapeMask makes a login a mask that matches only itself.
func escapeMask(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
