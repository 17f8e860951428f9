package webmail

import (
	"errors"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"postern/mailbox/maildir"
	pmime "postern/mailbox/mime"
)

// maxShownText bounds the text of one part shown on the page; the rest is
// in the raw source.
const maxShownText = 2 << 20

type bodyPart struct {
	HTML      template.HTML // sanitized HTML mail
	Text      string        // plain text, escaped by the template
	Truncated bool
}

type attachment struct {
	Name, Type, Size string
	URL              string
}

type messagePage struct {
	Folder, FolderDisplay string
	UID                   uint32
	Subject               string
	From, To, Cc, ReplyTo []string
	Date                  string
	Keywords              []string // IMAP keywords an IMAP client set ($Junk, work)
	Bodies                []bodyPart
	Attachments           []attachment
	Flagged, Unread       bool
	HasHTML, AsText       bool
	TextURL, HTMLURL      string
	RawURL                string
	ReplyURL, ReplyAllURL string
	ForwardURL            string
	EditURL               string    // a draft's
	MDN                   *mdnOffer // a read receipt asked for and not yet answered
	KeywordPresets        []keywordPreset
	CanChange             bool   // not a read-only shared folder
	AddSenderURL          string // the address book's form, filled in with the sender
	Back                  string
	IsTrash               bool
	IsJunk                bool // Not junk instead of Junk
	CanSend               bool
}

// openMessage finds the message a request names in the user's folder and
// opens it: the folder from f, the message by its UID (a number, looked
// up in the folder's own listing, never a path). It answers the request
// itself when the message is not there.
func (h *Handler) openMessage(w http.ResponseWriter, r *http.Request, u *user, v url.Values) (*openedMessage, bool) {
	name, f, ok := h.openFolder(w, r, u, v.Get("f"))
	if !ok {
		return nil, false
	}
	uid, ok := parseUID(v.Get("uid"))
	if !ok {
		h.fail(w, r, u, http.StatusBadRequest, "There is no such message.")
		return nil, false
	}
	snap, err := f.Sync(false)
	if err != nil {
		h.log.Error("webmail: read folder", "user", u.s.Login, "folder", name, "err", err)
		h.fail(w, r, u, http.StatusServiceUnavailable, "This folder cannot be read now. Try again later.")
		return nil, false
	}
	m := findUID(snap, uid)
	if m == nil {
		h.fail(w, r, u, http.StatusNotFound, "There is no such message: it may have been moved or deleted.")
		return nil, false
	}
	file, err := f.Open(m.Key)
	if err != nil {
		status, msg := http.StatusServiceUnavailable, "This message cannot be read now. Try again later."
		if errors.Is(err, maildir.ErrNoMessage) {
			status, msg = http.StatusNotFound, "There is no such message: it may have been moved or deleted."
		} else {
			h.log.Error("webmail: open message", "user", u.s.Login, "folder", name, "uid", uid, "err", err)
		}
		h.fail(w, r, u, status, msg)
		return nil, false
	}
	st, err := file.Stat()
	if err == nil {
		var root *pmime.Part
		if root, err = pmime.Parse(file, st.Size()); err == nil {
			msg := *m
			return &openedMessage{folder: name, f: f, m: msg, file: file, size: st.Size(), root: root}, true
		}
	}
	file.Close()
	h.log.Error("webmail: read message", "user", u.s.Login, "folder", name, "uid", uid, "err", err)
	h.fail(w, r, u, http.StatusServiceUnavailable, "This message cannot be read now. Try again later.")
	return nil, false
}

type openedMessage struct {
	folder string
	f      *maildir.Folder
	m      maildir.Message
	file   *os.File
	size   int64
	root   *pmime.Part
}

