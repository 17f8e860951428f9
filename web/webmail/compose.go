package webmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"postern/mailbox/maildir"
	pmime "postern/mailbox/mime"
)

// Bounds of a composed message's fields.
const (
	maxAddressField = 64 << 10
	maxSubject      = 1000
	maxRecipients   = 1000
	maxAttachments  = 100
)

type composePage struct {
	To, Cc, Bcc, Subject, Body string
	// Format is "html" when the message is written in the rich text
	// editor, HTML its sanitized HTML (Body is then its text version,
	// what a browser without script shows); else "plain".
	Format, HTML          string
	InReplyTo, References string
	FwdFolder             string
	FwdUID                string
	FwdName               string
	DraftUID              string   // the draft this form edits, in Drafts
	DraftAttachments      []string // its attachments, kept
	Error                 string
	MaxSize               string
	From                  string
	Nicks                 []abookOption // the address book, offered to the address fields
}

func (h *Handler) maxSize() int64 {
	if h.opt.MaxMessageSize != nil {
		if n := h.opt.MaxMessageSize(); n > 0 {
			return n
		}
	}
	return 50 << 20
}

// compose shows the form: empty, or filled in to reply to, reply to all
// of, or forward a message.
func (h *Handler) compose(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	if h.opt.Send == nil {
		h.fail(w, r, u, http.StatusNotFound, "Sending mail is not available here.")
		return
	}
	v := r.URL.Query()
	cp := &composePage{MaxSize: humanSize(h.maxSize()), From: u.s.Get(keyAddress), Nicks: h.composeOptions(u), Format: "plain"}
	switch v.Get("format") {
	case "html", "plain":
		cp.Format = v.Get("format") // this message's choice
	case "":
		if h.userPrefs(u).ComposeHTML {
			cp.Format = "html"
		}
	default:
		h.fail(w, r, u, http.StatusBadRequest, "Unknown message format.")
		return
	}
	if nick := v.Get("abook"); nick != "" {
		// "Write to" from the address book: the entry's addresses.
		book, err := h.loadBook(u)
		if err != nil {
			status, msg := h.bookTrouble(u, err)
			h.fail(w, r, u, status, msg)
			return
		}
		e := book.find(nick)
		if e == nil {
			h.fail(w, r, u, http.StatusNotFound, "There is no such nickname in your address book.")
			return
		}
		to := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			to[i] = fieldBookAddress(a)
		}
		cp.To = strings.Join(to, ", ")
	}
	if mode := v.Get("mode"); mode != "" {
		if mode != "reply" && mode != "replyall" && mode != "forward" && mode != "draft" {
			h.fail(w, r, u, http.StatusBadRequest, "Unknown way to compose.")
			return
		}
		om, ok := h.openMessage(w, r, u, v)
		if !ok {
			return
		}
		defer om.file.Close()
		if mode == "draft" {
			if om.folder != folderDrafts {
				h.fail(w, r, u, http.StatusBadRequest, "Only a message in Drafts can be edited.")
				return
			}
			h.prefillDraft(cp, om)
		} else {
			h.prefill(cp, om, mode, u.s.Get(keyAddress))
		}
	}
	h.render(w, http.StatusOK, "compose.html", h.pageFor(u, "Compose", cp))
}

