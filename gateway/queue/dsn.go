package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"postern/gateway/delivery"
)

// Delivery status notifications: RFC 3464 (the message/delivery-status
// format), RFC 3461 §6 (when to send them, RET, ENVID, ORCPT), RFC 6522
// (multipart/report), RFC 6533 (the "global" variants when addresses are
// UTF-8) and RFC 3834 (Auto-Submitted). A DSN goes from the null sender to
// the original envelope sender through Enqueue, so it is durable and
// retried like any message, and it can never itself be bounced.

type dsnKind int

const (
	dsnFailure dsnKind = iota // Action: failed (permanent error, expiry, admin bounce)
	dsnDelay                  // Action: delayed (still queued after DelayNotice)
	dsnSuccess                // Action: delivered (local) or relayed (to a peer without DSN), NOTIFY=SUCCESS
)

const (
	// maxReturnedMessage: a larger original is returned as headers only.
	maxReturnedMessage = 1 << 20
	// maxReturnedHeaders bounds the header block returned.
	maxReturnedHeaders = 256 << 10
)

// dsnRecipient is one recipient reported in a DSN.
type dsnRecipient struct {
	index          int    // in the envelope's Rcpts
	action         string // failed, delayed, delivered, relayed
	status         string // RFC 3463
	expired        bool   // failed because the lifetime ended
	cancelled      bool   // failed by the administrator
	willRetryUntil time.Time
}

func (k dsnKind) allows(from string, n delivery.Notify) bool {
	switch k {
	case dsnFailure:
		return notifyFailure(from, n)
	case dsnDelay:
		return notifyDelay(from, n)
	default:
		return n.Success(from)
	}
}

// sendDSN queues one DSN to se.From covering the recipients whose NOTIFY
// asks for this kind. Nothing is sent for a null sender.
func (q *Queue) sendDSN(ctx context.Context, se *spoolEnvelope, kind dsnKind, rcpts []dsnRecipient, msg delivery.Message) error {
	var report []dsnRecipient
	for _, d := range rcpts {
		if kind.allows(se.From, se.Rcpts[d.index].Notify) {
			report = append(report, d)
		}
	}
	if len(report) == 0 {
		return nil
	}
	now := q.opt.Now()
	d := dsnBuilder{
		hostname:  q.opt.Hostname,
		now:       now,
		lifetime:  q.opt.Lifetime,
		messageID: fmt.Sprintf("<%s.dsn@%s>", newID(now), q.opt.Hostname),
		boundary:  "=_postern_report_" + randomHex(12),
	}
	data, err := d.build(se, kind, report, msg)
	if err != nil {
		return fmt.Errorf("queue %s: build DSN: %w", se.ID, err)
	}
	local := q.opt.IsLocal != nil && q.opt.IsLocal(se.From)
	to := []delivery.Recipient{{Addr: se.From, Notify: delivery.NotifyNever, Local: local}}
	if q.opt.Expand != nil {
		if exp, err := q.opt.Expand(ctx, se.From); err == nil && len(exp) > 0 {
			for i := range exp {
				exp[i].Notify = delivery.NotifyNever
			}
			to = exp
		}
	}
	env := delivery.Envelope{
		From:     "",
		Rcpts:    to,
		SMTPUTF8: !isASCII(se.From) || d.global,
		Body8Bit: has8Bit(data),
	}
	id, err := q.Enqueue(ctx, env, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("queue %s: queue DSN: %w", se.ID, err)
	}
	q.stats.dsns[kind].Add(1)
	q.log.Info("DSN queued", "id", se.ID, "dsn", id, "to", se.From, "action", report[0].action, "recipients", len(report))
	return nil
}

// dsnBuilder writes a DSN message. Its fields are the parts that vary
// between runs, set by the caller so tests can fix them.
type dsnBuilder struct {
	hostname  string
	now       time.Time
	lifetime  time.Duration
	messageID string
	boundary  string
	global    bool // set by build: RFC 6533 types were used
}

