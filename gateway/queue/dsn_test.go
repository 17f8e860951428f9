package queue

import (
	"bufio"
	"bytes"
	"io"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"postern/gateway/delivery"
)

// parsedDSN is a DSN taken apart with go-message, as a receiving MUA or
// bounce processor would.
type parsedDSN struct {
	header      message.Header
	human       string
	statusType  string
	perMessage  textproto.MIMEHeader
	perRcpt     []textproto.MIMEHeader
	origType    string
	original    []byte
	partsSeen   int
	reportType  string
	contentType string
}

func parseDSN(t *testing.T, raw []byte) parsedDSN {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("DSN has bare LF line endings")
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("go-message cannot read the DSN: %v\n%s", err, raw)
	}
	var d parsedDSN
	d.header = e.Header
	ct, params, err := e.Header.ContentType()
	if err != nil {
		t.Fatal(err)
	}
	d.contentType, d.reportType = ct, params["report-type"]
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("DSN is not multipart: %s", ct)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading DSN part: %v", err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		pct, _, _ := p.Header.ContentType()
		switch d.partsSeen {
		case 0:
			if pct != "text/plain" {
				t.Errorf("first part is %s, want text/plain", pct)
			}
			d.human = string(body)
		case 1:
			d.statusType = pct
			r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			d.perMessage, err = r.ReadMIMEHeader()
			if err != nil {
				t.Fatalf("per-message fields: %v\n%s", err, body)
			}
			for {
				h, err := r.ReadMIMEHeader()
				if len(h) > 0 {
					d.perRcpt = append(d.perRcpt, h)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("per-recipient fields: %v\n%s", err, body)
				}
			}
		case 2:
			d.origType = pct
			d.original = body
		}
		d.partsSeen++
	}
	if d.partsSeen != 3 {
		t.Errorf("DSN has %d parts, want 3", d.partsSeen)
	}
	return d
}

func (d parsedDSN) rcpt(t *testing.T, addr string) textproto.MIMEHeader {
	t.Helper()
	for _, h := range d.perRcpt {
		if h.Get("Final-Recipient") == "rfc822; "+addr {
			return h
		}
	}
	t.Fatalf("no recipient block for %s in %v", addr, d.perRcpt)
	return nil
}

func checkDSNHeader(t *testing.T, d parsedDSN, to, subject string) {
	t.Helper()
	if got := d.header.Get("From"); got != "Mail Delivery System <MAILER-DAEMON@mx.test.example>" {
		t.Errorf("From: %q", got)
	}
	if got := d.header.Get("To"); got != "<"+to+">" {
		t.Errorf("To: %q", got)
	}
	if got := d.header.Get("Subject"); got != subject {
		t.Errorf("Subject: %q, want %q", got, subject)
	}
	if got := d.header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted: %q", got)
	}
	if _, err := mail.ParseDate(d.header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", d.header.Get("Date"), err)
	}
	if mid := d.header.Get("Message-ID"); !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, "@mx.test.example>") {
		t.Errorf("Message-ID: %q", mid)
	}
	if d.header.Get("MIME-Version") != "1.0" || d.contentType != "multipart/report" || d.reportType != "delivery-status" {
		t.Errorf("MIME: %s %s report-type=%s", d.header.Get("MIME-Version"), d.contentType, d.reportType)
	}
	if d.perMessage.Get("Reporting-MTA") != "dns; mx.test.example" {
		t.Errorf("Reporting-MTA: %q", d.perMessage.Get("Reporting-MTA"))
	}
}

func checkDSNEnvelope(t *testing.T, c deliveryCall, to string) {
	t.Helper()
	if c.env.From != "" || len(c.rcpts) != 1 || c.rcpts[0].Addr != to || c.rcpts[0].Notify != delivery.NotifyNever {
		t.Errorf("DSN envelope: from %q rcpts %+v", c.env.From, c.rcpts)
	}
}