// prefill fills the form from the message answered or forwarded.
func (h *Handler) prefill(cp *composePage, om *openedMessage, mode, self string) {
	env := om.root.Envelope
	if env == nil {
		env = &pmime.Envelope{}
	}
	subject := clean(pmime.DecodeHeaderValue(env.Subject))
	list := func(as []pmime.Address, skip map[string]bool) []string {
		var out []string
		for _, a := range as {
			spec := strings.ToLower(addrSpec(a))
			if a.Group || a.Host == "" || skip[spec] {
				continue
			}
			skip[spec] = true
			out = append(out, (&mail.Address{Name: clean(a.Name), Address: clean(addrSpec(a))}).String())
		}
		return out
	}
	text := h.quotableText(om)
	from := ""
	if len(env.From) > 0 {
		from = formatAddress(env.From[0])
	}
	date := clean(env.Date)
	switch mode {
	case "reply", "replyall":
		if !strings.HasPrefix(strings.ToLower(subject), "re:") {
			subject = "Re: " + subject
		}
		skip := map[string]bool{strings.ToLower(self): true}
		to := env.ReplyTo
		if len(to) == 0 {
			to = env.From
		}
		if mode == "reply" {
			cp.To = strings.Join(list(to, map[string]bool{}), ", ")
		} else {
			tos := list(to, skip)
			tos = append(tos, list(env.To, skip)...)
			cp.To = strings.Join(tos, ", ")
			cp.Cc = strings.Join(list(env.Cc, skip), ", ")
		}
		if id := strings.TrimSpace(env.MessageID); validMessageID(id) {
			cp.InReplyTo = id
			refs := strings.Fields(om.root.Header.Get("References"))
			if len(refs) == 0 {
				if irt := strings.TrimSpace(env.InReplyTo); validMessageID(irt) {
					refs = []string{irt}
				}
			}
			refs = append(refs, id)
			if len(refs) > 20 {
				refs = append(refs[:1], refs[len(refs)-19:]...)
			}
			var keep []string
			for _, ref := range refs {
				if validMessageID(ref) {
					keep = append(keep, ref)
				}
			}
			cp.References = strings.Join(keep, " ")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "\n\nOn %s, %s wrote:\n", date, from)
		for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
			if strings.HasPrefix(line, ">") {
				b.WriteString(">" + line + "\n")
			} else {
				b.WriteString("> " + line + "\n")
			}
		}
		cp.Body = b.String()
		if cp.Format == "html" {
			cp.HTML = "<p><br></p><p>" + html.EscapeString(fmt.Sprintf("On %s, %s wrote:", date, from)) + "</p>\n" +
				`<blockquote type="cite">` + h.quotableHTML(om) + "</blockquote>"
		}
	case "forward":
		if !strings.HasPrefix(strings.ToLower(subject), "fwd:") {
			subject = "Fwd: " + subject
		}
		var b strings.Builder
		b.WriteString("\n\n---------- Forwarded message ----------\n")
		fmt.Fprintf(&b, "From: %s\nDate: %s\nSubject: %s\n", from, date, clean(pmime.DecodeHeaderValue(env.Subject)))
		if len(env.To) > 0 {
			fmt.Fprintf(&b, "To: %s\n", strings.Join(list(env.To, map[string]bool{}), ", "))
		}
		b.WriteString("\n" + text)
		cp.Body = b.String()
		cp.FwdFolder, cp.FwdUID = om.folder, utoa(om.m.UID)
		cp.FwdName = subjectFilename(subject)
		if cp.Format == "html" {
			var hb strings.Builder
			hb.WriteString("<p><br></p><p>---------- Forwarded message ----------<br>")
			fmt.Fprintf(&hb, "From: %s<br>Date: %s<br>Subject: %s", html.EscapeString(from), html.EscapeString(date),
				html.EscapeString(clean(pmime.DecodeHeaderValue(env.Subject))))
			if len(env.To) > 0 {
				fmt.Fprintf(&hb, "<br>To: %s", html.EscapeString(strings.Join(list(env.To, map[string]bool{}), ", ")))
			}
			hb.WriteString("</p>\n<blockquote type=\"cite\">" + h.quotableHTML(om) + "</blockquote>")
			cp.HTML = hb.String()
		}
	}
	if cp.HTML != "" {
		// The editor shows HTML; a browser without script shows the
		// same as text, and sends it as such.
		cp.Body = htmlToText(cp.HTML)
	}
	cp.Subject = subject
}

