package report

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"postern/filters/dmarc"
	"postern/filters/dns"
	"postern/filters/dns/dnstest"
	"postern/filters/state"
	"postern/filters/state/statetest"
)

const failHeader = "Received: from mta.forger.example\r\nFrom: Bank <service@example.org>\r\nTo: bob@example.net\r\nSubject: your account\r\nMessage-ID: <1@forger.example>\r\n"

// failure is a message from 203.0.113.7 that failed DMARC for
// example.org, refused by p=reject, with the ruf= addresses given.
func failure(domain string, ruf ...string) dmarc.Failure {
	rec, _ := dmarc.ParseRecord("v=DMARC1; p=reject")
	rec.ReportFailure = ruf
	return dmarc.Failure{
		Observation: dmarc.Observation{
			Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), SourceIP: netip.MustParseAddr("203.0.113.7"),
			EnvelopeFrom: "forger.example", SPFDomain: "forger.example", SPFScope: "mfrom", SPFResult: "pass",
			Evaluation: dmarc.Evaluation{Status: dmarc.Fail, FromDomain: domain, RecordDomain: domain, Record: rec, Policy: dmarc.PolicyReject, Disposition: dmarc.PolicyReject},
		},
		MailFrom:    "x@forger.example",
		Header:      []byte(strings.ReplaceAll(failHeader, "example.org", domain)),
		AuthResults: []string{"spf=pass smtp.mailfrom=forger.example", "dmarc=fail (p=reject dis=reject) header.from=" + domain},
	}
}

// arfParts splits a report into its top header and its three parts.
func arfParts(t *testing.T, raw []byte) (*mail.Message, []textproto.MIMEHeader, [][]byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "feedback-report" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	var heads []textproto.MIMEHeader
	var bodies [][]byte
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		heads, bodies = append(heads, p.Header), append(bodies, b)
	}
	return m, heads, bodies
}

// TestFailureMessage: the report is RFC 6591's: multipart/report of type
// feedback-report; a text part; a message/feedback-report with the
// auth-failure fields; the original header section as
// text/rfc822-headers, and nothing of the body.
func TestFailureMessage(t *testing.T) {
	f := failure("example.org", "mailto:ruf@example.org")
	f.SPFAlignedDomain = false
	f.DKIMAlignedDomain = true
	raw := FailureMessage(Reporter{Email: "dmarc-reports@mx.example.net", Domain: "mx.example.net"}, "ruf@example.org", f, time.Now())
	m, heads, bodies := arfParts(t, raw)
	if m.Header.Get("From") != "<dmarc-reports@mx.example.net>" || m.Header.Get("To") != "<ruf@example.org>" || m.Header.Get("Auto-Submitted") != "auto-generated" ||
		!strings.Contains(m.Header.Get("Subject"), "example.org") {
		t.Errorf("header %v", m.Header)
	}
	if len(heads) != 3 || !strings.HasPrefix(heads[0].Get("Content-Type"), "text/plain") || heads[1].Get("Content-Type") != "message/feedback-report" || heads[2].Get("Content-Type") != "text/rfc822-headers" {
		t.Fatalf("parts %v", heads)
	}
	fb, err := textproto.NewReader(bufioReader(bodies[1])).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("feedback report: %v\n%s", err, bodies[1])
	}
	for k, want := range map[string]string{
		"Feedback-Type": "auth-failure", "Version": "1", "User-Agent": "Postern", "Auth-Failure": "dmarc",
		"Original-Mail-From": "<x@forger.example>", "Arrival-Date": "Wed, 04 Mar 2026 05:06:07 +0000", "Source-IP": "203.0.113.7",
		"Reported-Domain": "example.org", "Identity-Alignment": "dkim", "Delivery-Result": "reject",
		"Authentication-Results": "mx.example.net; spf=pass smtp.mailfrom=forger.example; dmarc=fail (p=reject dis=reject) header.from=example.org",
	} {
		if got := strings.Join(strings.Fields(fb.Get(k)), " "); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if string(bodies[2]) != failHeader {
		t.Errorf("headers part %q", bodies[2])
	}
	if bytes.Contains(raw, []byte("Hello")) {
		t.Errorf("body leaked")
	}

	// The null sender, a quarantined message, no aligned identifier.
	f.MailFrom, f.Evaluation.Disposition, f.DKIMAlignedDomain = "", dmarc.PolicyQuarantine, false
	_, _, bodies = arfParts(t, FailureMessage(Reporter{Email: "r@mx.example.net", Domain: "mx.example.net"}, "ruf@example.org", f, time.Now()))
	fb, _ = textproto.NewReader(bufioReader(bodies[1])).ReadMIMEHeader()
	if fb.Get("Original-Mail-From") != "<>" || fb.Get("Delivery-Result") != "spam" || fb.Get("Identity-Alignment") != "none" {
		t.Errorf("null sender, quarantine: %v", fb)
	}
}