func dateField(t *testing.T, h textproto.MIMEHeader, name string) time.Time {
	t.Helper()
	v, err := mail.ParseDate(h.Get(name))
	if err != nil {
		t.Errorf("%s %q: %v", name, h.Get(name), err)
	}
	return v
}

func TestPermanentFailureSendsOneDSNWithEveryField(t *testing.T) {
	checkNoGoroutineLeak(t)
	h := newHarness(t, nil)
	h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		if strings.HasPrefix(r.Addr, "carol") || env.From == "" {
			return delivery.Result{RemoteMTA: "dns; mx.example.org"}
		}
		return permFail("no such user here, sorry about that; this diagnostic is long enough to need folding when it is written")
	})
	h.start()
	e := env("alice@sender.example",
		remote("bob@remote.example"),
		remote("carol@remote.example"),
		delivery.Recipient{Addr: "dave@other.example", ORcpt: "rfc822;dave-orig@alias.example", Notify: delivery.NotifyFailure | delivery.NotifyDelay},
	)
	e.EnvID = "ENV-123"
	id := h.enqueue(e, testMessage)
	received := h.clock.Now()
	waitFor(t, "original removed and DSN delivered", func() bool { return h.gone(id) && len(h.remote.dsnCalls()) == 1 })
	time.Sleep(50 * time.Millisecond)
	dsns := h.remote.dsnCalls()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want exactly 1 for the pass", len(dsns))
	}
	checkDSNEnvelope(t, dsns[0], "alice@sender.example")
	d := parseDSN(t, dsns[0].body)
	checkDSNHeader(t, d, "alice@sender.example", "Undelivered Mail Returned to Sender")
	if d.statusType != "message/delivery-status" {
		t.Errorf("status part %s", d.statusType)
	}
	if d.perMessage.Get("Original-Envelope-Id") != "ENV-123" {
		t.Errorf("Original-Envelope-Id %q", d.perMessage.Get("Original-Envelope-Id"))
	}
	if got := dateField(t, d.perMessage, "Arrival-Date"); !got.Equal(received) {
		t.Errorf("Arrival-Date %v, want %v", got, received)
	}
	if len(d.perRcpt) != 2 {
		t.Fatalf("%d recipient blocks, want 2 (bob, dave): %v", len(d.perRcpt), d.perRcpt)
	}
	for _, addr := range []string{"bob@remote.example", "dave@other.example"} {
		r := d.rcpt(t, addr)
		if r.Get("Action") != "failed" || r.Get("Status") != "5.1.1" || r.Get("Remote-MTA") != "dns; mx.example.org" {
			t.Errorf("%s: %v", addr, r)
		}
		if diag := r.Get("Diagnostic-Code"); !strings.HasPrefix(diag, "smtp; 550 5.1.1 no such user") || !strings.HasSuffix(diag, "when it is written") {
			t.Errorf("%s: Diagnostic-Code %q", addr, diag)
		}
		if got := dateField(t, r, "Last-Attempt-Date"); !got.Equal(received) {
			t.Errorf("Last-Attempt-Date %v", got)
		}
		if r.Get("Will-Retry-Until") != "" {
			t.Errorf("Will-Retry-Until in a failure report")
		}
		if !strings.Contains(d.human, "<"+addr+">: 550 5.1.1 no such user") {
			t.Errorf("human part lacks %s:\n%s", addr, d.human)
		}
	}
	if got := d.rcpt(t, "dave@other.example").Get("Original-Recipient"); got != "rfc822; dave-orig@alias.example" {
		t.Errorf("Original-Recipient %q", got)
	}
	if got := d.rcpt(t, "bob@remote.example").Get("Original-Recipient"); got != "" {
		t.Errorf("Original-Recipient for bob %q", got)
	}
	if strings.Contains(d.human, "carol") {
		t.Error("the delivered recipient is in the bounce")
	}
	if d.origType != "message/rfc822" || string(d.original) != testMessage {
		t.Errorf("returned %s:\n%q", d.origType, d.original)
	}
	// No line of the DSN is longer than 998 octets (RFC 5322 §2.1.1);
	// the folded diagnostic keeps them under 80 here.
	for _, line := range strings.Split(string(dsns[0].body), "\r\n") {
		if len(line) > 80 {
			t.Errorf("long line (%d): %q", len(line), line)
		}
	}
}

