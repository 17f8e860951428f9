package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// ParseRecord reads the TXT records of _smtp._tls.DOMAIN (RFC 8460
// section 3): the records that do not start with "v=TLSRPTv1;" are
// ignored, and unless exactly one is left the domain asks for no report.
// It returns the rua addresses: "mailto:" addresses and "https:" URLs.
func ParseRecord(txts []string) ([]string, error) {
	var rec string
	n := 0
	for _, t := range txts {
		if strings.HasPrefix(strings.TrimSpace(t), "v=TLSRPTv1;") || strings.TrimSpace(t) == "v=TLSRPTv1" {
			rec, n = t, n+1
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%d TLSRPT records", n)
	}
	var rua []string
	for _, field := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			switch {
			case strings.HasPrefix(strings.ToLower(u), "mailto:"):
				addr, err := url.PathUnescape(u[len("mailto:"):])
				if err != nil {
					continue
				}
				if a, err := mail.ParseAddress(addr); err == nil && !strings.ContainsAny(a.Address, "\r\n") {
					rua = append(rua, "mailto:"+a.Address)
				}
			case strings.HasPrefix(strings.ToLower(u), "https://"):
				if pu, err := url.Parse(u); err == nil && pu.Host != "" {
					rua = append(rua, pu.String())
				}
			}
		}
	}
	if len(rua) == 0 {
		return nil, errors.New("no usable rua")
	}
	return rua, nil
}

// Reporter is who the reports come from.
type Reporter struct {
	Organization string // "organization-name"
	Contact      string // "contact-info": an address
	Submitter    string // this host's domain, in the file name and header
}

// report is the JSON document (RFC 8460 section 4).
type report struct {
	Organization string `json:"organization-name"`
	DateRange    struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	} `json:"date-range"`
	Contact  string         `json:"contact-info"`
	ReportID string         `json:"report-id"`
	Policies []policyResult `json:"policies"`
}

// Build makes dr's report: the gzip'd JSON, its file name
// ("submitter!policy-domain!begin!end!id.json.gz", section 5.1) and its
// report ID.
func (rp Reporter) Build(dr DomainReport) (gz []byte, filename, id string, err error) {
	start, err := time.Parse(time.DateOnly, dr.Day)
	if err != nil {
		return nil, "", "", err
	}
	end := start.Add(24*time.Hour - time.Second)
	var r report
	r.Organization, r.Contact = rp.Organization, rp.Contact
	r.DateRange.Start, r.DateRange.End = start.Format(time.RFC3339), end.Format(time.RFC3339)
	var rnd [6]byte
	rand.Read(rnd[:])
	unique := hex.EncodeToString(rnd[:])
	r.ReportID = fmt.Sprintf("%s_%s_%s@%s", start.Format(time.RFC3339), dr.Domain, unique, rp.Submitter)
	r.Policies = dr.Policies
	js, err := json.Marshal(r)
	if err != nil {
		return nil, "", "", err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(js)
	if err := zw.Close(); err != nil {
		return nil, "", "", err
	}
	filename = fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", rp.Submitter, dr.Domain, start.Unix(), end.Unix(), unique)
	return b.Bytes(), filename, r.ReportID, nil
}

// Message is the report mail to "to" (section 5.3): multipart/report with
// report-type "tlsrpt", a short text part and the gzip'd JSON as
// application/tlsrpt+gzip, TLS-Report-Domain and TLS-Report-Submitter.
func (rp Reporter) Message(from, to string, dr DomainReport, gz []byte, filename, id string, now time.Time) []byte {
	var rnd [8]byte
	rand.Read(rnd[:])
	boundary := "=_tlsrpt_" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, to)
	fmt.Fprintf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", dr.Domain, rp.Submitter, id)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s.tlsrpt@%s>\r\n", now.Format(time.RFC1123Z), hex.EncodeToString(rnd[:]), rp.Submitter)
	fmt.Fprintf(&b, "TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\nAuto-Submitted: auto-generated\r\n", dr.Domain, rp.Submitter)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is an aggregate TLS report (RFC 8460) from %s for %s, %s.\r\n\r\n", rp.Submitter, dr.Domain, dr.Day)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n", boundary)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", filename)
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// Sender delivers the finished days' reports.
type Sender struct {
	Recorder  *Recorder
	Reporter  Reporter
	From      string                                                   // the reports' envelope and header sender
	LookupTXT func(ctx context.Context, name string) ([]string, error) // _smtp._tls.DOMAIN
	// Mail queues a report message to one address (through the queue,
	// so it is retried like any mail).
	Mail   func(ctx context.Context, from, to string, msg []byte) error
	HTTP   *http.Client // for https rua; nil: a client with a 30s timeout
	Logger *slog.Logger
	Now    func() time.Time
}

// SendFinished sends the report of every finished day to each domain that
// asks for one, then forgets those days. A domain without a TLSRPT record
// gets nothing; a failed HTTPS POST or queueing is logged (the report is
// not kept for another try: the next day's is on its way).
func (s *Sender) SendFinished(ctx context.Context) (sent int) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	days := map[string]bool{}
	for _, dr := range s.Recorder.Finished() {
		days[dr.Day] = true
		if ctx.Err() != nil {
			return sent
		}
		txts, err := s.LookupTXT(ctx, "_smtp._tls."+dr.Domain)
		if err != nil {
			continue // no record (NXDOMAIN) or no answer: no report
		}
		rua, err := ParseRecord(txts)
		if err != nil {
			continue
		}
		gz, filename, id, err := s.Reporter.Build(dr)
		if err != nil {
			log.Warn("tlsrpt: report not built", "domain", dr.Domain, "day", dr.Day, "err", err)
			continue
		}
		for _, dest := range rua {
			if to, ok := strings.CutPrefix(dest, "mailto:"); ok {
				err = s.Mail(ctx, s.From, to, s.Reporter.Message(s.From, to, dr, gz, filename, id, now()))
			} else {
				err = s.post(ctx, dest, gz)
			}
			if err != nil {
				log.Warn("tlsrpt: report not sent", "domain", dr.Domain, "day", dr.Day, "to", dest, "err", err)
				continue
			}
			sent++
			log.Info("tlsrpt: report sent", "domain", dr.Domain, "day", dr.Day, "to", dest, "report_id", id)
		}
	}
	for d := range days {
		if err := s.Recorder.Forget(d); err != nil {
			log.Warn("tlsrpt: day not forgotten", "day", d, "err", err)
		}
	}
	return sent
}

// post sends a report to an https rua (section 5.4).
func (s *Sender) post(ctx context.Context, u string, gz []byte) error {
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return nil
}