type rufMail struct {
	from, to string
	msg      []byte
}

type outbox struct {
	mu   sync.Mutex
	sent []rufMail
}

func (o *outbox) mail(_ context.Context, from, to string, msg []byte) error {
	o.mu.Lock()
	o.sent = append(o.sent, rufMail{from, to, msg})
	o.mu.Unlock()
	return nil
}

func (o *outbox) to() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, m := range o.sent {
		out = append(out, m.to)
	}
	return out
}

func failureSender(t *testing.T, st state.Store, r *dns.Resolver, perDomain, global int, box *outbox, logs io.Writer) (*FailureSender, *prometheus.CounterVec) {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped"}, []string{"reason"})
	if logs == nil {
		logs = io.Discard
	}
	s := &FailureSender{
		Config: func() FailureConfig {
			return FailureConfig{Reporter: Reporter{Email: "dmarc-reports@mx.example.net", Domain: "mx.example.net"}, PerDomain: perDomain, Global: global}
		},
		Store: st, Mail: box.mail, Dropped: dropped, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	if r != nil {
		s.LookupTXT, s.IsNotFound = r.LookupTXT, dns.IsNotFound
	}
	return s, dropped
}

// TestFailureDestinations: a ruf= address in the policy domain gets the
// report without a DNS question; one in another domain only when that
// domain publishes the RFC 7489 section 7.1 authorization; a "!SIZE"
// limit smaller than the report keeps it from that address (section
// 6.2); repeated and non-mailto addresses are skipped; the envelope
// sender is null.
func TestFailureDestinations(t *testing.T) {
	zone := dnstest.NewZone().Add(
		`example.org._report._dmarc.reports.test. 300 IN TXT "v=DMARC1"`,
		`example.org._report._dmarc.twice.test. 300 IN TXT "v=DMARC1"`,
		`example.org._report._dmarc.twice.test. 300 IN TXT "v=DMARC1; x=y"`,
	)
	srv := dnstest.Start(t, zone)
	r, err := dns.New(dns.Options{Servers: []string{srv.Addr}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	box := &outbox{}
	s, _ := failureSender(t, statetest.Embedded(t), r, 100, 100, box, nil)
	f := failure("example.org",
		"mailto:ruf@example.org", "mailto:RUF@example.org", "mailto:sub@mail.example.org!1m",
		"mailto:ext@reports.test", "mailto:nope@unauthorized.test", "mailto:two@twice.test",
		"mailto:small@example.org!500", "https://example.org/ruf")
	if n := s.Send(context.Background(), f); n != 3 {
		t.Errorf("sent %d, want 3: %v", n, box.to())
	}
	if got := strings.Join(box.to(), " "); got != "ruf@example.org sub@mail.example.org ext@reports.test" {
		t.Errorf("sent to %s", got)
	}
	for _, m := range box.sent {
		if m.from != "<>" {
			t.Errorf("envelope sender %q, want the null sender", m.from)
		}
	}
	if srv.Queries("example.org._report._dmarc.example.org.", 16) != 0 || srv.Queries("example.org._report._dmarc.mail.example.org.", 16) != 0 {
		t.Errorf("the policy domain's own addresses were checked in DNS")
	}
	if srv.Queries("example.org._report._dmarc.unauthorized.test.", 16) != 1 {
		t.Errorf("the external address was not checked")
	}

	// A report about a report is never sent.
	box.sent = nil
	f.Header = append(f.Header, "Content-Type: multipart/report; report-type=feedback-report\r\n"...)
	if n := s.Send(context.Background(), f); n != 0 {
		t.Errorf("a report about a report was sent")
	}
}

// TestFailureCaps: at most PerDomain reports per policy domain and Global
// in all per hour, counted in the state store (bbolt and Redis); the rest
// are dropped, counted by reason, and logged once per hour and domain.
func TestFailureCaps(t *testing.T) {
	statetest.Each(t, func(t *testing.T, st state.Store) {
		box := &outbox{}
		var logs bytes.Buffer
		s, dropped := failureSender(t, st, nil, 2, 3, box, &logs)
		now := time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)
		s.Now = func() time.Time { return now }
		ctx := context.Background()
		for range 4 {
			s.Send(ctx, failure("example.org", "mailto:ruf@example.org"))
		}
		for range 2 {
			s.Send(ctx, failure("example.com", "mailto:ruf@example.com"))
		}
		if got := strings.Join(box.to(), " "); got != "ruf@example.org ruf@example.org ruf@example.com" {
			t.Errorf("sent to %s", got)
		}
		if d, g := counted(dropped, (DropDomainCap)), counted(dropped, (DropGlobalCap)); d != 2 || g != 1 {
			t.Errorf("dropped: domain cap %v, global cap %v; want 2, 1", d, g)
		}
		if n := strings.Count(logs.String(), "dropped"); n != 2 {
			t.Errorf("%d drop lines logged, want 2 (once per reason and domain):\n%s", n, logs.String())
		}
		// The next hour starts afresh.
		now = now.Add(time.Hour)
		s.Send(ctx, failure("example.org", "mailto:ruf@example.org"))
		if len(box.to()) != 4 {
			t.Errorf("a new hour: %v", box.to())
		}
	})
	// Without a working store there is no count, so nothing is sent.
	box := &outbox{}
	s, dropped := failureSender(t, statetest.Unavailable(t), nil, 2, 3, box, nil)
	s.Send(context.Background(), failure("example.org", "mailto:ruf@example.org"))
	if len(box.to()) != 0 || counted(dropped, (DropState)) != 1 {
		t.Errorf("store down: sent %v", box.to())
	}
}

// TestFailureSenderQueue: handing over never blocks the SMTP path: when
// the worker is busy and the queue full, the failure is dropped and
// counted; Close ends the worker.
func TestFailureSenderQueue(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	box := &outbox{}
	s, dropped := failureSender(t, statetest.Embedded(t), nil, 100, 100, box, nil)
	s.Mail = func(ctx context.Context, from, to string, msg []byte) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return box.mail(ctx, from, to, msg)
	}
	s.QueueSize = 1
	StartFailureSender(s)
	s.RecordDMARCFailure(failure("example.org", "mailto:ruf@example.org"))
	<-started // the worker holds one
	done := make(chan struct{})
	go func() {
		s.RecordDMARCFailure(failure("example.org", "mailto:ruf@example.org")) // queued
		s.RecordDMARCFailure(failure("example.org", "mailto:ruf@example.org")) // dropped
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RecordDMARCFailure blocked")
	}
	if counted(dropped, (DropQueueFull)) != 1 {
		t.Errorf("queue full not counted")
	}
	close(release)
	<-started
	s.Close()
	if len(box.to()) != 2 {
		t.Errorf("sent %v, want 2", box.to())
	}
}

// bufioReader reads a part's fields; the blank line that ends them is the
// part's end.
func bufioReader(b []byte) *bufio.Reader {
	return bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n")))
}

func counted(c *prometheus.CounterVec, reason string) float64 {
	var m dto.Metric
	if err := c.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