// prefillDraft fills the form from a saved draft: its addresses, subject,
// text and references; its attachments stay with it.
func (h *Handler) prefillDraft(cp *composePage, om *openedMessage) {
	hd := om.root.Header
	cp.To = clean(pmime.DecodeHeaderValue(hd.Get("To")))
	cp.Cc = clean(pmime.DecodeHeaderValue(hd.Get("Cc")))
	cp.Bcc = clean(pmime.DecodeHeaderValue(hd.Get("Bcc")))
	cp.Subject = clean(pmime.DecodeHeaderValue(hd.Get("Subject")))
	if irt := strings.TrimSpace(hd.Get("In-Reply-To")); validMessageID(irt) {
		cp.InReplyTo = irt
		cp.References = strings.Join(strings.Fields(hd.Get("References")), " ")
	}
	var texts []string
	// An HTML draft (multipart/alternative with text/html) reopens in
	// the editor: leaves prefers its HTML version.
	for _, l := range leaves(om.root, false) {
		if l.attachment {
			cp.DraftAttachments = append(cp.DraftAttachments, partFilename(l.part, l.path))
			continue
		}
		if len(texts) > 0 {
			continue
		}
		text, _ := h.partText(om, l.part, l.path)
		switch l.part.Subtype {
		case "plain":
			texts = append(texts, text)
		case "html":
			cp.Format, cp.HTML = "html", h.composeHTML.Sanitize(text)
			texts = append(texts, htmlToText(cp.HTML))
		}
	}
	cp.Body = strings.Join(texts, "")
	cp.DraftUID = utoa(om.m.UID)
}

// draftAttachments reads the attachments of the draft being edited, to
// carry them into the new version or the message sent.
func (h *Handler) draftAttachments(u *user, uidParam string) ([]outAttachment, *maildir.Folder, string, error) {
	gone := errors.New("The draft is no longer in Drafts.")
	uid, ok := parseUID(uidParam)
	if !ok {
		return nil, nil, "", gone
	}
	f, err := u.md.Folder(folderDrafts)
	if err != nil {
		return nil, nil, "", gone
	}
	snap, err := f.Sync(false)
	if err != nil {
		return nil, nil, "", gone
	}
	m := findUID(snap, uid)
	if m == nil {
		return nil, nil, "", gone
	}
	file, err := f.Open(m.Key)
	if err != nil {
		return nil, nil, "", gone
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, nil, "", gone
	}
	root, err := pmime.Parse(file, st.Size())
	if err != nil {
		return nil, nil, "", gone
	}
	var out []outAttachment
	for _, l := range leaves(root, true) {
		if !l.attachment {
			continue
		}
		data, err := pmime.Decoded(file, root, l.path)
		if err != nil {
			return nil, nil, "", gone
		}
		ctype := l.part.Type + "/" + l.part.Subtype
		out = append(out, outAttachment{name: partFilename(l.part, l.path), ctype: uploadType(ctype), data: data})
	}
	return out, f, m.Key, nil
}

// quotableText is the message's text for a reply: its plain text parts,
// or its HTML parts reduced to text.
func (h *Handler) quotableText(om *openedMessage) string {
	var parts []string
	for _, l := range leaves(om.root, true) {
		if l.attachment {
			continue
		}
		text, _ := h.partText(om, l.part, l.path)
		if l.part.Subtype == "html" {
			text = html.UnescapeString(h.strip.Sanitize(text))
		}
		parts = append(parts, strings.TrimRight(text, "\n"))
	}
	s := strings.Join(parts, "\n\n")
	if len(s) > 1<<20 {
		s = strings.ToValidUTF8(s[:1<<20], "")
	}
	return s + "\n"
}

// quotableHTML is the message's content for an HTML reply or forward:
// its HTML parts sanitized as composed HTML is (no images, no styles),
// its text parts escaped with their lines kept.
func (h *Handler) quotableHTML(om *openedMessage) string {
	var parts []string
	size := 0
	for _, l := range leaves(om.root, false) {
		if l.attachment {
			continue
		}
		text, _ := h.partText(om, l.part, l.path)
		if size += len(text); size > 1<<20 {
			break
		}
		if l.part.Subtype == "html" {
			parts = append(parts, h.composeHTML.Sanitize(text))
		} else {
			parts = append(parts, textToHTML(text))
		}
	}
	return strings.Join(parts, "\n")
}

