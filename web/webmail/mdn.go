package webmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"postern/mailbox/maildir"
	pmime "postern/mailbox/mime"
)

// Read receipts: Message Disposition Notifications (RFC 8098). A message
// with a Disposition-Notification-To field asks for one; the page offers
// to send it or not, and never sends one by itself (RFC 8098 2.1, 8.2).
// Either answer sets the keyword $MDNSent, which IMAP clients set and
// read for the same purpose (RFC 3503), so that no client offers it again.

// keywordMDNSent marks a message whose read receipt was sent or declined.
const keywordMDNSent = "$MDNSent"

// Bounds of a receipt request.
const (
	maxMDNField   = 2000 // bytes of the Disposition-Notification-To field
	maxMDNAddrs   = 10   // addresses it names
	maxMDNHeaders = 64 << 10
)

// mdnOffer is what the message page shows of a receipt request.
type mdnOffer struct {
	To []string // where the receipt goes
	// Warning says why to be careful (RFC 8098 2.1): the receipt goes
	// elsewhere than the message's Return-Path. Sending then needs the
	// user's explicit confirmation.
	Warning string
}

// mdnRequest is a message's request for a receipt, as sending one needs.
type mdnRequest struct {
	to       []*mail.Address
	mismatch string // the Warning, "" when the addresses agree
}

// mdnRequested reads a message's request for a receipt. None when: no
// Disposition-Notification-To field or more than one (RFC 8098 2.1
// allows one), addresses that cannot be read, the message already has
// $MDNSent, or it is itself a receipt (an MDN is never answered with
// one, RFC 8098 2.1).
func mdnRequested(om *openedMessage) (*mdnRequest, bool) {
	hd := om.root.Header
	dnt := hd.Values("Disposition-Notification-To")
	if len(dnt) != 1 || len(dnt[0]) > maxMDNField {
		return nil, false
	}
	for _, k := range om.m.Keywords {
		if strings.EqualFold(k, keywordMDNSent) {
			return nil, false
		}
	}
	if om.root.Type == "multipart" && om.root.Subtype == "report" &&
		strings.EqualFold(param(om.root.Params, "report-type"), "disposition-notification") {
		return nil, false
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}}
	to, err := p.ParseList(dnt[0])
	if err != nil || len(to) == 0 || len(to) > maxMDNAddrs {
		return nil, false
	}
	for _, a := range to {
		if strings.ContainsAny(a.Address, "\r\n\x00,<> ") {
			return nil, false
		}
	}
	return &mdnRequest{to: to, mismatch: mdnMismatch(hd.Values("Return-Path"), to)}, true
}

// mdnMismatch says why a receipt to "to" needs the user's confirmation
// (RFC 8098 2.1): the Return-Path is missing, given more than once, the
// null path, or not the address of every recipient of the receipt.
// Addresses are compared as addr-specs, the local part case-sensitively
// (after the parser's unquoting) and the domain not.
func mdnMismatch(returnPath []string, to []*mail.Address) string {
	if len(returnPath) != 1 {
		return "The message has no single return path to compare with: the request may not come from its sender."
	}
	rp, err := mail.ParseAddress(strings.TrimSpace(returnPath[0]))
	if err != nil {
		return "The message's return path cannot be read: the request may not come from its sender."
	}
	for _, a := range to {
		if !sameAddrSpec(rp.Address, a.Address) {
			return fmt.Sprintf("The receipt would go to %s, not to the message's return path %s: the request may not come from its sender.", a.Address, rp.Address)
		}
	}
	return ""
}

func sameAddrSpec(a, b string) bool {
	ai, bi := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if ai < 0 || bi < 0 {
		return a == b
	}
	return a[:ai] == b[:bi] && strings.EqualFold(a[ai+1:], b[bi+1:])
}

func (rq *mdnRequest) offer() *mdnOffer {
	o := &mdnOffer{Warning: rq.mismatch}
	for _, a := range rq.to {
		o.To = append(o.To, clean(a.Address))
	}
	return o
}

