package smap

import (
	"slices"
	"strings"

	"postern/mailbox/acl"
)

// Rights on the wire are Courier's letters (maildiraclt): RFC 4314's, but
// "c" for creating folders where RFC 4314 has "k", sorted, without "p".
func courierRights(r acl.Rights) string {
	s := strings.ReplaceAll(strings.ReplaceAll(r.String(), "k", "c"), "p", "")
	b := []byte(s)
	slices.Sort(b)
	return string(b)
}

// parseCourierRights reads Courier's letters ("c" is RFC 4314's "k").
func parseCourierRights(s string) (acl.Rights, error) {
	return acl.ParseRights(strings.ReplaceAll(s, "c", "k"))
}

// aclFolder reads the ACL of a path's folder. The account's owner has every
// right on their own folders whatever the file says (acl.List.Rights), so
// SMAP's access checks never refuse them; the ACL commands read and change
// the files that other users' access (through IMAP's #shared) depends on.
func (sess *session) aclFolder(w *words) (string, acl.List, bool) {
	name, err := folderName(w.path())
	if err != nil {
		sess.writeString("-ERR Invalid folder: " + errText(err) + "\n")
		return "", nil, false
	}
	l, err := acl.ReadFolder(sess.md.Root(), name)
	if err != nil {
		sess.writeString("-ERR Unable to read existing ACLS: " + errText(err) + "\n")
		return "", nil, false
	}
	return name, l, true
}

// withAdministrators shows the implicit "administrators" entry Courier
// lists beside the owner's.
func withAdministrators(l acl.List) acl.List {
	if _, ok := l.Find("administrators"); ok {
		return l
	}
	// Courier's default list is "owner" then "administrators".
	at := 0
	if len(l) > 0 && l[0].ID == "owner" {
		at = 1
	}
	return slices.Insert(slices.Clone(l), at, acl.Entry{ID: "administrators", Rights: acl.All})
}

func (sess *session) writeGetACL(l acl.List) {
	l = withAdministrators(l)
	for k, e := range l {
		if k%6 == 0 {
			if k > 0 {
				sess.writeString("\n")
			}
			sess.writeString("* GETACL")
		}
		sess.writeString(" " + quote(e.ID) + " " + quote(courierRights(e.Rights)))
	}
	if len(l) > 0 {
		sess.writeString("\n")
	}
}

// cmdACL: "ACL path" gives the user's own rights, "GETACL path" the list.
func (sess *session) cmdACL(cmd string, w *words) {
	_, l, ok := sess.aclFolder(w)
	if !ok {
		return
	}
	if cmd == "ACL" {
		sess.writeString("* ACL " + quote(courierRights(l.Rights(sess.user, true))) + "\n")
	} else {
		sess.writeGetACL(l)
	}
	sess.writeString("+OK ACLs retrieved\n")
}

// cmdSetACL: "SETACL path "" id rights ..." (rights "+x" adds, "-x"
// removes, "" deletes the entry) and "DELETEACL path "" id ...".
func (sess *session) cmdSetACL(cmd string, w *words) {
	name, l, ok := sess.aclFolder(w)
	if !ok {
		return
	}
	for {
		id := w.next()
		if id == "" {
			break
		}
		if cmd == "DELETEACL" {
			l = l.Delete(id)
			continue
		}
		action := w.next()
		if !acl.ValidID(id) {
			sess.writeString("-ERR Error: Invalid argument\n")
			return
		}
		old, had := l.Find(id)
		switch {
		case strings.HasPrefix(action, "+"):
			r, err := parseCourierRights(action[1:])
			if err != nil {
				sess.writeString("-ERR Error: Invalid argument\n")
				return
			}
			l = l.Set(id, old.Rights|r)
		case strings.HasPrefix(action, "-"):
			if !had {
				continue
			}
			r, err := parseCourierRights(action[1:])
			if err != nil {
				sess.writeString("-ERR Error: Invalid argument\n")
				return
			}
			if rest := old.Rights &^ r; rest == 0 {
				l = l.Delete(id)
			} else {
				l = l.Set(id, rest)
			}
		case action == "":
			l = l.Delete(id)
		default:
			r, err := parseCourierRights(action)
			if err != nil {
				sess.writeString("-ERR Error: Invalid argument\n")
				return
			}
			l = l.Set(id, r)
		}
	}
	if err := acl.WriteFolder(sess.md.Root(), name, l); err != nil {
		sess.log.Warn("smap: write ACL", "folder", name, "err", err)
		sess.writeString("-ERR ACL update failed\n")
		return
	}
	sess.writeGetACL(l)
	sess.writeString("+OK Updated ACLs\n")
}
