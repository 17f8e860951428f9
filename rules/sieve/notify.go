package sieve

import (
	"bytes"
	"errors"
	"fmt"
	stdmime "mime"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// The enotify extension (RFC 5435) with its one method, mailto (RFC 5436):
// the notify action, the valid_notify_method and notify_method_capability
// tests. A notification is a new message about the one being delivered;
// Notify.Mail builds it.

// Bounds of a mailto notification (the numbers Pigeonhole uses).
const (
	maxNotifyRecipients = 8   // addresses one mailto URI may name
	maxNotifyHeaders    = 16  // URI header fields copied into the notification
	maxNotifySubject    = 256 // characters of the notification's subject
)

// ErrNotifyMethod is wrapped by the error of Notify.Mail for a method
// other than mailto or a mailto URI that is not valid (RFC 5435 3.2).
var ErrNotifyMethod = errors.New("sieve: unsupported or invalid notification method")

// Notify is a notification (RFC 5435) about the message being delivered.
// It does not cancel the implicit keep. Mail builds the message of the
// mailto method (RFC 5436); for any other method it fails.
type Notify struct {
	Method     string   // the notification URI, as the script computed it
	From       string   // :from, "" when not given
	Importance string   // :importance: "1" high, "2" normal (the default), "3" low
	Options    []string // :options, "name=value" each; mailto uses none
	Message    string   // :message, "" when not given

	// Recipients are the addresses of a mailto URI that an earlier
	// notification of the same run did not already take (RFC 5436 asks
	// for no duplicate notifications); nil for other methods.
	Recipients []string
	// Sender is the envelope sender to send the notification with: ""
	// (the null sender) when the triggering message had the null sender
	// (RFC 5436 2.7), else :from or the envelope recipient.
	Sender string

	// What the notification tells about the triggering message.
	Recipient string // its envelope recipient: the default From
	OrigFrom  string // its From field, decoded
	Subject   string // its Subject field, decoded
	MessageID string // its Message-ID, for References
}

func (Notify) action() {}

func (a Notify) String() string {
	s := "notify " + a.Method
	if a.Importance != "" && a.Importance != "2" {
		s += " importance=" + a.Importance
	}
	if len(a.Recipients) > 0 {
		s += " to=" + strings.Join(a.Recipients, ",")
	}
	if a.Message != "" {
		s += fmt.Sprintf(" message=%q", a.Message)
	}
	return s
}

// mailtoURI is a parsed mailto URI (RFC 6068).
type mailtoURI struct {
	to, cc  []string // addresses of the path and of the "to" fields; of "cc" fields
	subject string
	body    string
	hasSubj bool
	headers [][2]string // other fields, names capitalised ("Reply-To", as RFC 5436 2.7 suggests), in order
}

// unsafeURIHeaders are URI header fields a notification never takes
// from the URI (RFC 5436 2.7): the sender, trace and loop fields, the
// fields generated afresh, and the MIME structure, which Mail writes.
var unsafeURIHeaders = map[string]bool{
	"from": true, "sender": true, "auto-submitted": true, "received": true,
	"return-path": true, "delivered-to": true, "message-id": true, "date": true, "bcc": true,
	"references": true, "in-reply-to": true, "mime-version": true, "x-priority": true, "importance": true,
}

// notifyScheme returns the lower-case scheme of a notification URI.
func notifyScheme(uri string) string {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok {
		return ""
	}
	return strings.ToLower(scheme)
}

// parseNotifyMethod checks a notification URI the way notify and
// valid_notify_method must (RFC 5435 3.2, 4): the scheme must be one
// this server supports (mailto) and the URI valid.
func parseNotifyMethod(uri string) (*mailtoURI, error) {
	scheme := notifyScheme(uri)
	if scheme != "mailto" {
		if scheme == "" {
			return nil, fmt.Errorf("%q is not a URI", uri)
		}
		return nil, fmt.Errorf("unsupported notification method %q (only mailto)", scheme)
	}
	return parseMailto(uri[len("mailto:"):])
}

// parseMailto parses what follows "mailto:" (RFC 6068 2):
// [addr *("," addr)] ["?" name "=" value *("&" name "=" value)].
func parseMailto(s string) (*mailtoURI, error) {
	u := &mailtoURI{}
	path, query, _ := strings.Cut(s, "?")
	seen := map[string]bool{}
	addAddrs := func(list *[]string, raw string) error {
		for _, a := range strings.Split(raw, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if !validAddress(a) || bareAddress(a) != a {
				return fmt.Errorf("mailto: %q is not a mail address", a)
			}
			key := strings.ToLower(a)
			if seen[key] {
				continue // one notification per recipient
			}
			seen[key] = true
			*list = append(*list, a)
			if len(seen) > maxNotifyRecipients {
				return fmt.Errorf("mailto: more than %d recipients", maxNotifyRecipients)
			}
		}
		return nil
	}
	to, err := percentDecode(path)
	if err != nil {
		return nil, err
	}
	if err := addAddrs(&u.to, to); err != nil {
		return nil, err
	}
	if query == "" {
		return u, nil
	}
	for _, hf := range strings.Split(query, "&") {
		rawName, rawValue, ok := strings.Cut(hf, "=")
		if !ok {
			return nil, fmt.Errorf("mailto: header %q has no '='", hf)
		}
		name, err := percentDecode(rawName)
		if err != nil {
			return nil, err
		}
		value, err := percentDecode(rawValue)
		if err != nil {
			return nil, err
		}
		if !validFieldName(name) {
			return nil, fmt.Errorf("mailto: %q is not a header field name", name)
		}
		if !utf8.ValidString(value) {
			return nil, fmt.Errorf("mailto: the value of %s is not UTF-8", name)
		}
		lower := strings.ToLower(name)
		if lower != "body" && strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("mailto: the value of %s holds a line break", name)
		}
		switch {
		case lower == "to":
			err = addAddrs(&u.to, value)
		case lower == "cc":
			err = addAddrs(&u.cc, value)
		case lower == "subject":
			u.subject, u.hasSubj = value, true
		case lower == "body":
			u.body = value
		case unsafeURIHeaders[lower] || strings.HasPrefix(lower, "content-") || strings.HasPrefix(lower, "resent-"):
			// RFC 5436 2.7: ignored.
		default:
			if len(u.headers) >= maxNotifyHeaders {
				return nil, fmt.Errorf("mailto: more than %d header fields", maxNotifyHeaders)
			}
			u.headers = append(u.headers, [2]string{textproto.CanonicalMIMEHeaderKey(lower), value})
		}
		if err != nil {
			return nil, err
		}
	}
	return u, nil
}

