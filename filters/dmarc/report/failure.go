package report

// DMARC failure reports (RFC 7489 section 7.3) in the Authentication
// Failure Reporting Format (RFC 6591, an extension of ARF, RFC 5965).
//
// The dmarc check hands a FailureSender each message that failed DMARC
// and whose policy asks for failure reports (ruf=, filtered by fo=); the
// hand-over is a non-blocking send on a bounded channel, so the SMTP reply
// never waits for it. The sender's worker then, per message: counts it
// against the per-domain and global hourly caps in the state store (a
// flood of forged mail must not turn us into a backscatter cannon: what
// is over a cap is dropped and counted), checks each ruf= address (mailto:
// only, the section 7.1 authorization for another domain, the "!SIZE"
// limit of section 6.2), and queues the report by mail with the null
// reverse path, so that a report that cannot be delivered is dropped
// rather than bounced.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/filters/dmarc"
	"postern/filters/state"
)

// Default caps of failure reports, per hour.
const (
	DefaultFailurePerDomain = 10
	DefaultFailureGlobal    = 200
	// DefaultFailureQueue bounds the failures waiting for the worker.
	DefaultFailureQueue = 256
)

// Reasons a failure report is dropped, the label of the Dropped counter.
const (
	DropDomainCap = "domain_cap"
	DropGlobalCap = "global_cap"
	DropQueueFull = "queue_full"
	DropState     = "state_error"
)

// FailureConfig is what a failure report is sent with; it is read for
// each report, so that a reload applies at once.
type FailureConfig struct {
	// Reporter's Email is the From of the reports, Domain the authserv-id
	// and the Message-ID domain.
	Reporter Reporter
	// PerDomain and Global are the hourly caps: reports per policy domain
	// and in all.
	PerDomain, Global int
}

// FailureSender sends failure reports off the SMTP path. Build it with
// StartFailureSender.
type FailureSender struct {
	Config func() FailureConfig
	// Store counts the reports per hour (shared by every gateway of a
	// cluster on Redis).
	Store state.Store
	// LookupTXT and IsNotFound serve the section 7.1 check.
	LookupTXT  func(ctx context.Context, name string) ([]string, error)
	IsNotFound func(error) bool
	// Mail queues one report message; from is "<>", the null reverse path.
	Mail func(ctx context.Context, from, to string, msg []byte) error
	// Dropped counts the reports not sent because of a cap, a full queue or
	// a state store error, by reason; nil: not counted.
	Dropped   *prometheus.CounterVec
	Logger    *slog.Logger
	Now       func() time.Time
	QueueSize int // 0: DefaultFailureQueue

	queue  chan dmarc.Failure
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	logged map[string]int64 // reason and domain -> the hour last logged
}

// StartFailureSender starts s's worker; Close stops it.
func StartFailureSender(s *FailureSender) *FailureSender {
	n := s.QueueSize
	if n <= 0 {
		n = DefaultFailureQueue
	}
	s.queue = make(chan dmarc.Failure, n)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		for {
			select {
			case <-ctx.Done():
				return
			case f := <-s.queue:
				s.Send(ctx, f)
			}
		}
	}()
	return s
}

// Close stops the worker; the failures still waiting are dropped (they
// are a courtesy, not mail anyone is owed).
func (s *FailureSender) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// RecordDMARCFailure implements dmarc.FailureRecorder: it never blocks.
func (s *FailureSender) RecordDMARCFailure(f dmarc.Failure) {
	select {
	case s.queue <- f:
	default:
		s.drop(DropQueueFull, "", "the failure report queue is full")
	}
}

func (s *FailureSender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *FailureSender) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// drop counts a dropped report and logs it once per hour per reason and
// domain, so that a flood makes one line, not thousands.
func (s *FailureSender) drop(reason, domain, why string) {
	if s.Dropped != nil {
		s.Dropped.WithLabelValues(reason).Inc()
	}
	hour := s.now().Unix() / 3600
	key := reason + " " + domain
	s.mu.Lock()
	if s.logged == nil {
		s.logged = make(map[string]int64)
	}
	first := s.logged[key] != hour
	if first {
		if len(s.logged) > 1000 {
			clear(s.logged) // old windows; a new line each is acceptable
		}
		s.logged[key] = hour
	}
	s.mu.Unlock()
	if first {
		s.log().Warn("dmarc failure report: dropped; further drops this hour are counted, not logged", "reason", reason, "domain", domain, "why", why)
	}
}

