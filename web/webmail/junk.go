package webmail

import (
	"context"
	"time"

	"postern/mailbox/maildir"
)

// Junk and Not junk: the user's word on a message, as mail clients say it
// by filing (Thunderbird's junk button, Dovecot's imapsieve with rspamd).
// Into Junk the message gets the $Junk keyword and is learned as spam;
// out of Junk (to INBOX with Not junk, or by the ordinary move to any
// folder but Trash, where a message goes to be deleted, not judged) it
// gets $NotJunk and is learned as ham. $Junk and $NotJunk are the IANA
// registry's keywords (RFC 5788) that IMAP clients set and read, and
// never stand together (keywordOpposites).

// maxJunkLearn bounds the message handed to JunkLearn: spam is small,
// and a bigger message teaches the model little for the memory it costs.
const maxJunkLearn = 1 << 20

// junkLearnTimeout bounds one learn: the model's store may be a remote
// Redis, and the move must not wait on it for long.
const junkLearnTimeout = 10 * time.Second

// junkMark is what filing a message into or out of Junk says of it.
type junkMark struct {
	keyword string // set on the moved copy
	spam    bool
}

var (
	markJunk    = &junkMark{keyword: "$Junk", spam: true}
	markNotJunk = &junkMark{keyword: "$NotJunk", spam: false}
)

// junkMarkFor is the mark a move from the folder from to the folder to
// (request parameters) carries, or nil when it says nothing of the
// messages. A shared folder's parameter ("shared/...") is never the
// user's Junk.
func junkMarkFor(from, to string) *junkMark {
	switch {
	case to == folderJunk && from != folderJunk:
		return markJunk
	case from == folderJunk && to != folderJunk && to != folderTrash:
		return markNotJunk
	}
	return nil
}

// markMoved sets the mark's keyword on the copy of m at newKey in dst and
// tells JunkLearn what m in src (not yet removed) holds: the message as
// the user read it, through src's checks (a shared folder's view).
// Neither may fail the move, whose copy is already made: a failure is
// logged, and the message stays where the user put it.
func (h *Handler) markMoved(ctx context.Context, u *user, src, dst *maildir.Folder, newKey string, m maildir.Message, mark *junkMark) {
	if err := dst.SetFlags(newKey, m.Flags, withKeyword(m.Keywords, mark.keyword, true)); err != nil {
		h.log.Warn("webmail: junk keyword not set", "user", u.s.Login, "keyword", mark.keyword, "err", err)
	}
	if h.opt.JunkLearn == nil {
		return
	}
	if m.Size > maxJunkLearn {
		h.log.Info("webmail: message too big to learn from", "user", u.s.Login, "size", m.Size, "spam", mark.spam)
		return
	}
	msg, err := src.ReadMessage(m.Key, nil, maxJunkLearn+1)
	if err != nil {
		h.log.Warn("webmail: read message to learn", "user", u.s.Login, "err", err)
		return
	}
	if len(msg) > maxJunkLearn {
		// The ",S=" size was wrong (or missing and the file grew).
		h.log.Info("webmail: message too big to learn from", "user", u.s.Login, "size", len(msg), "spam", mark.spam)
		return
	}
	// The learn outlives a client that gives up on the request: the
	// message is filed, so the model should know.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), junkLearnTimeout)
	defer cancel()
	if err := h.opt.JunkLearn(ctx, u.s.Login, msg, mark.spam); err != nil {
		h.log.Warn("webmail: junk learn failed; the message is moved all the same", "user", u.s.Login, "spam", mark.spam, "err", err)
	}
}
