package webmail

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"postern/mailbox/maildir"
)

// Keywords: the IMAP keywords of a message (RFC 9051 2.3.2), set and
// removed from its page. They are kept as mailbox/maildir keeps every
// keyword (letters in the file name, and Courier's courierimapkeywords,
// docs/maildirkw.md), so an IMAP client sees the change at once.

// keywordPreset is a keyword mail clients agree on, offered by name.
type keywordPreset struct{ Name, Label string }

// keywordPresets are the labels Thunderbird and others show for
// $Label1..5, and the junk marks of the IANA keyword registry (RFC 5788).
var keywordPresets = []keywordPreset{
	{"$Label1", "Important"}, {"$Label2", "Work"}, {"$Label3", "Personal"},
	{"$Label4", "To do"}, {"$Label5", "Later"},
	{"$Junk", "Junk"}, {"$NotJunk", "Not junk"},
}

// keywordOpposites are never set together: marking junk clears not-junk
// and the other way round, as clients do.
var keywordOpposites = map[string]string{"$junk": "$NotJunk", "$notjunk": "$Junk"}

// withKeyword returns kws with name added (or removed), compared without
// regard to case as IMAP compares keywords.
func withKeyword(kws []string, name string, on bool) []string {
	out := slices.DeleteFunc(slices.Clone(kws), func(k string) bool {
		if strings.EqualFold(k, name) {
			return true
		}
		opp, ok := keywordOpposites[strings.ToLower(name)]
		return on && ok && strings.EqualFold(k, opp)
	})
	if on {
		out = append(out, name)
	}
	return out
}

// setKeyword adds (add=NAME, or preset=NAME) or removes (remove=NAME) one
// keyword of one message.
func (h *Handler) setKeyword(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	v := url.Values{"f": {r.PostFormValue("f")}, "uid": {r.PostFormValue("uid")}}
	om, ok := h.openMessage(w, r, u, v)
	if !ok {
		return
	}
	defer om.file.Close()
	back := msgURL(om.folder, om.m.UID)
	if u.fs != nil && !u.fs.view.Writable {
		h.flash(w, r, u, "This shared folder is read-only: its owner lets you read it, not change it.", back)
		return
	}
	name, on := strings.TrimSpace(r.PostFormValue("remove")), false
	if name == "" {
		name, on = strings.TrimSpace(r.PostFormValue("add")), true
		if name == "" {
			name = r.PostFormValue("preset")
		}
	}
	if name == "" {
		h.flash(w, r, u, "Choose or type a keyword first.", back)
		return
	}
	if err := maildir.ValidKeyword(name); err != nil {
		// An IMAP atom: no blanks, control characters or ( ) { % * " \ ].
		h.flash(w, r, u, "That is not a keyword name: use letters, digits and signs other than blanks and ( ) { % * \" \\ ] (at most 200).", back)
		return
	}
	kws := withKeyword(om.m.Keywords, name, on)
	if err := om.f.SetFlags(om.m.Key, om.m.Flags, kws); err != nil {
		msg := "The keyword could not be changed now. Try again later."
		switch {
		case errors.Is(err, maildir.ErrTooManyKeywords):
			msg = "This folder has as many different keywords as it can hold (26): remove one from every message first, or use one in use already."
		case errors.Is(err, maildir.ErrNoMessage):
			msg = "There is no such message: it may have been moved or deleted."
		default:
			h.log.Error("webmail: set keyword", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		}
		h.flash(w, r, u, msg, back)
		return
	}
	shown := clean(name)
	h.log.Info("webmail: keyword", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "keyword", shown, "set", on)
	if on {
		h.flash(w, r, u, "Keyword "+shown+" set.", back)
	} else {
		h.flash(w, r, u, "Keyword "+shown+" removed.", back)
	}
}