// allow counts one report about domain against the hourly caps and says
// whether it may go. The domain's count is checked first, so that one
// forged domain cannot use up the global cap alone. A store error
// refuses: without a count there is no cap.
func (s *FailureSender) allow(ctx context.Context, domain string, cfg FailureConfig) bool {
	if s.Store == nil {
		s.drop(DropState, domain, "no state store")
		return false
	}
	hour := strconv.FormatInt(s.now().Unix()/3600, 10)
	n, err := s.Store.Incr(ctx, "dmarcruf:d:"+hour+":"+domain, 1, 2*time.Hour)
	if err != nil {
		s.drop(DropState, domain, err.Error())
		return false
	}
	if n > int64(cfg.PerDomain) {
		s.drop(DropDomainCap, domain, fmt.Sprintf("more than %d reports this hour", cfg.PerDomain))
		return false
	}
	n, err = s.Store.Incr(ctx, "dmarcruf:g:"+hour, 1, 2*time.Hour)
	if err != nil {
		s.drop(DropState, domain, err.Error())
		return false
	}
	if n > int64(cfg.Global) {
		s.drop(DropGlobalCap, "", fmt.Sprintf("more than %d reports this hour", cfg.Global))
		return false
	}
	return true
}

// Send reports f to each usable ruf= address of its policy, within the
// caps, and returns how many messages were queued. The worker calls it;
// tests may too.
func (s *FailureSender) Send(ctx context.Context, f dmarc.Failure) int {
	ev := f.Evaluation
	domain := ev.RecordDomain
	log := s.log().With("domain", domain, "source_ip", f.SourceIP.String())
	if isFeedbackReport(f.Header) {
		// A report about a report (a DSN, another receiver's ARF) is a
		// loop waiting to happen between two reporting servers.
		log.Info("dmarc failure report: not sent about a feedback report")
		return 0
	}
	var uris []URI
	seen := map[string]bool{}
	for _, raw := range ev.Record.ReportFailure {
		u, err := ParseURI(raw)
		if err != nil || seen[strings.ToLower(u.Address)] {
			continue
		}
		seen[strings.ToLower(u.Address)] = true
		uris = append(uris, u)
	}
	if len(uris) == 0 {
		return 0
	}
	cfg := s.Config()
	if !s.allow(ctx, domain, cfg) {
		return 0
	}
	sent := 0
	for _, u := range uris {
		if External(domain, u.Domain) {
			if err := VerifyExternal(ctx, s.LookupTXT, s.IsNotFound, domain, u.Domain); err != nil {
				log.Warn("dmarc failure report: external destination not verified; not sent (RFC 7489 section 7.1)", "to", u.Address, "err", err)
				continue
			}
		}
		msg := FailureMessage(cfg.Reporter, u.Address, f, s.now())
		if u.MaxSize > 0 && int64(len(msg)) > u.MaxSize {
			// Section 6.2: a report larger than the limit is not sent.
			log.Warn("dmarc failure report: larger than the destination's limit; not sent", "to", u.Address, "size", len(msg), "limit", u.MaxSize)
			continue
		}
		if err := s.Mail(ctx, "<>", u.Address, msg); err != nil {
			log.Warn("dmarc failure report: not queued", "to", u.Address, "err", err)
			continue
		}
		sent++
		log.Info("dmarc failure report: queued", "to", u.Address)
	}
	return sent
}

// isFeedbackReport reports whether a header section is a multipart/report
// message's (a DSN, an ARF or TLS report).
func isFeedbackReport(header []byte) bool {
	for _, line := range bytes.Split(header, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(strings.TrimSpace(string(name)), "Content-Type") &&
			strings.HasPrefix(strings.ToLower(strings.TrimSpace(string(value))), "multipart/report") {
			return true
		}
	}
	return false
}

