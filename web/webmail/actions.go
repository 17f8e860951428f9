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
// Trash; in Trash, for good), move, read, unread, flag, unflag.
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
	var done int
	var actErr error
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
		done, actErr = moveMessages(f, trash, msgs)
	case "move":
		to, err := folderParam(r.PostFormValue("to"))
		if err != nil || r.PostFormValue("to") == "" {
			h.flash(w, r, u, "Choose the folder to move to.", back)
			return
		}
		if to == name {
			h.flash(w, r, u, "The messages are already in that folder.", back)
			return
		}
		dst, err := u.md.Folder(to)
		if err != nil {
			h.flash(w, r, u, "There is no folder by that name.", back)
			return
		}
		done, actErr = moveMessages(f, dst, msgs)
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
	h.log.Info("webmail: action", "user", u.s.Login, "folder", name, "op", op, "messages", done)
	if (op == "delete" || op == "move") && strings.HasPrefix(back, Prefix+"msg?") {
		back = listURL(name, listQuery{}) // the message is no longer here
	}
	h.flash(w, r, u, actionDone(op, done), back)
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
// and removes it from src, as IMAP's MOVE does.
func moveMessages(src, dst *maildir.Folder, msgs []maildir.Message) (int, error) {
	done := 0
	for _, m := range msgs {
		if _, err := src.CopyTo(dst, m.Key); err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			return done, err
		}
		if err := src.Remove(m.Key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			return done, err
		}
		done++
	}
	return done, nil
}

// specialFolder opens Sent, Drafts or Trash, making it (and subscribing
// it, for IMAP clients) when it is missing.
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