func (rq *mdnRequest) recipients() []string {
	out := make([]string, len(rq.to))
	for i, a := range rq.to {
		out[i] = a.Address
	}
	return out
}

// mdnMessage is what a receipt reports on.
type mdnMessage struct {
	subject       string // decoded
	date          string
	messageID     string // the original's Message-ID, "" when not one
	origRecipient string // its Original-Recipient field, "" when none or unusable
	header        []byte // the original's header, for text/rfc822-headers
}

// buildMDN writes a receipt (RFC 8098 3): multipart/report with
// report-type=disposition-notification (RFC 6522) of a human-readable
// part, the message/disposition-notification fields, and the original
// header. The disposition is "displayed", sent by the user's own choice
// (manual-action/MDN-sent-manually, 3.2.6). It has no
// Disposition-Notification-To of its own (2.1).
func buildMDN(now time.Time, from *mail.Address, to []*mail.Address, orig mdnMessage, uaHost string) []byte {
	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(foldHeader(name+": "+value) + "\r\n")
	}
	header("From", from.String())
	header("To", joinAddresses(to))
	header("Subject", encodeHeaderText("Read: "+oneLine(orig.subject)))
	header("Date", now.Format(time.RFC1123Z))
	domain := "localhost"
	if _, dom, ok := strings.Cut(from.Address, "@"); ok && dom != "" {
		domain = dom
	}
	header("Message-ID", "<"+randomHex(12)+"@"+domain+">")
	if orig.messageID != "" {
		header("In-Reply-To", orig.messageID)
		header("References", orig.messageID)
	}
	header("MIME-Version", "1.0")
	header("User-Agent", "Postern webmail")
	boundary := "=_postern_mdn_" + randomHex(16)
	header("Content-Type", mime.FormatMediaType("multipart/report",
		map[string]string{"report-type": "disposition-notification", "boundary": boundary}))
	b.WriteString("\r\nThis is a message in MIME format.\r\n")

	b.WriteString("\r\n--" + boundary + "\r\n")
	human := fmt.Sprintf("The message sent on %s to %s with subject \"%s\" has been displayed.\n"+
		"This is no guarantee that the message has been read or understood.\n",
		oneLine(orig.date), from.Address, oneLine(orig.subject))
	text, cte := encodeText(human)
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", cte)
	b.WriteString("\r\n" + text)

	b.WriteString("\r\n--" + boundary + "\r\n")
	header("Content-Type", "message/disposition-notification")
	b.WriteString("\r\n")
	header("Reporting-UA", uaHost+"; Postern webmail")
	if orig.origRecipient != "" {
		header("Original-Recipient", orig.origRecipient)
	}
	header("Final-Recipient", "rfc822;"+from.Address)
	if orig.messageID != "" {
		header("Original-Message-ID", orig.messageID)
	}
	header("Disposition", "manual-action/MDN-sent-manually; displayed")

	b.WriteString("\r\n--" + boundary + "\r\n")
	hdr := toCRLF(orig.header)
	cte = "7bit"
	for _, c := range hdr {
		if c >= 0x80 {
			cte = "8bit"
			break
		}
	}
	header("Content-Type", "text/rfc822-headers")
	header("Content-Transfer-Encoding", cte)
	b.WriteString("\r\n")
	b.Write(hdr)
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// oneLine joins a text's lines, for a header or a sentence.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)), " ")
}

// mdnOf gathers what a receipt for om reports.
func mdnOf(om *openedMessage) (mdnMessage, error) {
	env := om.root.Envelope
	if env == nil {
		env = &pmime.Envelope{}
	}
	end := om.root.BodyStart
	if end-om.root.HeaderStart > maxMDNHeaders {
		end = om.root.HeaderStart + maxMDNHeaders
	}
	hdr, err := readRange(om.file, om.root.HeaderStart, end)
	if err != nil {
		return mdnMessage{}, err
	}
	hdr = bytes.TrimRight(hdr, "\r\n")
	if i := bytes.LastIndexByte(hdr, '\n'); end < om.root.BodyStart && i >= 0 {
		hdr = hdr[:i] // cut at a whole line
	}
	m := mdnMessage{subject: clean(pmime.DecodeHeaderValue(env.Subject)), date: clean(env.Date), header: append(hdr, '\n')}
	if id := strings.TrimSpace(om.root.Header.Get("Message-ID")); validMessageID(id) {
		m.messageID = id
	}
	// RFC 8098 3.2.3: copied from the message's Original-Recipient field.
	if or := strings.TrimSpace(om.root.Header.Get("Original-Recipient")); len(or) < 1000 && !strings.ContainsAny(or, "\r\n\x00") &&
		len(or) > 7 && strings.EqualFold(or[:7], "rfc822;") {
		m.origRecipient = clean(or)
	}
	return m, nil
}