func validMessageID(id string) bool {
	return len(id) > 2 && len(id) <= 250 && id[0] == '<' && id[len(id)-1] == '>' &&
		!strings.ContainsAny(id[1:len(id)-1], "<> \t\r\n\x00")
}

func subjectFilename(s string) string {
	name := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
			return '_'
		}
		return r
	}, s)
	if len(name) > 100 {
		name = strings.ToValidUTF8(name[:100], "")
	}
	if strings.TrimSpace(name) == "" {
		name = "message"
	}
	return name + ".eml"
}

// send builds the message from the form, hands it to Send and keeps a
// copy in Sent.
func (h *Handler) send(w http.ResponseWriter, r *http.Request) {
	limit := h.maxSize()
	// The form carries the attachments in base64-free binary, plus the
	// text fields: a little room beyond the message limit.
	r.Body = http.MaxBytesReader(w, r.Body, limit+1<<20)
	if err := r.ParseMultipartForm(8 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			if s := h.sessions.Session(r); s != nil {
				h.fail(w, r, &user{s: s}, http.StatusRequestEntityTooLarge, fmt.Sprintf("The message is too big: at most %s with its attachments.", humanSize(limit)))
				return
			}
		}
		h.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if r.MultipartForm != nil {
		defer r.MultipartForm.RemoveAll()
	}
	u := h.session(w, r)
	if u == nil {
		return
	}
	if h.opt.Send == nil {
		h.fail(w, r, u, http.StatusNotFound, "Sending mail is not available here.")
		return
	}
	cp := &composePage{To: r.PostFormValue("to"), Cc: r.PostFormValue("cc"), Bcc: r.PostFormValue("bcc"),
		Subject: r.PostFormValue("subject"), Body: r.PostFormValue("body"),
		InReplyTo: r.PostFormValue("in_reply_to"), References: r.PostFormValue("references"),
		FwdFolder: r.PostFormValue("fwd_f"), FwdUID: r.PostFormValue("fwd_uid"), FwdName: r.PostFormValue("fwd_name"),
		DraftUID: r.PostFormValue("draft_uid"), MaxSize: humanSize(limit), From: u.s.Get(keyAddress), Format: "plain"}
	// The editor's script enables the format field and fills html; a
	// browser without script sends neither, and its text is sent as it is.
	if r.PostFormValue("format") == "html" && strings.TrimSpace(r.PostFormValue("html")) != "" {
		if !utf8.ValidString(r.PostFormValue("html")) {
			cp.Format = "html"
			cp.Error = "The text is not valid UTF-8."
			cp.Nicks = h.composeOptions(u)
			h.render(w, http.StatusBadRequest, "compose.html", h.pageFor(u, "Compose", cp))
			return
		}
		cp.Format, cp.HTML = "html", h.composeHTML.Sanitize(r.PostFormValue("html"))
		cp.Body = htmlToText(cp.HTML)
	}
	saveDraft := r.PostFormValue("save") != ""
	again := func(status int, msg string) {
		cp.Error = msg
		cp.Nicks = h.composeOptions(u)
		h.render(w, status, "compose.html", h.pageFor(u, "Compose", cp))
	}
	// Nicknames in the address fields become their addresses: in the
	// message sent, and in a draft saved (as sqwebmail writes its drafts).
	book, err := h.loadBook(u)
	if err != nil {
		h.log.Warn("webmail: address book for sending", "user", u.s.Login, "err", err)
		book = nil
	}
	d, err := draftFrom(cp, u.s.Get(keyAddress), !saveDraft, book)
	if err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	var oldDraft *maildir.Folder
	var oldDraftKey string
	if cp.DraftUID != "" {
		kept, f, key, err := h.draftAttachments(u, cp.DraftUID)
		if err != nil {
			cp.DraftUID = ""
			again(http.StatusBadRequest, err.Error())
			return
		}
		d.attachments = append(d.attachments, kept...)
		oldDraft, oldDraftKey = f, key
	}
	if cp.FwdUID != "" {
		orig, err := h.forwarded(u, cp)
		if err != nil {
			again(http.StatusBadRequest, err.Error())
			return
		}
		d.attachments = append(d.attachments, orig)
	}
	if r.MultipartForm != nil {
		files := r.MultipartForm.File["attach"]
		if len(files) > maxAttachments {
			again(http.StatusBadRequest, fmt.Sprintf("At most %d attachments.", maxAttachments))
			return
		}
		var total int64
		for _, fh := range files {
			if fh.Size == 0 && fh.Filename == "" {
				continue // the empty file field
			}
			total += fh.Size
			if total > limit {
				again(http.StatusRequestEntityTooLarge, fmt.Sprintf("The message is too big: at most %s with its attachments.", humanSize(limit)))
				return
			}
			file, err := fh.Open()
			if err != nil {
				again(http.StatusBadRequest, "An attachment could not be read.")
				return
			}
			data, err := io.ReadAll(io.LimitReader(file, limit+1))
			file.Close()
			if err != nil {
				again(http.StatusBadRequest, "An attachment could not be read.")
				return
			}
			d.attachments = append(d.attachments, outAttachment{name: uploadName(fh.Filename), ctype: uploadType(fh.Header.Get("Content-Type")), data: data})
		}
	}
	msg := d.build(time.Now())
	if int64(len(msg)) > limit {
		again(http.StatusRequestEntityTooLarge, fmt.Sprintf("The message is too big: at most %s with its attachments (attachments grow by a third when sent).", humanSize(limit)))
		return
	}
	if saveDraft {
		d.keepBcc = true
		msg := d.build(time.Now())
		if int64(len(msg)) > limit {
			again(http.StatusRequestEntityTooLarge, fmt.Sprintf("The message is too big: at most %s with its attachments.", humanSize(limit)))
			return
		}
		drafts, err := h.specialFolder(u, folderDrafts)
		if err == nil {
			_, err = drafts.Deliver(bytes.NewReader(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))),
				maildir.DeliverOptions{Flags: string(maildir.FlagDraft) + string(maildir.FlagSeen)})
		}
		if err != nil {
			h.log.Error("webmail: save draft", "user", u.s.Login, "err", err)
			msg := "The draft could not be saved now. Try again later."
			if errors.Is(err, maildir.ErrOverQuota) {
				msg = "Your mailbox is full: the draft was not saved."
			}
			again(http.StatusServiceUnavailable, msg)
			return
		}
		if oldDraft != nil {
			_ = oldDraft.Remove(oldDraftKey)
		}
		h.log.Info("webmail: draft saved", "user", u.s.Login, "size", len(msg))
		h.flash(w, r, u, "Draft saved.", listURL(folderDrafts, listQuery{}))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	err = h.opt.Send(ctx, Outgoing{Login: u.s.Login, From: d.from.Address, Rcpts: d.recipients(), Msg: msg})
	if err != nil {
		h.sendFailures.Add(1)
		var ref *Refused
		if errors.As(err, &ref) {
			h.log.Info("webmail: message refused", "user", u.s.Login, "reason", ref.Reason)
			again(http.StatusUnprocessableEntity, "The message was not sent: "+ref.Reason)
			return
		}
		h.log.Error("webmail: send", "user", u.s.Login, "err", err)
		again(http.StatusServiceUnavailable, "The message could not be sent now. Try again later.")
		return
	}
	h.sent.Add(1)
	h.log.Info("webmail: message sent", "user", u.s.Login, "recipients", len(d.recipients()), "size", len(msg))
	notice := "Message sent."
	if err := h.keepSent(u, msg); err != nil {
		h.log.Error("webmail: copy to Sent", "user", u.s.Login, "err", err)
		notice = "Message sent, but no copy could be kept in Sent."
		if errors.Is(err, maildir.ErrOverQuota) {
			notice = "Message sent, but your mailbox is full: no copy was kept in Sent."
		}
	}
	if cp.InReplyTo != "" {
		h.markAnswered(u, cp.InReplyTo)
	}
	if oldDraft != nil {
		if err := oldDraft.Remove(oldDraftKey); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			h.log.Warn("webmail: remove sent draft", "user", u.s.Login, "err", err)
		}
	}
	h.flash(w, r, u, notice, listURL(maildir.Inbox, listQuery{}))
}

