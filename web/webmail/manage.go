package webmail

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"postern/auth"
	"postern/mailbox/maildir"
	"postern/web/websession"
)

type foldersPage struct {
	Folders []folderInfo
	Shared  []sharedInfo
}

// folders lists the folders with their counts and the forms that manage
// them.
func (h *Handler) folders(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	p := h.pageFor(u, "Folders", nil)
	p.Body = &foldersPage{Folders: p.Folders, Shared: p.Shared}
	h.render(w, http.StatusOK, "folders.html", p)
}

// manageFolders creates, renames or deletes a folder. Names are typed in
// UTF-8 and kept on disk in modified UTF-7, as IMAP clients and Courier
// keep them; INBOX, Sent, Drafts and Trash stay.
func (h *Handler) manageFolders(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	back := Prefix + "folders"
	op := r.PostFormValue("op")
	switch op {
	case "create":
		name, err := newFolderName(r.PostFormValue("name"))
		if err != nil {
			h.flash(w, r, u, "That name cannot be a folder: use letters, digits and spaces, with dots between levels.", back)
			return
		}
		if err := u.md.CreateFolder(name); err != nil {
			h.folderError(w, r, u, op, name, err)
			return
		}
		if err := u.md.Subscribe("INBOX."+name, true); err != nil {
			h.log.Warn("webmail: subscribe", "user", u.s.Login, "folder", name, "err", err)
		}
		h.log.Info("webmail: folder created", "user", u.s.Login, "folder", name)
		h.flash(w, r, u, "Folder "+displayName(name)+" created.", back)
	case "rename":
		from, err := folderParam(r.PostFormValue("f"))
		if err != nil || r.PostFormValue("f") == "" {
			h.flash(w, r, u, "There is no folder by that name.", back)
			return
		}
		if protectedFolders[from] {
			h.flash(w, r, u, displayName(from)+" cannot be renamed.", back)
			return
		}
		to, err := newFolderName(r.PostFormValue("name"))
		if err != nil || protectedFolders[to] {
			h.flash(w, r, u, "That name cannot be a folder: use letters, digits and spaces, with dots between levels.", back)
			return
		}
		if err := u.md.RenameFolder(from, to); err != nil {
			h.folderError(w, r, u, op, from, err)
			return
		}
		h.moveSubscriptions(u, from, to)
		h.log.Info("webmail: folder renamed", "user", u.s.Login, "folder", from, "to", to)
		h.flash(w, r, u, "Folder "+displayName(from)+" renamed to "+displayName(to)+".", back)
	case "delete":
		name, err := folderParam(r.PostFormValue("f"))
		if err != nil || r.PostFormValue("f") == "" {
			h.flash(w, r, u, "There is no folder by that name.", back)
			return
		}
		if protectedFolders[name] {
			h.flash(w, r, u, displayName(name)+" cannot be deleted.", back)
			return
		}
		if err := u.md.DeleteFolder(name); err != nil {
			h.folderError(w, r, u, op, name, err)
			return
		}
		if err := u.md.Subscribe("INBOX."+name, false); err != nil {
			h.log.Warn("webmail: unsubscribe", "user", u.s.Login, "folder", name, "err", err)
		}
		h.log.Info("webmail: folder deleted", "user", u.s.Login, "folder", name)
		h.flash(w, r, u, "Folder "+displayName(name)+" deleted with its messages.", back)
	case "subscribe", "unsubscribe":
		h.subscribeShared(w, r, u, op == "subscribe")
	default:
		h.fail(w, r, u, http.StatusBadRequest, "Unknown action.")
	}
}

// subscribeShared subscribes to a shared folder (makes the user's private
// view of it, as Courier does) or unsubscribes (removes the view; the
// sharable folder's messages stay).
func (h *Handler) subscribeShared(w http.ResponseWriter, r *http.Request, u *user, on bool) {
	back := Prefix + "folders"
	param := r.PostFormValue("f")
	nick, folder, shared, err := parseSharedParam(param)
	if !shared || err != nil {
		h.flash(w, r, u, "There is no shared folder by that name.", back)
		return
	}
	if on {
		// Only a folder the user may read: the open checks it.
		_, _, err = h.openShared(u, nick, folder)
	} else {
		err = maildir.UnsubscribeShared(u.md.Root(), nick, folder)
	}
	if err != nil {
		if !errors.Is(err, maildir.ErrNoSharedFolder) {
			h.log.Error("webmail: shared folder subscription", "user", u.s.Login, "folder", param, "subscribe", on, "err", err)
			h.flash(w, r, u, "The subscription could not be changed now. Try again later.", back)
			return
		}
		h.flash(w, r, u, "There is no shared folder by that name.", back)
		return
	}
	h.log.Info("webmail: shared folder subscription", "user", u.s.Login, "folder", param, "subscribe", on)
	if on {
		h.flash(w, r, u, "Subscribed to "+displayName(param)+".", back)
	} else {
		h.flash(w, r, u, "Unsubscribed from "+displayName(param)+".", back)
	}
}