func (h *Handler) message(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	v := r.URL.Query()
	om, ok := h.openMessage(w, r, u, v)
	if !ok {
		return
	}
	defer om.file.Close()
	asText := v.Get("view") == "text"
	mp := h.renderMessage(om, asText)
	mp.CanSend = h.opt.Send != nil
	mp.CanChange = u.fs == nil || u.fs.view.Writable
	mp.KeywordPresets = keywordPresets
	if rq, ok := mdnRequested(om); ok && mp.CanSend && (u.fs == nil || u.fs.view.Writable) && om.folder != folderDrafts && om.folder != folderSent {
		mp.MDN = rq.offer() // offered, never sent by itself (RFC 8098 2.1)
	}
	if unread(&om.m) && (u.fs == nil || u.fs.view.Writable) {
		// Opening a message reads it, as an IMAP FETCH of its body does
		// (not in a read-only shared folder, opened as IMAP's EXAMINE).
		if err := om.f.SetFlags(om.m.Key, withFlag(om.m.Flags, maildir.FlagSeen, true), om.m.Keywords); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
			h.log.Warn("webmail: mark seen", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		}
	}
	h.read.Add(1)
	back := r.URL.Query().Get("back")
	mp.Back = listURL(om.folder, listQuery{})
	if strings.HasPrefix(back, Prefix+"list?") && !strings.ContainsAny(back, "\\\r\n") {
		mp.Back = back // our own list URL, kept from the list's link
	}
	p := h.pageFor(u, mp.Subject, mp)
	p.Current = om.folder
	h.render(w, http.StatusOK, "message.html", p)
}

// renderMessage builds the page of a message: its header decoded, its
// text and HTML parts made safe, its other parts as attachments.
func (h *Handler) renderMessage(om *openedMessage, asText bool) *messagePage {
	env := om.root.Envelope
	if env == nil {
		env = &pmime.Envelope{}
	}
	mp := &messagePage{Folder: om.folder, FolderDisplay: displayName(om.folder), UID: om.m.UID,
		Subject: clean(pmime.DecodeHeaderValue(env.Subject)), Flagged: hasFlag(&om.m, maildir.FlagFlagged),
		Unread: unread(&om.m), AsText: asText, IsTrash: om.folder == folderTrash, IsJunk: om.folder == folderJunk}
	if strings.TrimSpace(mp.Subject) == "" {
		mp.Subject = "(no subject)"
	}
	addrs := func(list []pmime.Address) []string {
		var out []string
		for _, a := range list {
			if a.Group {
				continue
			}
			out = append(out, formatAddress(a))
		}
		return out
	}
	mp.From, mp.To, mp.Cc = addrs(env.From), addrs(env.To), addrs(env.Cc)
	mp.AddSenderURL = senderEntryURL(env.From)
	for _, k := range om.m.Keywords {
		mp.Keywords = append(mp.Keywords, clean(k))
	}
	if om.root.Header.Has("Reply-To") {
		mp.ReplyTo = addrs(env.ReplyTo)
	}
	if d, ok := pmime.ParseDate(env.Date); ok {
		mp.Date = d.Format(time.RFC1123Z)
	} else {
		mp.Date = clean(env.Date)
	}
	base := url.Values{"f": {om.folder}, "uid": {utoa(om.m.UID)}}
	with := func(page string, extra ...string) string {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return Prefix + page + "?" + v.Encode()
	}
	mp.RawURL = with("raw")
	mp.TextURL = with("msg", "view", "text")
	mp.HTMLURL = with("msg")
	mp.ReplyURL = with("compose", "mode", "reply")
	mp.ReplyAllURL = with("compose", "mode", "replyall")
	mp.ForwardURL = with("compose", "mode", "forward")
	if om.folder == folderDrafts {
		mp.EditURL = with("compose", "mode", "draft")
	}

	// An image an HTML part shows (cid:, RFC 2392) is shown there and
	// not listed again as an attachment.
	images := inlineImages(om.root)
	shownInline := map[string]bool{}
	resolve := func(cid string) (string, bool) {
		path, ok := images[cid]
		if !ok {
			return "", false
		}
		ps := pathString(path)
		shownInline[ps] = true
		return with("inline", "part", ps), true
	}
	var atts []leaf
	for _, l := range leaves(om.root, asText) {
		p := l.part
		if l.attachment {
			atts = append(atts, l)
			continue
		}
		text, truncated := h.partText(om, p, l.path)
		if p.Subtype == "html" {
			mp.HasHTML = true
			mp.Bodies = append(mp.Bodies, bodyPart{HTML: template.HTML(rewriteCIDs(h.html.Sanitize(text), resolve)), Truncated: truncated})
			continue
		}
		mp.Bodies = append(mp.Bodies, bodyPart{Text: text, Truncated: truncated})
	}
	for _, l := range atts {
		p := l.part
		if shownInline[pathString(l.path)] {
			continue
		}
		mp.Attachments = append(mp.Attachments, attachment{Name: partFilename(p, l.path), Type: clean(p.Type + "/" + p.Subtype),
			Size: humanSize(p.Size), URL: with("part", "part", pathString(l.path))})
	}
	return mp
}