// build returns the DSN message (CRLF line endings).
func (d *dsnBuilder) build(se *spoolEnvelope, kind dsnKind, report []dsnRecipient, msg delivery.Message) ([]byte, error) {
	d.global = !isASCII(se.From) || se.SMTPUTF8
	for _, r := range report {
		if !isASCII(se.Rcpts[r.index].Addr) || !isASCII(se.Rcpts[r.index].ORcpt) {
			d.global = true
		}
	}
	var b bytes.Buffer
	crlf := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}

	subject := map[dsnKind]string{
		dsnFailure: "Undelivered Mail Returned to Sender",
		dsnDelay:   "Delivery Status Notification (Delay)",
		dsnSuccess: "Delivery Status Notification (Success)",
	}[kind]
	crlf("From: Mail Delivery System <MAILER-DAEMON@%s>", d.hostname)
	crlf("To: <%s>", se.From)
	crlf("Subject: %s", subject)
	crlf("Date: %s", d.now.Format(time.RFC1123Z))
	crlf("Message-ID: %s", d.messageID)
	crlf("Auto-Submitted: auto-replied") // RFC 3834 §5: no auto-reply to this
	crlf("MIME-Version: 1.0")
	crlf("Content-Type: multipart/report; report-type=delivery-status;")
	crlf("\tboundary=\"%s\"", d.boundary)
	crlf("")
	crlf("This is a MIME-encapsulated delivery status notification.")
	crlf("")

	// Part 1: for people (RFC 6522 §3: first part is human-readable).
	text := d.humanText(se, kind, report)
	crlf("--%s", d.boundary)
	if isASCII(text) {
		crlf("Content-Type: text/plain; charset=us-ascii")
	} else {
		crlf("Content-Type: text/plain; charset=utf-8")
		crlf("Content-Transfer-Encoding: 8bit")
	}
	crlf("Content-Description: Notification")
	crlf("")
	b.WriteString(text)

	// Part 2: for programs (RFC 3464 §2).
	crlf("--%s", d.boundary)
	if d.global {
		crlf("Content-Type: message/global-delivery-status") // RFC 6533 §6.1
		crlf("Content-Transfer-Encoding: 8bit")
	} else {
		crlf("Content-Type: message/delivery-status")
	}
	crlf("Content-Description: Delivery report")
	crlf("")
	crlf("Reporting-MTA: dns; %s", d.hostname)
	if se.EnvID != "" {
		crlf("Original-Envelope-Id: %s", cleanText(se.EnvID, 100))
	}
	crlf("Arrival-Date: %s", se.Received.Format(time.RFC1123Z))
	for _, r := range report {
		rc := se.Rcpts[r.index]
		crlf("")
		if rc.ORcpt != "" {
			crlf("Original-Recipient: %s", d.typedAddress(rc.ORcpt))
		}
		crlf("Final-Recipient: %s", d.address(rc.Addr))
		crlf("Action: %s", r.action)
		crlf("Status: %s", r.status)
		if rc.RemoteMTA != "" {
			crlf("Remote-MTA: %s", withType(rc.RemoteMTA, "dns"))
		}
		if diag := diagnostic(rc); diag != "" && r.action != "delivered" && r.action != "relayed" {
			b.WriteString(foldField("Diagnostic-Code", diag))
		}
		if !rc.LastAttempt.IsZero() {
			crlf("Last-Attempt-Date: %s", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if r.action == "delayed" && !r.willRetryUntil.IsZero() {
			crlf("Will-Retry-Until: %s", r.willRetryUntil.Format(time.RFC1123Z))
		}
	}

	// Part 3: the original, whole or its header (RFC 3461 §4.3 RET; delay
	// and success notices carry the header only).
	full := kind == dsnFailure && !strings.EqualFold(se.Ret, "HDRS") && msg.Size() <= maxReturnedMessage
	var orig []byte
	var err error
	if full {
		orig, err = io.ReadAll(io.NewSectionReader(msg, 0, msg.Size()))
	} else {
		orig, err = headerBlock(msg)
	}
	if err != nil {
		return nil, fmt.Errorf("read original message: %w", err)
	}
	crlf("")
	crlf("--%s", d.boundary)
	switch {
	case full && d.global:
		crlf("Content-Type: message/global")
	case full:
		crlf("Content-Type: message/rfc822")
	case d.global:
		crlf("Content-Type: message/global-headers")
	default:
		crlf("Content-Type: text/rfc822-headers")
	}
	if has8Bit(orig) {
		crlf("Content-Transfer-Encoding: 8bit")
	}
	crlf("Content-Description: %s", map[bool]string{true: "Undelivered message", false: "Message headers"}[full])
	crlf("")
	b.Write(orig)
	if len(orig) > 0 && !bytes.HasSuffix(orig, []byte("\n")) {
		crlf("")
	}
	crlf("")
	crlf("--%s--", d.boundary)
	return b.Bytes(), nil
}

// humanText is the first part: what happened to which recipient and why.
func (d *dsnBuilder) humanText(se *spoolEnvelope, kind dsnKind, report []dsnRecipient) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	line("This is the mail system at host %s.", d.hostname)
	line("")
	switch kind {
	case dsnFailure:
		line("Your message could not be delivered to one or more recipients.")
		line("The reasons follow; your message is attached.")
	case dsnDelay:
		until := se.Received.Add(d.lifetime).Format(time.RFC1123Z)
		line("Your message has not yet been delivered to the recipients below.")
		line("It is still in the queue and delivery will be tried until")
		line("%s. You do not need to send it again.", until)
	case dsnSuccess:
		relayed := false
		for _, r := range report {
			relayed = relayed || r.action == "relayed"
		}
		if relayed {
			line("Your message was delivered, or passed on to a mail system that")
			line("does not report delivery, as follows; you asked to be told.")
		} else {
			line("Your message was delivered to the recipients below, as you asked")
			line("to be told.")
		}
	}
	line("")
	for _, r := range report {
		rc := se.Rcpts[r.index]
		reason := strings.TrimSpace(rc.LastResult)
		if _, after, ok := strings.Cut(reason, ";"); ok {
			reason = strings.TrimSpace(after)
		}
		switch {
		case r.cancelled:
			line("<%s>: delivery cancelled by the administrator", rc.Addr)
		case r.expired:
			line("<%s>: delivery time expired after %s", rc.Addr, humanDuration(d.lifetime))
			for _, l := range wrapWords("last error: "+reason, 72) {
				line("    %s", l)
			}
		case r.action == "relayed":
			line("<%s>: relayed to %s, which does not report", rc.Addr, strings.TrimPrefix(withType(rc.RemoteMTA, "dns"), "dns; "))
			line("    delivery: no further notice will come")
		case kind == dsnSuccess:
			line("<%s>: delivered to the mailbox", rc.Addr)
		default:
			for i, l := range wrapWords("<"+rc.Addr+">: "+reason, 76) {
				if i > 0 {
					l = "    " + l
				}
				line("%s", l)
			}
		}
	}
	return b.String()
}

