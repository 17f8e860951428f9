package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postern/internal/atomicfile"
)

// DefaultInterval is the reporting period: a UTC day (section 7.2: at
// least daily).
const DefaultInterval = 24 * time.Hour

// ValidInterval reports whether d can be a reporting period: a whole
// number of hours dividing a day, so that periods start at UTC midnight.
func ValidInterval(d time.Duration) bool {
	return d >= time.Hour && d <= 24*time.Hour && d%time.Hour == 0 && (24*time.Hour)%d == 0
}

// sentFile holds the end (Unix seconds) of the last period reported.
const sentFile = "sent"

// Sender builds and sends the reports of finished periods.
type Sender struct {
	Dir      string // the Store's directory
	Reporter Reporter
	Interval time.Duration // 0: DefaultInterval
	// LookupTXT and IsNotFound serve the section 7.1 check.
	LookupTXT  func(ctx context.Context, name string) ([]string, error)
	IsNotFound func(error) bool
	// Mail queues one report message (through the queue, so that it is
	// retried and bounced like any mail).
	Mail   func(ctx context.Context, from, to string, msg []byte) error
	Logger *slog.Logger
	Now    func() time.Time
}

func (s *Sender) interval() time.Duration {
	if s.Interval <= 0 {
		return DefaultInterval
	}
	return s.Interval
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// PeriodOf returns the period holding t.
func (s *Sender) PeriodOf(t time.Time) (begin, end time.Time) {
	begin = t.UTC().Truncate(s.interval())
	return begin, begin.Add(s.interval())
}

// Period returns the period in progress (offset 0), or the one offset
// periods away (-1: the last finished one).
func (s *Sender) Period(offset int) (begin, end time.Time) {
	begin, _ = s.PeriodOf(s.now())
	begin = begin.Add(time.Duration(offset) * s.interval())
	return begin, begin.Add(s.interval())
}

// Build returns the reports of [begin, end), per policy domain (only
// domain when it is not "").
func (s *Sender) Build(begin, end time.Time, domain string) ([]*DomainReport, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	agg := NewAggregator(begin, end)
	skipped, err := ScanRows(s.Dir, begin, end, func(r Row) {
		if domain == "" || r.PolicyDomain == domain {
			agg.Add(r)
		}
	})
	if err != nil {
		return nil, err
	}
	if skipped > 0 {
		s.log().Warn("dmarc report: damaged rows skipped", "count", skipped, "begin", begin, "end", end)
	}
	return agg.Reports(), nil
}

// SendDue sends the reports of every period that ended since the last
// run, then remembers the last period sent and removes the day files no
// period still needs. It returns how many messages were queued.
func (s *Sender) SendDue(ctx context.Context) (int, error) {
	last, _ := s.endOfLastSent()
	if last.IsZero() {
		first, ok := firstDay(s.Dir)
		if !ok {
			return 0, nil
		}
		last = first
	}
	current, _ := s.PeriodOf(s.now())
	sent := 0
	for b := last; b.Before(current); b = b.Add(s.interval()) {
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		n, err := s.SendPeriod(ctx, b, b.Add(s.interval()), "")
		sent += n
		if err != nil {
			return sent, err
		}
		if err := s.setLastSent(b.Add(s.interval())); err != nil {
			return sent, err
		}
	}
	removeBefore(s.Dir, current)
	return sent, nil
}

// SendPeriod sends the reports of [begin, end) (only domain's when it is
// not ""). A report that cannot be built or sent to one address is logged
// and the others go on; err is only for the files that could not be read.
func (s *Sender) SendPeriod(ctx context.Context, begin, end time.Time, domain string) (int, error) {
	reports, err := s.Build(begin, end, domain)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, dr := range reports {
		sent += s.sendDomain(ctx, dr)
	}
	return sent, nil
}

func (s *Sender) sendDomain(ctx context.Context, dr *DomainReport) int {
	log := s.log().With("domain", dr.Domain, "begin", dr.Begin.Unix(), "end", dr.End.Unix())
	id := ReportID(dr, s.Reporter.Domain)
	doc, err := s.Reporter.Feedback(dr, id).XML()
	var gz []byte
	if err == nil {
		gz, err = Gzip(doc)
	}
	if err != nil {
		log.Error("dmarc report: not built", "err", err)
		return 0
	}
	sent := 0
	seen := map[string]bool{}
	for _, raw := range dr.RUA {
		u, err := ParseURI(raw)
		if err != nil || seen[strings.ToLower(u.Address)] {
			continue
		}
		seen[strings.ToLower(u.Address)] = true
		if u.MaxSize > 0 && int64(len(gz)) > u.MaxSize {
			// Section 6.2: a report larger than the limit is not sent.
			log.Warn("dmarc report: larger than the destination's limit; not sent", "to", u.Address, "size", len(gz), "limit", u.MaxSize)
			continue
		}
		if External(dr.Domain, u.Domain) {
			if err := VerifyExternal(ctx, s.LookupTXT, s.IsNotFound, dr.Domain, u.Domain); err != nil {
				log.Warn("dmarc report: external destination not verified; not sent (RFC 7489 section 7.1)", "to", u.Address, "err", err)
				continue
			}
		}
		msg := s.Reporter.Message(s.Reporter.Email, u.Address, dr, id, gz, s.now())
		if err := s.Mail(ctx, s.Reporter.Email, u.Address, msg); err != nil {
			log.Warn("dmarc report: not queued", "to", u.Address, "err", err)
			continue
		}
		sent++
		log.Info("dmarc report: queued", "to", u.Address, "report_id", id, "records", len(dr.Records), "messages", dr.Messages)
	}
	return sent
}

// ReportID is unique per report: the period, the domain and random bits.
func ReportID(dr *DomainReport, receiver string) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	return fmt.Sprintf("%d.%s.%s@%s", dr.Begin.Unix(), dr.Domain, hex.EncodeToString(rnd[:]), receiver)
}

// Message is the report mail (section 7.2.1.1): the Subject names the
// domain, the submitter and the report ID; the gzip'd XML is an
// application/gzip attachment named as Filename says.
func (rp Reporter) Message(from, to string, dr *DomainReport, id string, gz []byte, now time.Time) []byte {
	var rnd [8]byte
	rand.Read(rnd[:])
	boundary := "=_dmarc_" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, to)
	fmt.Fprintf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", dr.Domain, rp.Domain, id)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s.dmarc@%s>\r\nAuto-Submitted: auto-generated\r\n", now.Format(time.RFC1123Z), hex.EncodeToString(rnd[:]), rp.Domain)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is a DMARC aggregate report (RFC 7489) from %s for %s,\r\n", rp.OrgName, dr.Domain)
	fmt.Fprintf(&b, "%s to %s UTC: %d messages in %d records.\r\n\r\n", dr.Begin.UTC().Format(time.RFC3339), dr.End.UTC().Format(time.RFC3339), dr.Messages, len(dr.Records))
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n", boundary)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", rp.Filename(dr))
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

func (s *Sender) endOfLastSent() (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, sentFile))
	if err != nil {
		return time.Time{}, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, errors.New("dmarc report: damaged sent file")
	}
	return time.Unix(n, 0).UTC(), nil
}

func (s *Sender) setLastSent(t time.Time) error {
	return atomicfile.Write(filepath.Join(s.Dir, sentFile), []byte(strconv.FormatInt(t.Unix(), 10)+"\n"), 0o640)
}