// keepSent stores the message, read, in Sent (made when missing), with the
// Maildir's LF line ends.
func (h *Handler) keepSent(u *user, msg []byte) error {
	sent, err := h.specialFolder(u, folderSent)
	if err != nil {
		return err
	}
	_, err = sent.Deliver(bytes.NewReader(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))), maildir.DeliverOptions{Flags: string(maildir.FlagSeen)})
	return err
}

// markAnswered sets \Answered on the message in INBOX that was replied
// to, found by its Message-ID among the newest messages.
func (h *Handler) markAnswered(u *user, id string) {
	f, err := u.md.Folder(maildir.Inbox)
	if err != nil {
		return
	}
	snap, err := f.Sync(false)
	if err != nil {
		return
	}
	for i := len(snap.Messages) - 1; i >= 0 && i >= len(snap.Messages)-2000; i-- {
		m := &snap.Messages[i]
		buf, err := f.ReadMessage(m.Key, nil, summaryHeaderLimit)
		if err != nil {
			continue
		}
		hd, err := pmime.ParseHeader(bytes.NewReader(buf), 0, int64(headerEnd(buf)))
		if err != nil || strings.TrimSpace(hd.Get("Message-ID")) != id {
			continue
		}
		_ = f.SetFlags(m.Key, withFlag(m.Flags, maildir.FlagReplied, true), m.Keywords)
		return
	}
}