func TestDSNReturnsHeadersOnlyForRetHdrsAndBigMessages(t *testing.T) {
	big := "Subject: big\r\nFrom: a@b.example\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", (maxReturnedMessage/78)+10)
	for name, tc := range map[string]struct {
		ret, body, wantHeaders string
	}{
		"RET=HDRS": {"HDRS", testMessage, testMessage[:strings.Index(testMessage, "\r\n\r\n")+2]},
		"too big":  {"FULL", big, "Subject: big\r\nFrom: a@b.example\r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
				if env.From == "" {
					return delivery.Result{}
				}
				return permFail("no")
			})
			h.start()
			e := env("alice@sender.example", remote("bob@remote.example"))
			e.Ret = tc.ret
			h.enqueue(e, tc.body)
			waitFor(t, "DSN", func() bool { return len(h.remote.dsnCalls()) == 1 })
			d := parseDSN(t, h.remote.dsnCalls()[0].body)
			if d.origType != "text/rfc822-headers" || string(d.original) != tc.wantHeaders {
				t.Errorf("returned %s %q, want headers %q", d.origType, d.original, tc.wantHeaders)
			}
		})
	}
}

// alwaysTempFail makes every non-DSN delivery fail temporarily and
// delivers DSNs.
func alwaysTempFail(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
	if env.From == "" {
		return delivery.Result{}
	}
	return tempFail("mailbox busy")
}

// stepUntil advances the clock by step and waits for the next attempt,
// until done says stop (at most n steps).
func stepUntil(t *testing.T, h *harness, id string, step time.Duration, n int, done func() bool) {
	t.Helper()
	for i := 0; i < n && !done(); i++ {
		before := len(h.remote.snapshot())
		h.advance(step)
		waitFor(t, "an attempt", func() bool { return len(h.remote.snapshot()) > before || done() })
	}
	if !done() {
		t.Fatalf("condition not reached after %d steps of %v", n, step)
	}
}

func TestExpiryFailsWith447AndBounces(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Schedule = []time.Duration{10 * time.Minute}
		o.Lifetime = 25 * time.Minute
		o.DelayNotice = time.Hour // after the lifetime: no delay notice
	})
	h.remote.setDecide(alwaysTempFail)
	h.start()
	received := h.clock.Now()
	id := h.enqueue(env("alice@sender.example", remote("bob@remote.example")), testMessage)
	waitFor(t, "first attempt", func() bool { return h.envelope(id).Rcpts[0].Attempts == 1 })
	// The last attempt happens at the end of the lifetime, not after it.
	if next := h.envelope(id).Rcpts[0].NextAttempt; next.After(received.Add(25 * time.Minute)) {
		t.Errorf("next attempt %v beyond expiry", next)
	}
	stepUntil(t, h, id, 12*time.Minute, 6, func() bool { return h.gone(id) })
	waitFor(t, "DSN delivered", func() bool { return len(h.remote.dsnCalls()) == 1 })
	attempts := 0
	for _, c := range h.remote.snapshot() {
		if c.env.ID == id {
			attempts++
		}
	}
	if attempts != 4 {
		t.Errorf("%d attempts, want 4 (0, ~10, ~20, 25 minutes)", attempts)
	}
	d := parseDSN(t, h.remote.dsnCalls()[0].body)
	checkDSNHeader(t, d, "alice@sender.example", "Undelivered Mail Returned to Sender")
	r := d.rcpt(t, "bob@remote.example")
	if r.Get("Action") != "failed" || r.Get("Status") != "4.4.7" || !strings.Contains(r.Get("Diagnostic-Code"), "451 4.2.0 mailbox busy") {
		t.Errorf("expired recipient: %v", r)
	}
	if !strings.Contains(d.human, "delivery time expired") {
		t.Errorf("human part:\n%s", d.human)
	}
}

