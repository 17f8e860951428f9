package policy

import (
	"os/user"
	"strconv"
	"strings"
)

// MailUser is the identity the server takes once its listeners are bound
// ("mailuser": Postfix's mail_owner, Dovecot's mail_uid for virtual
// mailboxes, the user Courier's daemons run as).
type MailUser struct {
	Name     string // as written
	UID, GID int
}

// mailUser reads "mailuser": USER, USER:GROUP, or UID:GID numbers. A
// user's own group is taken when no group is given. nil when absent.
func (l *loader) mailUser() *MailUser {
	lines := l.lines("mailuser")
	if len(lines) == 0 {
		return nil
	}
	ln := lines[0]
	if len(lines) > 1 {
		l.fail(lines[1].Errorf("mailuser takes one line, found another"))
		return nil
	}
	name, group, hasGroup := strings.Cut(strings.TrimSpace(ln.Text), ":")
	if name == "" || strings.ContainsAny(name, " \t") || hasGroup && (group == "" || strings.ContainsAny(group, " \t")) {
		l.fail(ln.Errorf("mailuser: want USER, USER:GROUP or UID:GID, got %q", ln.Text))
		return nil
	}
	m := &MailUser{Name: ln.Text}
	uid, err := strconv.Atoi(name)
	if err != nil {
		u, lerr := user.Lookup(name)
		if lerr != nil {
			l.fail(ln.Errorf("mailuser: no user %q on this system", name))
			return nil
		}
		uid, _ = strconv.Atoi(u.Uid)
		if !hasGroup {
			m.GID, _ = strconv.Atoi(u.Gid)
		}
	} else if !hasGroup {
		l.fail(ln.Errorf("mailuser: a numeric uid needs its gid too (UID:GID)"))
		return nil
	}
	m.UID = uid
	if hasGroup {
		gid, err := strconv.Atoi(group)
		if err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				l.fail(ln.Errorf("mailuser: no group %q on this system", group))
				return nil
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
		m.GID = gid
	}
	if m.UID <= 0 || m.GID < 0 {
		l.fail(ln.Errorf("mailuser: %q is root or not a user; name the unprivileged user that owns the mailboxes (vmail)", ln.Text))
		return nil
	}
	return m
}