// forwarded reads the message being forwarded, to attach it whole.
func (h *Handler) forwarded(u *user, cp *composePage) (outAttachment, error) {
	bad := errors.New("The message to forward is no longer there.")
	uid, ok := parseUID(cp.FwdUID)
	if !ok {
		return outAttachment{}, bad
	}
	var f *maildir.Folder
	if nick, folder, shared, err := parseSharedParam(cp.FwdFolder); shared {
		if err == nil {
			f, _, err = h.openShared(u, nick, folder)
		}
		if err != nil {
			return outAttachment{}, bad
		}
	} else {
		name, err := folderParam(cp.FwdFolder)
		if err != nil {
			return outAttachment{}, bad
		}
		if f, err = u.md.Folder(name); err != nil {
			return outAttachment{}, bad
		}
	}
	snap, err := f.Sync(false)
	if err != nil {
		return outAttachment{}, bad
	}
	m := findUID(snap, uid)
	if m == nil {
		return outAttachment{}, bad
	}
	data, err := f.ReadMessage(m.Key, nil, int(h.maxSize())+1)
	if err != nil {
		return outAttachment{}, bad
	}
	return outAttachment{name: subjectFilename(strings.TrimSuffix(cp.FwdName, ".eml")), ctype: "message/rfc822", data: data}, nil
}

// uploadName is an uploaded file's name without any directory a browser
// may have sent.
func uploadName(s string) string {
	s = clean(path2base(s))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	if strings.TrimSpace(s) == "" {
		return "attachment"
	}
	return s
}

// uploadType keeps the browser's type of an upload when it is a plain
// type/subtype, else application/octet-stream.
func uploadType(s string) string {
	mt, _, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") || len(mt) > 100 || strings.HasPrefix(mt, "multipart/") {
		return "application/octet-stream"
	}
	return mt
}

// draft is a message being put together.
type draft struct {
	from        *mail.Address
	to, cc, bcc []*mail.Address
	subject     string
	body        string
	html        string // sanitized; sent beside body as multipart/alternative
	inReplyTo   string
	references  string
	attachments []outAttachment
	keepBcc     bool // a draft keeps its Bcc field; a message sent never has one
}

type outAttachment struct {
	name, ctype string
	data        []byte
}