func TestDelayNoticeOncePerRecipient(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Schedule = []time.Duration{10 * time.Minute}
		o.DelayNotice = 30 * time.Minute
		o.Lifetime = 24 * time.Hour
	})
	h.remote.setDecide(alwaysTempFail)
	h.start()
	received := h.clock.Now()
	e := env("alice@sender.example", remote("bob@remote.example"), delivery.Recipient{Addr: "nodelay@remote.example", Notify: delivery.NotifyFailure})
	id := h.enqueue(e, testMessage)
	waitFor(t, "first attempt", func() bool { return h.envelope(id).Rcpts[0].Attempts == 1 })
	stepUntil(t, h, id, 12*time.Minute, 10, func() bool { return len(h.remote.dsnCalls()) == 1 })
	// More failed attempts: no second notice.
	stepUntil(t, h, id, 12*time.Minute, 10, func() bool { return h.envelope(id).Rcpts[0].Attempts >= 7 })
	time.Sleep(50 * time.Millisecond)
	if n := len(h.remote.dsnCalls()); n != 1 {
		t.Fatalf("%d delay DSNs, want 1", n)
	}
	if env := h.envelope(id); !env.Rcpts[0].DelayNotified || env.Rcpts[1].DelayNotified || env.Rcpts[0].Status != delivery.StatusPending {
		t.Errorf("recipients after the notice: %+v", env.Rcpts)
	}
	d := parseDSN(t, h.remote.dsnCalls()[0].body)
	checkDSNHeader(t, d, "alice@sender.example", "Delivery Status Notification (Delay)")
	if len(d.perRcpt) != 1 {
		t.Fatalf("%d recipients in the notice; NOTIFY=FAILURE must leave nodelay@ out", len(d.perRcpt))
	}
	r := d.rcpt(t, "bob@remote.example")
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.2.0" {
		t.Errorf("delayed recipient: %v", r)
	}
	if got := dateField(t, r, "Will-Retry-Until"); !got.Equal(received.Add(24 * time.Hour)) {
		t.Errorf("Will-Retry-Until %v, want %v", got, received.Add(24*time.Hour))
	}
	if d.origType != "text/rfc822-headers" {
		t.Errorf("a delay notice returns %s, want headers only", d.origType)
	}
	if !strings.Contains(d.human, "You do not need to send it again") {
		t.Errorf("human part:\n%s", d.human)
	}
}

func TestNullSenderIsNeverBounced(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(func(*delivery.Envelope, delivery.Recipient) delivery.Result { return permFail("gone") })
	h.start()
	id := h.enqueue(env("", remote("bob@remote.example")), testMessage)
	waitFor(t, "failed message removed", func() bool { return h.gone(id) })
	time.Sleep(50 * time.Millisecond)
	if n := len(h.remote.snapshot()); n != 1 {
		t.Errorf("%d deliveries: a bounce was sent for a bounce", n)
	}
}