// deliveryResult maps the disposition applied to RFC 6591 section 3.2's
// Delivery-Result: a rejected message was refused in the session, a
// quarantined one filed as spam.
func deliveryResult(p dmarc.Policy) string {
	switch p {
	case dmarc.PolicyReject:
		return "reject"
	case dmarc.PolicyQuarantine:
		return "spam"
	default:
		return "delivered"
	}
}

// identityAlignment is RFC 7489 section 7.3.1's Identity-Alignment: the
// identifiers in the author's domain, or "none".
func identityAlignment(f dmarc.Failure) string {
	var ids []string
	if f.DKIMAlignedDomain {
		ids = append(ids, "dkim")
	}
	if f.SPFAlignedDomain {
		ids = append(ids, "spf")
	}
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// oneLine keeps a value that came from outside on its header line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// FailureMessage is the report (RFC 6591 section 3, RFC 5965 section 2):
// a multipart/report of type feedback-report with a human-readable part,
// the machine-readable message/feedback-report, and the original
// message's header section as text/rfc822-headers. The body is never
// included: it is the recipient's, not the domain's.
func FailureMessage(rp Reporter, to string, f dmarc.Failure, now time.Time) []byte {
	ev := f.Evaluation
	var rnd [8]byte
	rand.Read(rnd[:])
	boundary := "=_dmarcfail_" + hex.EncodeToString(rnd[:])
	source := "unknown"
	if f.SourceIP.IsValid() {
		source = f.SourceIP.Unmap().String()
	}
	mailFrom := "<" + oneLine(f.MailFrom) + ">"
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", rp.Email, to)
	fmt.Fprintf(&b, "Subject: DMARC failure report for %s from %s\r\n", oneLine(ev.FromDomain), source)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s.dmarcfail@%s>\r\nAuto-Submitted: auto-generated\r\n", now.Format(time.RFC1123Z), hex.EncodeToString(rnd[:]), rp.Domain)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)

	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is a DMARC failure report (RFC 7489 section 7.3, RFC 6591) from %s.\r\n", rp.Domain)
	fmt.Fprintf(&b, "A message with From domain %s, received from %s at %s,\r\n", asciiOnly(ev.FromDomain), source, f.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "failed DMARC under the policy of %s (p=%s); it was %s.\r\n", ev.RecordDomain, ev.Policy, map[string]string{"reject": "rejected", "spam": "quarantined", "delivered": "delivered"}[deliveryResult(ev.Disposition)])
	b.WriteString("Its header section follows; its body is not included.\r\n\r\n")

	fmt.Fprintf(&b, "--%s\r\nContent-Type: message/feedback-report\r\n\r\n", boundary)
	b.WriteString("Feedback-Type: auth-failure\r\nUser-Agent: Postern\r\nVersion: 1\r\nAuth-Failure: dmarc\r\n")
	results := make([]string, len(f.AuthResults))
	for i, r := range f.AuthResults {
		results[i] = oneLine(r)
	}
	fmt.Fprintf(&b, "Authentication-Results: %s; %s\r\n", rp.Domain, strings.Join(results, ";\r\n\t"))
	fmt.Fprintf(&b, "Original-Mail-From: %s\r\n", mailFrom)
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", f.Time.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Source-IP: %s\r\n", source)
	fmt.Fprintf(&b, "Reported-Domain: %s\r\n", oneLine(ev.FromDomain))
	fmt.Fprintf(&b, "Identity-Alignment: %s\r\n", identityAlignment(f))
	fmt.Fprintf(&b, "Delivery-Result: %s\r\n\r\n", deliveryResult(ev.Disposition))

	cte := "7bit"
	if asciiOnly(string(f.Header)) != string(f.Header) {
		cte = "8bit"
	}
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: %s\r\n\r\n", boundary, cte)
	b.Write(f.Header)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

// asciiOnly replaces what is not printable ASCII (but keeps line ends).
func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' || r >= ' ' && r < 0x7f {
			return r
		}
		return '?'
	}, s)
}