// draftFrom checks the form; its errors are for the user. The address
// book's nicknames stand for their addresses (book may be nil).
func draftFrom(cp *composePage, from string, needRecipient bool, book *addressBook) (*draft, error) {
	d := &draft{from: &mail.Address{Address: from}}
	var err error
	if d.to, err = parseRecipients("To", cp.To, book); err != nil {
		return nil, err
	}
	if d.cc, err = parseRecipients("Cc", cp.Cc, book); err != nil {
		return nil, err
	}
	if d.bcc, err = parseRecipients("Bcc", cp.Bcc, book); err != nil {
		return nil, err
	}
	n := len(d.to) + len(d.cc) + len(d.bcc)
	if n == 0 && needRecipient {
		return nil, errors.New("Give at least one recipient.")
	}
	if n > maxRecipients {
		return nil, fmt.Errorf("At most %d recipients.", maxRecipients)
	}
	if !utf8.ValidString(cp.Subject) || len(cp.Subject) > maxSubject {
		return nil, errors.New("The subject is too long or not text.")
	}
	d.subject = strings.Join(strings.Fields(cp.Subject), " ") // no line breaks in a header
	if !utf8.ValidString(cp.Body) {
		return nil, errors.New("The text is not valid UTF-8.")
	}
	d.body = cp.Body
	if cp.Format == "html" {
		d.html = cp.HTML
	}
	if validMessageID(cp.InReplyTo) {
		d.inReplyTo = cp.InReplyTo
		var refs []string
		for _, ref := range strings.Fields(cp.References) {
			if validMessageID(ref) && len(refs) < 30 {
				refs = append(refs, ref)
			}
		}
		d.references = strings.Join(refs, " ")
	}
	return d, nil
}

// parseAddresses reads a comma-separated address list as a person types
// it: "Name <a@b>", "a@b", quoted names, RFC 2047 not needed.
func parseAddresses(field, s string) ([]*mail.Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if len(s) > maxAddressField || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
		return nil, fmt.Errorf("%s: the list is too long or holds a line break.", field)
	}
	s = strings.TrimRight(s, ", ")
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not an address list (write name@example.org, separated by commas).", field, s)
	}
	for _, a := range list {
		local, domain, ok := strings.Cut(a.Address, "@")
		if !ok || local == "" || domain == "" || strings.ContainsAny(a.Address, " <>\t") {
			return nil, fmt.Errorf("%s: %q is not a complete address (name@example.org).", field, a.Address)
		}
	}
	return list, nil
}

func (d *draft) recipients() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range [][]*mail.Address{d.to, d.cc, d.bcc} {
		for _, a := range l {
			if k := strings.ToLower(a.Address); !seen[k] {
				seen[k] = true
				out = append(out, a.Address)
			}
		}
	}
	return out
}