func TestNotifyDecidesWhichDSNsAreSent(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.IsLocal = func(addr string) bool { return strings.HasSuffix(addr, "@sender.example") }
	})
	h.remote.setDecide(func(*delivery.Envelope, delivery.Recipient) delivery.Result { return permFail("no") })
	h.start()
	id := h.enqueue(env("alice@sender.example",
		delivery.Recipient{Addr: "never@remote.example", Notify: delivery.NotifyNever},
		delivery.Recipient{Addr: "success-only@remote.example", Notify: delivery.NotifySuccess},
		delivery.Recipient{Addr: "failure@remote.example", Notify: delivery.NotifyFailure},
		delivery.Recipient{Addr: "me@here.example", Local: true, Notify: delivery.NotifySuccess | delivery.NotifyFailure},
		delivery.Recipient{Addr: "quiet@here.example", Local: true},
	), testMessage)
	waitFor(t, "done", func() bool { return h.gone(id) && len(h.local.dsnCalls()) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(h.remote.dsnCalls()); n != 0 {
		t.Errorf("%d DSNs went remote; IsLocal says the sender is local", n)
	}
	var failure, success *parsedDSN
	for _, c := range h.local.dsnCalls() {
		checkDSNEnvelope(t, c, "alice@sender.example")
		d := parseDSN(t, c.body)
		switch d.header.Get("Subject") {
		case "Undelivered Mail Returned to Sender":
			failure = &d
		case "Delivery Status Notification (Success)":
			success = &d
		}
	}
	if failure == nil || success == nil {
		t.Fatalf("want one failure and one success DSN")
	}
	if len(failure.perRcpt) != 1 || failure.perRcpt[0].Get("Final-Recipient") != "rfc822; failure@remote.example" {
		t.Errorf("failure DSN covers %v, want only failure@remote.example", failure.perRcpt)
	}
	if len(success.perRcpt) != 1 {
		t.Fatalf("success DSN covers %v", success.perRcpt)
	}
	r := success.rcpt(t, "me@here.example")
	if r.Get("Action") != "delivered" || r.Get("Status") != "2.0.0" || r.Get("Diagnostic-Code") != "" {
		t.Errorf("success block %v", r)
	}
	if success.origType != "text/rfc822-headers" {
		t.Errorf("success DSN returns %s", success.origType)
	}
	env := h.local.dsnCalls()[0].env
	_ = env
}

func TestDSNForUTF8AddressesUsesGlobalTypes(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		mu.Lock()
		defer mu.Unlock()
		if env.From == "" {
			return delivery.Result{}
		}
		return permFail("no")
	})
	h.start()
	e := env("älice@sender.example", remote("bøb@remote.example"))
	e.SMTPUTF8 = true
	h.enqueue(e, testMessage)
	waitFor(t, "DSN", func() bool { return len(h.remote.dsnCalls()) == 1 })
	c := h.remote.dsnCalls()[0]
	if !c.env.SMTPUTF8 {
		t.Error("DSN to a UTF-8 address without SMTPUTF8")
	}
	raw := c.body
	mustContain(t, raw, "Content-Type: message/global-delivery-status")
	mustContain(t, raw, "Final-Recipient: utf-8; bøb@remote.example")
	mustContain(t, raw, "Content-Type: message/global\r\n")
}

func TestDSNThatCannotBeQueuedIsNotLost(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		if env.From == "" {
			return delivery.Result{}
		}
		return permFail("no")
	})
	// No tmp/: nothing can be written (as on a full disk).
	tmp := filepath.Join(h.dir, "tmp")
	id := h.enqueue(env("alice@sender.example", remote("bob@remote.example")), testMessage)
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	h.start()
	waitFor(t, "first attempt", func() bool { return len(h.remote.snapshot()) == 1 })
	time.Sleep(100 * time.Millisecond)
	if h.gone(id) || h.envelope(id).Rcpts[0].Status != delivery.StatusPending {
		t.Fatal("recipient failed although its DSN could not be queued")
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	h.advance(6 * time.Minute)
	waitFor(t, "bounced after the disk recovered", func() bool { return h.gone(id) && len(h.remote.dsnCalls()) == 1 })
}

