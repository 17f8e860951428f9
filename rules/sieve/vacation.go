package sieve

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	stdmime "mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

// storeKey builds an opaque Store key from the user and the parts that
// identify what is remembered.
func storeKey(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + ":" + hex.EncodeToString(h.Sum(nil))
}

// seen asks the Store; without one nothing was seen.
func (r *run) seen(p Pos, key string) (bool, error) {
	if r.env.Store == nil {
		return false, nil
	}
	ok, err := r.env.Store.Seen(key)
	if err != nil {
		return false, runtimeErrorf(p, "store: %v", err)
	}
	return ok, nil
}

// vacation decides whether an auto-reply may be sent (RFC 5230 4.5, 4.6
// and RFC 3834) and if so adds the Vacation action.
func (r *run) vacation(n *node, f *frame) error {
	if r.vacationUsed {
		return runtimeErrorf(n.pos, "vacation may be used only once per run (RFC 5230 4)")
	}
	r.vacationUsed = true
	reason, err := r.expandOne(n.args[0], f)
	if err != nil {
		return err
	}
	subject, err := r.expandOne(n.tags["subject"], f)
	if err != nil {
		return err
	}
	from, err := r.expandOne(n.tags["from"], f)
	if err != nil {
		return err
	}
	if from != "" && !validAddress(from) {
		return runtimeErrorf(n.tags["from"].pos, "vacation: :from %q is not a valid mail address", from)
	}
	handle, err := r.expandOne(n.tags["handle"], f)
	if err != nil {
		return err
	}
	addresses, err := r.expandParam(n.tags["addresses"], f)
	if err != nil {
		return err
	}
	period := 7 * 24 * time.Hour // RFC 5230 4.1: the default is 7 days
	if p := n.tags["days"]; p != nil {
		period = time.Duration(max(p.num, 1)) * 24 * time.Hour
	}
	if p := n.tags["seconds"]; p != nil {
		period = time.Duration(min(p.num, int64(maxPeriod/time.Second))) * time.Second
	}
	period = min(period, maxPeriod)
	if handle == "" {
		// RFC 5230 4.2: without :handle the arguments identify the reply.
		handle = storeKey("handle", reason, subject, from, fmt.Sprint(n.has("mime")))[len("handle:"):][:16]
	}
	if from != "" {
		addresses = append(addresses, from)
	}
	if !r.shouldReply(addresses) {
		return nil
	}
	sender := envelopeAddress(r.env.From).all
	key := storeKey("vacation", r.env.User, handle, strings.ToLower(sender))
	if period > 0 {
		already, err := r.seen(n.pos, key)
		if err != nil || already {
			return err
		}
		r.pending = append(r.pending, record{key: key, ttl: period})
	}
	if subject == "" {
		subject = "Auto: " + r.origSubject()
	}
	if from == "" {
		from = r.userAddress()
	}
	msgID, _ := r.msg.first("Message-ID")
	refs, _ := r.msg.first("References")
	v := Vacation{To: sender, From: from, Subject: subject, Body: reason, MIME: n.has("mime"),
		Handle: handle, Days: period, InReplyTo: msgID, References: refs}
	return r.addAction(n.pos, v, false)
}

func (r *run) origSubject() string {
	if fl := r.msg.values("Subject"); len(fl) > 0 {
		if s := fl[0].decoded(); s != "" {
			return s
		}
	}
	return "your message"
}

// userAddress is the reply's default From: the address the message came
// to, else the user's first address.
func (r *run) userAddress() string {
	if a := envelopeAddress(r.env.To).all; a != "" {
		return a
	}
	if len(r.env.Addresses) > 0 {
		return r.env.Addresses[0]
	}
	return r.env.User
}

// listHeaders mark mailing-list mail (RFC 2369, RFC 2919).
var listHeaders = []string{"List-Id", "List-Help", "List-Subscribe", "List-Unsubscribe", "List-Post", "List-Owner", "List-Archive"}

// shouldReply applies RFC 5230 4.5/4.6 and RFC 3834 section 2: no reply
// to the null sender or daemons, to lists, bulk or auto-submitted mail,
// nor to mail that does not name the user in a recipient header.
func (r *run) shouldReply(extra []string) bool {
	sender := envelopeAddress(r.env.From)
	if sender.all == "" {
		return false
	}
	local := strings.ToLower(sender.local)
	if local == "mailer-daemon" || local == "listserv" || local == "majordomo" ||
		strings.HasPrefix(local, "owner-") || strings.HasSuffix(local, "-request") || strings.HasSuffix(local, "-owner") {
		return false
	}
	if v, ok := r.msg.first("Auto-Submitted"); ok {
		kind, _, _ := strings.Cut(v, ";")
		if !strings.EqualFold(strings.TrimSpace(kind), "no") {
			return false
		}
	}
	if v, ok := r.msg.first("Precedence"); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "bulk", "list", "junk":
			return false
		}
	}
	for _, h := range listHeaders {
		if _, ok := r.msg.first(h); ok {
			return false
		}
	}
	if v, ok := r.msg.first("X-Auto-Response-Suppress"); ok {
		l := strings.ToLower(v)
		if strings.Contains(l, "all") || strings.Contains(l, "oof") {
			return false
		}
	}
	own := append(append([]string(nil), extra...), r.env.Addresses...)
	own = append(own, r.env.To, r.env.OrigTo)
	if r.isOwn(sender.all, own) {
		return false // never answer oneself
	}
	for _, h := range []string{"To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"} {
		for _, fl := range r.msg.values(h) {
			for _, a := range fl.addresses() {
				if r.isOwn(a.all, own) {
					return true
				}
			}
		}
	}
	return false
}