// partText is a text part's content as UTF-8: transfer encoding undone,
// charset converted, format=flowed reflowed, at most maxShownText bytes.
func (h *Handler) partText(om *openedMessage, p *pmime.Part, path []int) (string, bool) {
	raw, err := pmime.Decoded(om.file, om.root, path)
	if err != nil {
		if errors.Is(err, pmime.ErrUnknownEncoding) {
			return "(This part is in an encoding that cannot be shown; see the source.)", false
		}
		return "(This part cannot be read now.)", false
	}
	truncated := len(raw) > maxShownText
	if truncated {
		raw = raw[:maxShownText]
	}
	text := clean(pmime.ToUTF8(param(p.Params, "charset"), raw))
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if p.Subtype == "plain" && strings.EqualFold(param(p.Params, "format"), "flowed") {
		text = reflow(text, strings.EqualFold(param(p.Params, "delsp"), "yes"))
	}
	return text, truncated
}

func param(ps []pmime.Param, name string) string {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// leaf is a part of a message as the page shows it: a text to show, or an
// attachment; path numbers it as IMAP does (mime.Part.Find).
type leaf struct {
	part       *pmime.Part
	path       []int
	attachment bool
}

// maxLeaves bounds the parts one page shows.
const maxLeaves = 500

// leaves walks the message: of a multipart/alternative only the best
// version is shown (HTML, or plain text when asked for text), other
// multiparts show every part; text/plain and text/html parts that are not
// marked as attachments are shown, everything else is an attachment. An
// attached message is one attachment, not opened up.
func leaves(root *pmime.Part, preferText bool) []leaf {
	var out []leaf
	var walk func(p *pmime.Part, path []int)
	walk = func(p *pmime.Part, path []int) {
		if len(out) >= maxLeaves {
			return
		}
		if len(p.Children) > 0 {
			if p.Subtype == "alternative" {
				best := bestAlternative(p.Children, preferText)
				walk(p.Children[best], append(append([]int(nil), path...), best+1))
				return
			}
			for i, c := range p.Children {
				walk(c, append(append([]int(nil), path...), i+1))
			}
			return
		}
		shown := p.Type == "text" && (p.Subtype == "plain" || p.Subtype == "html") &&
			!strings.EqualFold(p.Disposition, "attachment") && !p.Truncated
		out = append(out, leaf{part: p, path: path, attachment: !shown})
	}
	if len(root.Children) == 0 {
		walk(root, []int{1})
	} else {
		walk(root, nil)
	}
	return out
}

// bestAlternative picks the version of a multipart/alternative to show:
// the last one of the preferred type (RFC 2046 5.1.4 puts the richest
// last), else the last text one, else the last.
func bestAlternative(cs []*pmime.Part, preferText bool) int {
	want := "html"
	if preferText {
		want = "plain"
	}
	pick, anyText := -1, -1
	for i, c := range cs {
		if c.Type == "text" && c.Subtype == want {
			pick = i
		}
		if (c.Type == "text" && (c.Subtype == "plain" || c.Subtype == "html")) || len(c.Children) > 0 {
			anyText = i
		}
	}
	switch {
	case pick >= 0:
		return pick
	case anyText >= 0:
		return anyText
	}
	return len(cs) - 1
}

func pathString(path []int) string {
	s := make([]string, len(path))
	for i, n := range path {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

// parsePartPath reads "1.2.3".
func parsePartPath(s string) ([]int, bool) {
	if s == "" || len(s) > 200 {
		return nil, false
	}
	var out []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > pmime.MaxParts || f[0] == '0' {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// partFilename is an attachment's name, made safe to offer for saving:
// no directories, no control characters, never empty.
func partFilename(p *pmime.Part, nums []int) string {
	name := param(p.DispParams, "filename")
	if name == "" {
		name = param(p.Params, "name")
	}
	name = clean(pmime.DecodeHeaderValue(name))
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return -1
		case r == '/' || r == '\\' || r == '"':
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(path2base(name)), ". ") // no hidden files
	if name == "" || name == "." || name == ".." {
		name = "part-" + pathString(nums)
		switch {
		case p.Type == "message":
			name += ".eml"
		case p.Type == "text" && p.Subtype == "plain":
			name += ".txt"
		}
	}
	if len(name) > 200 {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			ext = name[i:]
		}
		if len(ext) > 20 {
			ext = ""
		}
		name = strings.ToValidUTF8(name[:200-len(ext)], "") + ext
	}
	return name
}

func path2base(s string) string {
	if i := strings.LastIndexAny(s, "/\\"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// safeTypes are the attachment types served with their own type (still as
// downloads); every other type, HTML, SVG and XML above all, goes out as
// application/octet-stream, which no browser runs.
var safeTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"application/pdf": true, "application/zip": true, "audio/mpeg": true, "audio/ogg": true,
	"video/mp4": true, "text/plain": true, "text/calendar": true, "message/rfc822": true,
}

// part serves one attachment as a download.
func (h *Handler) part(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	v := r.URL.Query()
	path, ok := parsePartPath(v.Get("part"))
	if !ok {
		h.fail(w, r, u, http.StatusBadRequest, "There is no such part.")
		return
	}
	om, ok := h.openMessage(w, r, u, v)
	if !ok {
		return
	}
	defer om.file.Close()
	p := om.root.Find(path)
	if p == nil || len(p.Children) > 0 {
		h.fail(w, r, u, http.StatusNotFound, "There is no such part.")
		return
	}
	data, err := pmime.Decoded(om.file, om.root, path)
	if err != nil {
		// An unknown encoding: the bytes as they are.
		data, err = readRange(om.file, p.BodyStart, p.End)
	}
	if err != nil {
		h.log.Error("webmail: read part", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		h.fail(w, r, u, http.StatusServiceUnavailable, "This part cannot be read now. Try again later.")
		return
	}
	ctype := "application/octet-stream"
	if t := p.Type + "/" + p.Subtype; safeTypes[t] {
		ctype = t
		if p.Type == "text" {
			ctype += "; charset=" + safeCharset(param(p.Params, "charset"))
		}
	}
	downloadHeaders(w, ctype, partFilename(p, path))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

// safeCharset keeps a charset name that is a plain token.
func safeCharset(cs string) string {
	if cs == "" || len(cs) > 40 {
		return "us-ascii"
	}
	for _, c := range cs {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return "us-ascii"
		}
	}
	return cs
}

// downloadHeaders marks a response as a file to save, in a sandbox even if
// a browser were to show it.
func downloadHeaders(w http.ResponseWriter, ctype, filename string) {
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	disp := mime.FormatMediaType("attachment", map[string]string{"filename": filename})
	if disp == "" {
		disp = "attachment"
	}
	hd.Set("Content-Disposition", disp)
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
}

func readRange(f *os.File, start, end int64) ([]byte, error) {
	b := make([]byte, end-start)
	_, err := f.ReadAt(b, start)
	if err == io.EOF {
		err = nil
	}
	return b, err
}

// raw serves the message's source as plain text.
func (h *Handler) raw(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	om, ok := h.openMessage(w, r, u, r.URL.Query())
	if !ok {
		return
	}
	defer om.file.Close()
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	hd.Set("Content-Disposition", "inline")
	hd.Set("Content-Length", strconv.FormatInt(om.size, 10))
	_, _ = io.Copy(w, io.NewSectionReader(om.file, 0, om.size))
}