// address is an RFC 3464 address field: "rfc822; addr", or "utf-8; addr"
// for an internationalised address (RFC 6533 §3).
func (d *dsnBuilder) address(a string) string {
	if !isASCII(a) {
		return "utf-8; " + a
	}
	return "rfc822; " + a
}

// typedAddress writes an ORCPT value, which already carries its type
// ("rfc822;addr"); a bare address is taken as rfc822.
func (d *dsnBuilder) typedAddress(a string) string {
	if t, v, ok := strings.Cut(a, ";"); ok && t != "" && !strings.ContainsAny(t, " @<>") {
		return strings.TrimSpace(t) + "; " + strings.TrimSpace(v)
	}
	return d.address(a)
}

// withType prefixes a field value with a type ("dns; host") unless it has
// one.
func withType(v, typ string) string {
	if strings.Contains(v, ";") {
		return v
	}
	return typ + "; " + v
}

// diagnostic is the recipient's Diagnostic-Code value, "type; text".
func diagnostic(rc delivery.Recipient) string {
	v := cleanText(rc.LastResult, 900)
	if v == "" || v == "delivered" {
		return ""
	}
	return withType(v, "x-postern")
}

// foldField writes "Name: value" folded at spaces to lines of at most 78
// characters where the words allow (RFC 5322 §2.2.3), ending in CRLF.
func foldField(name, value string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	lineLen := len(name) + 1
	for _, w := range strings.Fields(value) {
		if lineLen+1+len(w) > 78 && lineLen > len(name)+1 {
			b.WriteString("\r\n")
			lineLen = 0
		}
		b.WriteString(" " + w)
		lineLen += 1 + len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}

// wrapWords splits s into lines of at most width characters where the
// words allow (a longer word stays whole).
func wrapWords(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	limit := width
	var words []string
	for _, w := range strings.Fields(s) {
		// A word longer than a line is cut, so no line passes the
		// 998-octet limit of RFC 5322 §2.1.1.
		for len(w) > width {
			cut := width
			for cut > 0 && !utf8.RuneStart(w[cut]) {
				cut--
			}
			words, w = append(words, w[:cut]), w[cut:]
		}
		words = append(words, w)
	}
	for _, w := range words {
		if cur.Len() > 0 && cur.Len()+1+len(w) > limit {
			lines = append(lines, cur.String())
			cur.Reset()
			limit = width - 4 // continuation lines are indented by the caller
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 || len(lines) == 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// headerBlock returns the original's header section, through the blank
// line or at most maxReturnedHeaders (cut at a line end).
func headerBlock(msg delivery.Message) ([]byte, error) {
	n := min(msg.Size(), maxReturnedHeaders)
	buf := make([]byte, n)
	if _, err := msg.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, err
	}
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return buf[:i+2], nil
	}
	if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		return buf[:i+1], nil
	}
	if int64(len(buf)) < msg.Size() {
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[:i+1], nil
		}
	}
	return buf, nil
}

func humanDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		days := int(d / (24 * time.Hour))
		if days == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", days)
	}
	return d.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func has8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