// percentDecode undoes %XX escapes (RFC 3986 2.1); a malformed escape is
// an error.
func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", fmt.Errorf("mailto: bad percent-encoding in %q", s)
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// encodeURL percent-encodes every octet outside RFC 3986's unreserved
// set: the :encodeurl modifier of RFC 5435 6.
func encodeURL(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// checkNotifyImportance, checkNotifyOptions and the URI check are shared
// by the parse-time check of constant arguments and the run.
func checkNotifyImportance(s string) error {
	if s != "1" && s != "2" && s != "3" {
		return fmt.Errorf(":importance %q must be \"1\", \"2\" or \"3\"", s)
	}
	return nil
}

// checkNotifyOptions checks "optionname=value" (RFC 5435 3.5).
func checkNotifyOptions(list []string) error {
	for _, o := range list {
		name, value, ok := strings.Cut(o, "=")
		if !ok || name == "" || !(isAlpha(name[0]) || isDigit(name[0])) {
			return fmt.Errorf(":options %q is not name=value", o)
		}
		for i := 1; i < len(name); i++ {
			c := name[i]
			if !isAlpha(c) && !isDigit(c) && c != '.' && c != '-' && c != '_' {
				return fmt.Errorf(":options %q is not name=value", o)
			}
		}
		if strings.ContainsAny(value, "\x00\r\n") {
			return fmt.Errorf(":options %q holds a control character", o)
		}
	}
	return nil
}

func checkNotifyFrom(s string) error {
	if !validAddress(s) {
		return fmt.Errorf(":from %q is not a valid mail address", s)
	}
	return nil
}

// checkNotify checks the constant arguments of notify when the script is
// parsed: an unsupported or invalid method is a compile error then
// (RFC 5435 3.2).
func checkNotify(n *node) error {
	if uri, ok := n.args[0].constant(); ok {
		if _, err := parseNotifyMethod(uri); err != nil {
			return parseErrorf(n.args[0].pos, "notify: %v", err)
		}
	}
	if p := n.tags["importance"]; p != nil {
		if s, ok := p.constant(); ok {
			if err := checkNotifyImportance(s); err != nil {
				return parseErrorf(p.pos, "notify: %v", err)
			}
		}
	}
	if p := n.tags["from"]; p != nil {
		if s, ok := p.constant(); ok {
			if err := checkNotifyFrom(s); err != nil {
				return parseErrorf(p.pos, "notify: %v", err)
			}
		}
	}
	if p := n.tags["options"]; p != nil {
		var consts []string
		for _, t := range p.strs {
			if t.parts == nil {
				consts = append(consts, t.s)
			}
		}
		if err := checkNotifyOptions(consts); err != nil {
			return parseErrorf(p.pos, "notify: %v", err)
		}
	}
	return nil
}

// notify runs the notify action. Arguments computed at run time are
// checked as at parse time: a bad :importance, :from or :options, or a
// method this server does not support, is a runtime error (RFC 5435 3.2).
// No notification is made about a message that is itself automatic
// (Auto-Submitted other than "no", RFC 5436 2.7), and none twice to one
// recipient in one run.
func (r *run) notify(n *node, f *frame) error {
	method, err := r.expandOne(n.args[0], f)
	if err != nil {
		return err
	}
	a := Notify{Method: method, Importance: "2"}
	if a.From, err = r.expandOne(n.tags["from"], f); err != nil {
		return err
	}
	if p := n.tags["importance"]; p != nil {
		if a.Importance, err = r.expandOne(p, f); err != nil {
			return err
		}
	}
	if a.Options, err = r.expandParam(n.tags["options"], f); err != nil {
		return err
	}
	if a.Message, err = r.expandOne(n.tags["message"], f); err != nil {
		return err
	}
	uri, err := parseNotifyMethod(method)
	if err == nil {
		err = checkNotifyImportance(a.Importance)
	}
	if err == nil && a.From != "" {
		err = checkNotifyFrom(a.From)
	}
	if err == nil {
		err = checkNotifyOptions(a.Options)
	}
	if err != nil {
		return runtimeErrorf(n.pos, "notify: %v", err)
	}
	if r.autoSubmitted() {
		return nil
	}
	for _, addr := range append(append([]string(nil), uri.to...), uri.cc...) {
		if !r.notified[strings.ToLower(addr)] {
			a.Recipients = append(a.Recipients, addr)
		}
	}
	if len(a.Recipients) == 0 {
		return nil // nobody left to notify
	}
	r.notifies++
	if r.notifies > r.opt.MaxNotifications {
		return limitErrorf(n.pos, "more than %d notifications", r.opt.MaxNotifications)
	}
	if r.notified == nil {
		r.notified = map[string]bool{}
	}
	for _, addr := range a.Recipients {
		r.notified[strings.ToLower(addr)] = true
	}
	a.Recipient = envelopeAddress(r.env.To).all
	if envelopeAddress(r.env.From).all != "" {
		a.Sender = a.Recipient
		if a.From != "" {
			a.Sender = bareAddress(a.From)
		}
	}
	if fl := r.msg.values("From"); len(fl) > 0 {
		a.OrigFrom = fl[0].decoded()
	}
	if fl := r.msg.values("Subject"); len(fl) > 0 {
		a.Subject = fl[0].decoded()
	}
	a.MessageID, _ = r.msg.first("Message-ID")
	return r.addAction(n.pos, a, false)
}

// autoSubmitted reports whether the message says it was sent by a
// program (RFC 3834 5: Auto-Submitted other than "no").
func (r *run) autoSubmitted() bool {
	v, ok := r.msg.first("Auto-Submitted")
	if !ok {
		return false
	}
	kind, _, _ := strings.Cut(v, ";")
	return !strings.EqualFold(strings.TrimSpace(kind), "no")
}

// validNotifyMethod: every URI is supported and valid (RFC 5435 4).
func (r *run) validNotifyMethod(n *node, f *frame) (bool, error) {
	uris, err := r.expandParam(n.args[0], f)
	if err != nil {
		return false, err
	}
	for _, u := range uris {
		if _, err := parseNotifyMethod(u); err != nil {
			return false, nil
		}
	}
	return true, nil
}

// notifyMethodCapability answers the one capability RFC 5435 5 defines,
// "online": for mailto it is "maybe" (RFC 5436 2.2). An invalid URI or an
// unknown capability makes the test false, never an error.
func (r *run) notifyMethodCapability(n *node, f *frame) (bool, error) {
	uri, err := r.expandOne(n.args[0], f)
	if err != nil {
		return false, err
	}
	capability, err := r.expandOne(n.args[1], f)
	if err != nil {
		return false, err
	}
	if _, err := parseNotifyMethod(uri); err != nil || !strings.EqualFold(capability, "online") {
		return false, nil
	}
	return r.matchValues(n, f, []string{"maybe"})
}

// Mail builds the notification message of the mailto method (RFC 5436
// 2.7) and returns it with its envelope recipients; send it with
// n.Sender as the envelope sender. user is the script's owner, named in
// the Auto-Submitted field as owner-email when it is an address, else as
// an opaque owner-token. Line ends are CRLF.
func (n Notify) Mail(now time.Time, user string) (rcpts []string, msg []byte, err error) {
	uri, err := parseNotifyMethod(n.Method)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotifyMethod, err)
	}
	rcpts = n.Recipients
	if rcpts == nil {
		rcpts = append(append([]string(nil), uri.to...), uri.cc...)
	}
	if len(rcpts) == 0 {
		return nil, nil, fmt.Errorf("%w: the mailto URI names no recipient", ErrNotifyMethod)
	}
	keep := map[string]bool{}
	for _, a := range rcpts {
		keep[strings.ToLower(a)] = true
	}
	pick := func(list []string) string {
		var out []string
		for _, a := range list {
			if keep[strings.ToLower(a)] {
				out = append(out, a)
			}
		}
		return strings.Join(out, ", ")
	}
	var b bytes.Buffer
	header := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", name, value)
		}
	}
	// RFC 5436 2.7.1: Auto-Submitted first, naming the script's owner.
	if validAddress(user) {
		header("Auto-Submitted", fmt.Sprintf("auto-notified; owner-email=%q", bareAddress(user)))
	} else {
		header("Auto-Submitted", "auto-notified; owner-token="+storeKey("owner", user)[len("owner:"):][:24])
	}
	from := n.From
	if from == "" {
		from = n.Recipient
	}
	if from == "" {
		from = user
	}
	header("From", encodeAddressHeader(from))
	header("To", pick(uri.to))
	header("Cc", pick(uri.cc))
	subject := n.Message
	if subject == "" && uri.hasSubj {
		subject = uri.subject
	}
	if subject == "" {
		subject = n.Subject
	}
	subject = oneLine(subject)
	if utf8.RuneCountInString(subject) > maxNotifySubject {
		subject = string([]rune(subject)[:maxNotifySubject])
	}
	header("Subject", stdmime.QEncoding.Encode("utf-8", subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", newMessageID("notify", from, now))
	header("References", n.MessageID)
	switch n.Importance {
	case "1":
		header("Importance", "high")
		header("X-Priority", "1 (Highest)")
	case "3":
		header("Importance", "low")
		header("X-Priority", "5 (Lowest)")
	}
	for _, h := range uri.headers {
		header(h[0], stdmime.QEncoding.Encode("utf-8", h[1]))
	}
	header("MIME-Version", "1.0")
	body := uri.body
	if body == "" {
		// RFC 5435 3.6 recommends the From and Subject of the message.
		body = fmt.Sprintf("You have new mail.\n\nFrom: %s\nSubject: %s\n", oneLine(n.OrigFrom), oneLine(n.Subject))
	}
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	writeTextBody(&b, body)
	return rcpts, b.Bytes(), nil
}
