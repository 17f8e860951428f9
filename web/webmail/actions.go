package webmail

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"postern/mailbox/maildir"
)

// maxActionMessages bounds the messages one action names.
const maxActionMessages = 5000

// act carries out an action on the messages a form names: delete (to
// Trash; in Trash, for good), move, junk (to Junk), notjunk (from Junk to
// INBOX), read, unread, flag, unflag.
func (h *Handler) act(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	name, f, ok := h.openFolder(w, r, u, r.PostFormValue("f"))
	if !ok {
		return
	}
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, Prefix+"list?") && !strings.HasPrefix(back, Prefix+"msg?") || strings.ContainsAny(back, "\\\r\n") {
		back = listURL(name, listQuery{}) // only our own pages: no open redirect
	}
	ids := r.PostForm["uid"]
	if len(ids) == 0 {
		h.flash(w, r, u, "Select one or more messages first.", back)
		return
	}
	if len(ids) > maxActionMessages {
		h.fail(w, r, u, http.StatusBadRequest, "Too many messages at once.")
		return
	}
	snap, err := f.Sync(false)
	if err != nil {
		h.log.Error("webmail: read folder", "user", u.s.Login, "folder", name, "err", err)
		h.fail(w, r, u, http.StatusServiceUnavailable, "This folder cannot be read now. Try again later.")
		return
	}
	var msgs []maildir.Message
	for _, id := range ids {
		uid, ok := parseUID(id)
		if !ok {
			h.fail(w, r, u, http.StatusBadRequest, "There is no such message.")
			return
		}
		if m := findUID(snap, uid); m != nil {
			msgs = append(msgs, *m)
		}
	}
	op := r.PostFormValue("op")
	var done, kept int
	var actErr error
	fs := u.fs
	id, _ := u.identity()
	if fs != nil && !fs.view.Writable && op != "" {
		// A shared folder the user may not write: read-only, as IMAP
		// opens it, whatever the action.
		h.flash(w, r, u, "This shared folder is read-only: its owner lets you read it, not change it.", back)
		return
	}
	switch op {
	case "read", "unread", "flag", "unflag":
		flag, on := maildir.FlagSeen, op == "read"
		if op == "flag" || op == "unflag" {
			flag, on = maildir.FlagFlagged, op == "flag"
		}
		for _, m := range msgs {
			if err := f.SetFlags(m.Key, withFlag(m.Flags, flag, on), m.Keywords); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
				actErr = err
				break
			}
			done++
		}
	case "delete":
		if fs != nil {
			// Out of the sharable folder itself, where the permissions
			// allow it (as IMAP's EXPUNGE there): the user's Trash
			// would only hold a copy of what everyone shares.
			for _, m := range msgs {
				k, err := removeFrom(f, fs, id, m.Key)
				if err != nil && !errors.Is(err, maildir.ErrNoMessage) {
					actErr = err
					break
				}
				if k {
					kept++
				} else {
					done++
				}
			}
			break
		}
		if name == folderTrash {
			for _, m := range msgs {
				if err := f.Remove(m.Key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
					actErr = err
					break
				}
				done++
			}
			break
		}
		trash, err := h.specialFolder(u, folderTrash)
		if err != nil {
			actErr = err
			break
		}
		done, kept, actErr = moveMessages(f, trash, msgs, nil, id, false, nil)
	case "move":
		to := r.PostFormValue("to")
		if to == "" {
			h.flash(w, r, u, "Choose the folder to move to.", back)
			return
		}
		if to == name || strings.EqualFold(to, maildir.Inbox) && name == maildir.Inbox {
			h.flash(w, r, u, "The messages are already in that folder.", back)
			return
		}
		dst, toShared, err := h.insertTarget(u, to)
		if errors.Is(err, errReadOnlyShared) {
			h.flash(w, r, u, "That shared folder is read-only: its owner lets you read it, not add to it.", back)
			return
		}
		if err != nil {
			h.flash(w, r, u, "There is no folder by that name.", back)
			return
		}
		done, kept, actErr = moveMessages(f, dst, msgs, fs, id, toShared, h.marker(r, u, f, dst, junkMarkFor(name, to)))
	case "junk", "notjunk":
		switch {
		case op == "junk" && name == folderJunk:
			h.flash(w, r, u, "The messages are already in Junk.", back)
			return
		case op == "notjunk" && name != folderJunk:
			h.flash(w, r, u, "Not junk moves messages out of the Junk folder; these are not in it.", back)
			return
		}
		var dst *maildir.Folder
		var err error
		mark := markJunk
		if op == "junk" {
			dst, err = h.specialFolder(u, folderJunk)
		} else {
			dst, err = u.md.Folder(maildir.Inbox) // always there
			mark = markNotJunk
		}
		if err != nil {
			actErr = err
			break
		}
		done, kept, actErr = moveMessages(f, dst, msgs, fs, id, false, h.marker(r, u, f, dst, mark))
	default:
		h.fail(w, r, u, http.StatusBadRequest, "Unknown action.")
		return
	}
	if actErr != nil {
		h.log.Error("webmail: action", "user", u.s.Login, "folder", name, "op", op, "done", done, "err", actErr)
		msg := "The action failed part way; try again later."
		if errors.Is(actErr, maildir.ErrOverQuota) {
			msg = "The action stopped: your mailbox is full. Empty the Trash and try again."
		}
		h.flash(w, r, u, msg, back)
		return
	}
	h.log.Info("webmail: action", "user", u.s.Login, "folder", name, "op", op, "messages", done, "kept", kept)
	if (op == "delete" || op == "move" || op == "junk" || op == "notjunk") && strings.HasPrefix(back, Prefix+"msg?") && kept == 0 {
		back = listURL(name, listQuery{}) // the message is no longer here
	}
	msg := actionDone(op, done)
	if kept > 0 {
		msg += fmt.Sprintf(" %d kept in the shared folder: only their owner (or the folder's) may remove them.", kept)
	}
	h.flash(w, r, u, msg, back)
}