// isOwn compares an address with the user's, ignoring case and any
// subaddress detail.
func (r *run) isOwn(addr string, own []string) bool {
	a := r.withoutDetail(envelopeAddress(bareAddress(addr)))
	if a == "" {
		return false
	}
	for _, o := range own {
		if o != "" && strings.EqualFold(a, r.withoutDetail(envelopeAddress(bareAddress(o)))) {
			return true
		}
	}
	return false
}

func (r *run) withoutDetail(a address) string {
	if a.domain == "" {
		return a.all
	}
	user, _, _ := r.subaddress(a.local)
	return user + "@" + a.domain
}

// Reply builds the auto-reply of RFC 5230 section 5 and RFC 3834: From,
// To, Subject, Date, a new Message-ID, In-Reply-To and References to the
// original, and "Auto-Submitted: auto-replied". Send it with a null
// envelope sender (MAIL FROM:<>) to v.To. Line ends are CRLF.
func (v Vacation) Reply(now time.Time) []byte {
	var b bytes.Buffer
	header := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", name, value)
		}
	}
	header("From", encodeAddressHeader(v.From))
	header("To", v.To)
	header("Subject", stdmime.QEncoding.Encode("utf-8", oneLine(v.Subject)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", newMessageID("vacation", v.From, now))
	header("In-Reply-To", v.InReplyTo)
	refs := strings.TrimSpace(v.References + " " + v.InReplyTo)
	header("References", refs)
	header("Auto-Submitted", "auto-replied (vacation)")
	header("Precedence", "bulk")
	header("MIME-Version", "1.0")
	body := strings.ReplaceAll(strings.ReplaceAll(v.Body, "\r\n", "\n"), "\n", "\r\n")
	if v.MIME {
		// :mime: the reason is a MIME entity, its own header fields first.
		b.WriteString(body)
		return b.Bytes()
	}
	writeTextBody(&b, body)
	return b.Bytes()
}

// writeTextBody ends a header with the fields of a text/plain body and
// writes the body (CRLF line ends already): 7bit when it is ASCII, else
// UTF-8 in quoted-printable.
func writeTextBody(b *bytes.Buffer, body string) {
	if isASCII(body) {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		b.WriteString(body)
		return
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(b)
	w.Write([]byte(body))
	w.Close()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// encodeAddressHeader encodes a display name that is not ASCII.
func encodeAddressHeader(s string) string {
	if isASCII(s) {
		return s
	}
	if i := strings.LastIndexByte(s, '<'); i > 0 {
		name := strings.Trim(strings.TrimSpace(s[:i]), `"`)
		return stdmime.QEncoding.Encode("utf-8", name) + " " + s[i:]
	}
	return s
}

// newMessageID makes a Message-ID for a message the script sends; kind
// ("vacation", "notify") says which.
func newMessageID(kind, from string, now time.Time) string {
	domain := envelopeAddress(bareAddress(from)).domain
	if domain == "" {
		domain = "localhost"
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	return fmt.Sprintf("<%d.%s.%s@%s>", now.Unix(), hex.EncodeToString(rnd[:]), kind, domain)
}

// duplicateTest implements RFC 7352: has this message (by Message-ID, a
// header, or a :uniqueid) been seen before under the same handle?
func (r *run) duplicateTest(n *node, f *frame) (bool, error) {
	handle, err := r.expandOne(n.tags["handle"], f)
	if err != nil {
		return false, err
	}
	var value string
	switch {
	case n.tags["uniqueid"] != nil:
		if value, err = r.expandOne(n.tags["uniqueid"], f); err != nil {
			return false, err
		}
	default:
		name := "Message-ID"
		if p := n.tags["header"]; p != nil {
			if name, err = r.expandOne(p, f); err != nil {
				return false, err
			}
		}
		value, _ = r.msg.first(name)
	}
	if value == "" {
		return false, nil // RFC 7352 3.1: nothing to track, not a duplicate
	}
	period := defaultDupPeriod
	if p := n.tags["seconds"]; p != nil {
		period = time.Duration(min(p.num, int64(maxPeriod/time.Second))) * time.Second
	}
	key := storeKey("duplicate", r.env.User, handle, value)
	seen, err := r.seen(n.pos, key)
	if err != nil {
		return false, err
	}
	if !seen || n.has("last") {
		// Recorded when the run ends well (RFC 7352 3.1); :last restarts
		// the period on every sighting.
		r.pending = append(r.pending, record{key: key, ttl: period})
	}
	return seen, nil
}