func (h *Handler) folderError(w http.ResponseWriter, r *http.Request, u *user, op, name string, err error) {
	back := Prefix + "folders"
	switch {
	case errors.Is(err, maildir.ErrFolderExists):
		h.flash(w, r, u, "A folder by that name exists already.", back)
	case errors.Is(err, maildir.ErrNoFolder):
		h.flash(w, r, u, "There is no folder by that name.", back)
	case errors.Is(err, maildir.ErrBadFolderName), errors.Is(err, maildir.ErrInboxProtected):
		h.flash(w, r, u, "That name cannot be a folder.", back)
	default:
		h.log.Error("webmail: folder", "user", u.s.Login, "op", op, "folder", name, "err", err)
		h.flash(w, r, u, "The folder could not be changed now. Try again later.", back)
	}
}

// moveSubscriptions follows a rename in the IMAP subscriptions, children
// included.
func (h *Handler) moveSubscriptions(u *user, from, to string) {
	subs, err := u.md.Subscriptions()
	if err != nil {
		return
	}
	old := "INBOX." + from
	for _, s := range subs {
		if s == old || strings.HasPrefix(s, old+".") {
			_ = u.md.Subscribe(s, false)
			_ = u.md.Subscribe("INBOX."+to+s[len(old):], true)
		}
	}
}

type passwordPage struct {
	Error     string
	Available bool
}

func (h *Handler) passwordForm(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	h.render(w, http.StatusOK, "password.html", h.pageFor(u, "Change password", &passwordPage{Available: h.opt.ChangePassword != nil}))
}

// changePassword checks the current password (as a login would, through
// the failed-login guard), then has the account's module change it. The
// account option wbnochangepass=1 (Courier's) forbids it. Other sessions
// of the account end.
func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	pp := &passwordPage{Available: h.opt.ChangePassword != nil}
	again := func(status int, msg string) {
		pp.Error = msg
		h.render(w, status, "password.html", h.pageFor(u, "Change password", pp))
	}
	if !pp.Available {
		again(http.StatusNotFound, "Passwords cannot be changed here.")
		return
	}
	old, pw, pw2 := r.PostFormValue("old"), r.PostFormValue("new"), r.PostFormValue("new2")
	switch {
	case pw != pw2:
		again(http.StatusBadRequest, "The new password and its repetition differ.")
		return
	case pw == "" || len(pw) > maxLoginPassword || !utf8.ValidString(pw) || strings.ContainsFunc(pw, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		again(http.StatusBadRequest, "The new password must not be empty, and must be text without control characters.")
		return
	case len(old) > maxLoginPassword:
		again(http.StatusForbidden, "The current password is wrong.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	acct, err := h.opt.Auth.AuthenticateFrom(ctx, auth.ServiceWebmail, websession.ClientAddr(r), u.s.Login, old)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrBadPassword), errors.Is(err, auth.ErrNoSuchUser):
		again(http.StatusForbidden, "The current password is wrong.")
		return
	case errors.Is(err, auth.ErrBlocked):
		again(http.StatusTooManyRequests, "Too many failed logins from your address. Try again later.")
		return
	default:
		again(http.StatusServiceUnavailable, "The password cannot be changed right now. Try again later.")
		return
	}
	if v := acct.Options["wbnochangepass"]; v != "" && v != "0" {
		again(http.StatusForbidden, "The password of this account cannot be changed here.")
		return
	}
	if err := h.opt.ChangePassword(ctx, acct, pw); err != nil {
		h.log.Error("webmail: change password", "user", acct.Name, "err", err)
		again(http.StatusServiceUnavailable, "The password could not be changed. Try again later.")
		return
	}
	h.sessions.EndLogin(u.s.Login, u.s)
	h.log.Info("webmail: password changed", "user", acct.Name)
	h.flash(w, r, u, "Password changed.", Prefix+"folders")
}