func actionDone(op string, n int) string {
	what := fmt.Sprintf("%d messages", n)
	if n == 1 {
		what = "1 message"
	}
	switch op {
	case "delete":
		return what + " deleted."
	case "move":
		return what + " moved."
	case "junk":
		return what + " moved to Junk."
	case "notjunk":
		return what + " moved to INBOX as not junk."
	case "read":
		return what + " marked as read."
	case "unread":
		return what + " marked as unread."
	case "flag":
		return what + " flagged."
	}
	return what + " unflagged."
}

// moveMessages copies each message to dst (with its flags and keywords)
// and removes it from src, as IMAP's MOVE does. From a shared folder
// (srcShared) the original is removed where the permissions allow it,
// else kept (and counted); into one (toShared) the copy is given to the
// user. moved, when set, is called with each copy before the original is
// removed.
func moveMessages(src, dst *maildir.Folder, msgs []maildir.Message, srcShared *fsShared, id maildir.Identity, toShared bool,
	moved func(newKey string, m maildir.Message)) (done, kept int, err error) {
	for _, m := range msgs {
		newKey, err := src.CopyTo(dst, m.Key)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			return done, kept, err
		}
		if toShared {
			dst.AdoptShared([]string{newKey}, id)
		}
		if moved != nil {
			moved(newKey, m)
		}
		k, err := removeFrom(src, srcShared, id, m.Key)
		if err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return done, kept, err
		}
		if k {
			kept++
		} else {
			done++
		}
	}
	return done, kept, nil
}

// marker is moveMessages' moved for a move that carries mark (nil: none).
func (h *Handler) marker(r *http.Request, u *user, src, dst *maildir.Folder, mark *junkMark) func(string, maildir.Message) {
	if mark == nil {
		return nil
	}
	return func(newKey string, m maildir.Message) { h.markMoved(r.Context(), u, src, dst, newKey, m, mark) }
}

// specialFolder opens Sent, Drafts, Trash or Junk, making it (and
// subscribing it, for IMAP clients) when it is missing.
func (h *Handler) specialFolder(u *user, name string) (*maildir.Folder, error) {
	f, err := u.md.Folder(name)
	if err == nil || !errors.Is(err, maildir.ErrNoFolder) {
		return f, err
	}
	if err := u.md.CreateFolder(name); err != nil && !errors.Is(err, maildir.ErrFolderExists) {
		return nil, err
	}
	if err := u.md.Subscribe("INBOX."+name, true); err != nil {
		h.log.Warn("webmail: subscribe", "user", u.s.Login, "folder", name, "err", err)
	}
	return u.md.Folder(name)
}