// build writes the message (CRLF line ends): the header with From, To,
// Cc (never Bcc), Subject encoded when it is not ASCII, Date, Message-ID
// and the reply's references; a text/plain UTF-8 body, quoted-printable
// when it holds other than short ASCII lines; the attachments in base64
// under multipart/mixed.
func (d *draft) build(now time.Time) []byte {
	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(foldHeader(name+": "+value) + "\r\n")
	}
	header("From", d.from.String())
	if len(d.to) > 0 {
		header("To", joinAddresses(d.to))
	}
	if len(d.cc) > 0 {
		header("Cc", joinAddresses(d.cc))
	}
	if d.keepBcc && len(d.bcc) > 0 {
		header("Bcc", joinAddresses(d.bcc))
	}
	header("Subject", encodeHeaderText(d.subject))
	header("Date", now.Format(time.RFC1123Z))
	domain := "localhost"
	if _, dom, ok := strings.Cut(d.from.Address, "@"); ok && dom != "" {
		domain = dom
	}
	header("Message-ID", "<"+randomHex(12)+"@"+domain+">")
	if d.inReplyTo != "" {
		header("In-Reply-To", d.inReplyTo)
		if d.references != "" {
			header("References", d.references)
		}
	}
	header("MIME-Version", "1.0")
	header("User-Agent", "Postern webmail")
	if len(d.attachments) == 0 {
		d.writeBody(&b, header)
		return b.Bytes()
	}
	boundary := "=_postern_" + randomHex(16)
	header("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	b.WriteString("\r\nThis is a message in MIME format.\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	d.writeBody(&b, header)
	for _, a := range d.attachments {
		b.WriteString("\r\n--" + boundary + "\r\n")
		if a.ctype == "message/rfc822" {
			// RFC 2046 5.2.1: no base64 for message/rfc822; 8bit or
			// binary says what the attached message holds.
			header("Content-Type", "message/rfc822")
			header("Content-Disposition", attachmentDisposition(a.name))
			header("Content-Transfer-Encoding", "8bit")
			b.WriteString("\r\n")
			b.Write(toCRLF(a.data))
			continue
		}
		header("Content-Type", a.ctype)
		header("Content-Disposition", attachmentDisposition(a.name))
		header("Content-Transfer-Encoding", "base64")
		b.WriteString("\r\n")
		enc := base64.StdEncoding.EncodeToString(a.data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		if enc != "" {
			b.WriteString(enc + "\r\n")
		}
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// writeBody writes the body entity, its header fields first: the text
// alone (text/plain), or with its HTML version as a
// multipart/alternative, the text first and the HTML last, the one a
// reader prefers (RFC 2046 5.1.4).
func (d *draft) writeBody(b *bytes.Buffer, header func(name, value string)) {
	text, cte := encodeText(d.body)
	if d.html == "" {
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", cte)
		b.WriteString("\r\n" + text)
		return
	}
	boundary := "=_postern_alt_" + randomHex(16)
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary}))
	b.WriteString("\r\n--" + boundary + "\r\n")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", cte)
	b.WriteString("\r\n" + text)
	doc, hcte := encodeText("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n" + d.html + "\n</body></html>\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	header("Content-Type", "text/html; charset=utf-8")
	header("Content-Transfer-Encoding", hcte)
	b.WriteString("\r\n" + doc)
	b.WriteString("\r\n--" + boundary + "--\r\n")
}

func attachmentDisposition(name string) string {
	if d := mime.FormatMediaType("attachment", map[string]string{"filename": name}); d != "" {
		return d
	}
	return "attachment"
}

func joinAddresses(as []*mail.Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// encodeHeaderText is RFC 2047 Q or B encoding when s is not ASCII.
func encodeHeaderText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] < 0x20 {
			return mime.QEncoding.Encode("utf-8", s)
		}
	}
	return s
}

// foldHeader breaks a header line at spaces so that no line runs past 78
// characters where a space allows (RFC 5322 2.2.3).
func foldHeader(line string) string {
	if len(line) <= 78 {
		return line
	}
	var b strings.Builder
	for len(line) > 78 {
		i := strings.LastIndexByte(line[:78], ' ')
		if i <= 0 {
			i = strings.IndexByte(line[78:], ' ')
			if i < 0 {
				break
			}
			i += 78
		}
		b.WriteString(line[:i] + "\r\n")
		line = line[i:] // the space starts the continuation line
		if strings.TrimSpace(line) == "" {
			line = ""
			break
		}
	}
	b.WriteString(line)
	return strings.TrimSuffix(b.String(), "\r\n")
}

// encodeText makes the body CRLF and picks its transfer encoding: 7bit for
// ASCII with lines of at most 998 characters, else quoted-printable.
func encodeText(body string) (string, string) {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	body = strings.ReplaceAll(body, "\r", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	plain := true
	for line := range strings.SplitSeq(body, "\n") {
		if len(line) > 998 {
			plain = false
			break
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c >= 0x80 || (c < 0x20 && c != '\t') {
				plain = false
				break
			}
		}
	}
	crlf := strings.ReplaceAll(body, "\n", "\r\n")
	if plain {
		return crlf, "7bit"
	}
	var b bytes.Buffer
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(crlf))
	_ = qp.Close()
	out := b.String()
	if !strings.HasSuffix(out, "\r\n") {
		out += "\r\n"
	}
	return out, "quoted-printable"
}

func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