// mdn answers a receipt request: op=send sends it, op=ignore declines;
// both set $MDNSent. A request that needs confirmation (mdnMismatch) is
// sent only with confirm=yes.
func (h *Handler) mdn(w http.ResponseWriter, r *http.Request) {
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
	if h.opt.Send == nil {
		h.fail(w, r, u, http.StatusNotFound, "Sending mail is not available here.")
		return
	}
	if u.fs != nil && !u.fs.view.Writable {
		h.flash(w, r, u, "This shared folder is read-only: its owner lets you read it, not change it.", back)
		return
	}
	rq, ok := mdnRequested(om)
	if !ok || om.folder == folderDrafts || om.folder == folderSent {
		h.flash(w, r, u, "This message asks for no read receipt, or it was answered already.", back)
		return
	}
	markSent := func() error {
		kws := append(append([]string(nil), om.m.Keywords...), keywordMDNSent)
		return om.f.SetFlags(om.m.Key, om.m.Flags, kws)
	}
	switch r.PostFormValue("op") {
	case "ignore":
		if err := markSent(); err != nil {
			h.log.Error("webmail: mark receipt declined", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
			h.flash(w, r, u, "This cannot be done now. Try again later.", back)
			return
		}
		h.log.Info("webmail: read receipt declined", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID)
		h.flash(w, r, u, "No read receipt was sent, and none will be offered again.", back)
		return
	case "send":
	default:
		h.fail(w, r, u, http.StatusBadRequest, "Unknown action.")
		return
	}
	if rq.mismatch != "" && r.PostFormValue("confirm") != "yes" {
		h.flash(w, r, u, "No receipt was sent. "+rq.mismatch+" Tick the box to send it anyway.", back)
		return
	}
	orig, err := mdnOf(om)
	if err != nil {
		h.log.Error("webmail: read message for receipt", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		h.flash(w, r, u, "The receipt could not be sent now. Try again later.", back)
		return
	}
	from := &mail.Address{Address: u.s.Get(keyAddress)}
	uaHost := "localhost"
	if _, dom, ok := strings.Cut(from.Address, "@"); ok && dom != "" {
		uaHost = dom
	}
	msg := buildMDN(time.Now(), from, rq.to, orig, uaHost)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	// RFC 8098 3: the envelope sender of an MDN is null, so that nothing
	// answers it.
	err = h.opt.Send(ctx, Outgoing{Login: u.s.Login, From: "<>", Rcpts: rq.recipients(), Msg: msg})
	if err != nil {
		h.sendFailures.Add(1)
		var ref *Refused
		if errors.As(err, &ref) {
			h.log.Info("webmail: read receipt refused", "user", u.s.Login, "reason", ref.Reason)
			h.flash(w, r, u, "The receipt was not sent: "+ref.Reason, back)
			return
		}
		h.log.Error("webmail: send read receipt", "user", u.s.Login, "err", err)
		h.flash(w, r, u, "The receipt could not be sent now. Try again later.", back)
		return
	}
	h.sent.Add(1)
	h.log.Info("webmail: read receipt sent", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "recipients", len(rq.to))
	notice := "Read receipt sent to " + strings.Join(rq.recipients(), ", ") + "."
	if err := markSent(); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
		h.log.Error("webmail: mark receipt sent", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		notice += " It could not be marked as sent: it may be offered again."
	}
	h.flash(w, r, u, notice, back)
}