// A remote recipient with NOTIFY=SUCCESS whose next hop took the message
// without offering DSN is reported "relayed" (RFC 3461 6.2.2); one whose
// next hop offers DSN is not reported by us, nor one without NOTIFY=SUCCESS.
func TestRelayedDSNForNextHopWithoutDSN(t *testing.T) {
	h := newHarness(t, nil)
	h.remote.setDecide(func(_ *delivery.Envelope, rc delivery.Recipient) delivery.Result {
		return delivery.Result{Status: "2.0.0", Diagnostic: "smtp; 250 ok", RemoteMTA: "dns; mx.remote.example", Relayed: !strings.HasPrefix(rc.Addr, "dsn-")}
	})
	h.start()
	id := h.enqueue(env("alice@sender.example",
		delivery.Recipient{Addr: "plain@remote.example", Notify: delivery.NotifySuccess},
		delivery.Recipient{Addr: "dsn-peer@remote.example", Notify: delivery.NotifySuccess},
		delivery.Recipient{Addr: "quiet@remote.example"},
	), testMessage)
	waitFor(t, "done", func() bool { return h.gone(id) && len(h.remote.dsnCalls()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(h.remote.dsnCalls()); n != 1 {
		t.Fatalf("%d DSNs, want 1", n)
	}
	d := parseDSN(t, h.remote.dsnCalls()[0].body)
	if d.header.Get("Subject") != "Delivery Status Notification (Success)" || len(d.perRcpt) != 1 {
		t.Fatalf("DSN %q covers %v", d.header.Get("Subject"), d.perRcpt)
	}
	r := d.rcpt(t, "plain@remote.example")
	if r.Get("Action") != "relayed" || r.Get("Status") != "2.0.0" || r.Get("Remote-MTA") != "dns; mx.remote.example" || r.Get("Diagnostic-Code") != "" {
		t.Errorf("relayed block %v", r)
	}
	if !strings.Contains(d.human, "<plain@remote.example>: relayed to mx.remote.example") {
		t.Errorf("human part:\n%s", d.human)
	}
}

// Soft bounce (Postfix's soft_bounce): a permanent failure is retried and
// an expired message stays, with no DSN and no busy loop after the
// lifetime; once it is turned off, the next attempt's failure bounces.
func TestSoftBounceKeepsWhatWouldBounce(t *testing.T) {
	var soft atomic.Bool
	soft.Store(true)
	h := newHarness(t, func(o *Options) {
		o.Schedule = []time.Duration{10 * time.Minute}
		o.Lifetime = 25 * time.Minute
		// Far off: a delay notice is a DSN too, and a slow machine's extra
		// clock step could reach an hour (seen once under load).
		o.DelayNotice = 100 * time.Hour
		o.SoftBounce = soft.Load
	})
	h.remote.setDecide(func(env *delivery.Envelope, r delivery.Recipient) delivery.Result {
		if env.From == "" {
			return delivery.Result{}
		}
		return permFail("no such user")
	})
	h.start()
	id := h.enqueue(env("alice@sender.example", remote("bob@remote.example")), testMessage)
	waitFor(t, "first attempt", func() bool { return h.envelope(id).Rcpts[0].Attempts == 1 })
	// Past the lifetime: still queued, still retried at the usual gaps.
	stepUntil(t, h, id, 12*time.Minute, 10, func() bool { return h.envelope(id).Rcpts[0].Attempts >= 5 })
	time.Sleep(100 * time.Millisecond)
	e := h.envelope(id)
	if h.gone(id) || e.Rcpts[0].Status != delivery.StatusPending || len(h.remote.dsnCalls()) != 0 {
		t.Fatalf("with soft bounce: gone %v, recipient %+v, %d DSNs", h.gone(id), e.Rcpts[0], len(h.remote.dsnCalls()))
	}
	if next := e.Rcpts[0].NextAttempt; !next.After(h.clock.Now()) {
		t.Fatalf("next attempt %v is not after now (%v): a retry loop", next, h.clock.Now())
	}
	attempts := e.Rcpts[0].Attempts
	time.Sleep(200 * time.Millisecond) // no clock step: no attempt
	if n := h.envelope(id).Rcpts[0].Attempts; n != attempts {
		t.Fatalf("%d attempts without the clock moving (was %d)", n, attempts)
	}
	soft.Store(false)
	stepUntil(t, h, id, 12*time.Minute, 3, func() bool { return h.gone(id) })
	waitFor(t, "the bounce", func() bool { return len(h.remote.dsnCalls()) == 1 })
	r := parseDSN(t, h.remote.dsnCalls()[0].body).rcpt(t, "bob@remote.example")
	if r.Get("Action") != "failed" || !strings.HasPrefix(r.Get("Status"), "5.") {
		t.Errorf("bounced recipient: %v", r)
	}
}
