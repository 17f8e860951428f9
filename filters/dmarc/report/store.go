// Package report is DMARC aggregate reporting (RFC 7489 section 7.2) for
// the receiving side: the dmarc filter hands it one Observation per
// evaluated message whose author domain publishes a policy with a mailto:
// rua address; the Store appends a compact JSON line for it to a file per
// UTC day; once a reporting period is over the Sender groups the lines per
// policy domain and per row (source IP, disposition, results), writes the
// XML of Appendix C, gzips it and queues it by mail to each rua address,
// after the external-destination check of section 7.1 for addresses
// outside the policy domain.
//
// The SMTP path pays one write(2) per evaluated message and no fsync: a
// crash of the process loses nothing (the data is in the kernel), a crash
// of the machine may lose the last seconds of a day's statistics, which a
// report can afford and the session's latency cannot.
package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"postern/filters/dmarc"
)

// Row is one evaluated message as the Store keeps it: one JSON line.
// Short keys keep the daily files small.
type Row struct {
	Time         int64    `json:"t"`            // Unix seconds
	SourceIP     string   `json:"ip"`           // client address
	HeaderFrom   string   `json:"hf"`           // RFC5322.From domain
	EnvelopeFrom string   `json:"ef,omitempty"` // MAIL FROM domain
	PolicyDomain string   `json:"pd"`           // where the record was found
	SPFDomain    string   `json:"sd,omitempty"` // domain SPF checked
	SPFScope     string   `json:"ss,omitempty"` // mfrom or helo
	SPFResult    string   `json:"sr"`           // none, pass, fail, ...
	DKIM         []string `json:"dk,omitempty"` // RESULT/DOMAIN/SELECTOR
	SPFAligned   bool     `json:"sa,omitempty"` // policy_evaluated spf=pass
	DKIMAligned  bool     `json:"da,omitempty"` // policy_evaluated dkim=pass
	Disposition  string   `json:"dis"`          // none, quarantine, reject
	Override     string   `json:"ov,omitempty"` // PolicyOverrideType
	Comment      string   `json:"oc,omitempty"` // the override's comment
	Published    Policy   `json:"pp"`           // the record as published
	RUA          []string `json:"rua"`          // its rua= URIs
}

// Policy is the published policy of a row's record (Appendix C
// PolicyPublishedType).
type Policy struct {
	P     string `json:"p"`
	SP    string `json:"sp,omitempty"`
	ADKIM string `json:"adkim"`
	ASPF  string `json:"aspf"`
	Pct   int    `json:"pct"`
	FO    string `json:"fo,omitempty"`
}

// Policy override types (Appendix C PolicyOverrideType).
const (
	OverrideSampledOut       = "sampled_out"
	OverrideTrustedForwarder = "trusted_forwarder"
	OverrideLocalPolicy      = "local_policy"
)

// RowOf turns an observation into the row kept on disk. ok is false when
// there is nothing to report to: no policy found, or no mailto: rua.
func RowOf(o dmarc.Observation) (Row, bool) {
	ev := o.Evaluation
	if ev.RecordDomain == "" {
		return Row{}, false
	}
	var rua []string
	for _, u := range ev.Record.ReportAggregate {
		if _, err := ParseURI(u); err == nil {
			rua = append(rua, u)
		}
	}
	if len(rua) == 0 {
		return Row{}, false
	}
	r := Row{
		Time:         o.Time.Unix(),
		HeaderFrom:   ev.FromDomain,
		EnvelopeFrom: o.EnvelopeFrom,
		PolicyDomain: ev.RecordDomain,
		SPFDomain:    strings.ToLower(o.SPFDomain),
		SPFScope:     o.SPFScope,
		SPFResult:    o.SPFResult,
		SPFAligned:   ev.SPFAligned,
		DKIMAligned:  ev.DKIMAligned,
		Disposition:  string(ev.Disposition),
		RUA:          rua,
		Published: Policy{
			P: string(ev.Record.Policy), SP: string(ev.Record.SubdomainPolicy),
			ADKIM: string(rune(ev.Record.DKIMAlignment)), ASPF: string(rune(ev.Record.SPFAlignment)),
			Pct: ev.Record.Percent, FO: ev.Record.FailureOptions,
		},
	}
	if o.SourceIP.IsValid() {
		r.SourceIP = o.SourceIP.Unmap().String()
	}
	if r.Disposition == "" {
		r.Disposition = string(dmarc.PolicyNone)
	}
	for _, s := range o.DKIM {
		r.DKIM = append(r.DKIM, s.Result+"/"+s.Domain+"/"+s.Selector)
	}
	switch {
	case ev.Override == dmarc.OverrideARC:
		r.Override, r.Comment = OverrideTrustedForwarder, "arc=pass; first sealer "+o.ARCSealer+" is trusted"
	case ev.Override == dmarc.OverrideLocal:
		r.Override = OverrideLocalPolicy
	case ev.SampledOut:
		r.Override, r.Comment = OverrideSampledOut, fmt.Sprintf("pct=%d", ev.Record.Percent)
	}
	return r, true
}

// maxRowBytes bounds one line read back (a row is a few hundred bytes;
// 16 rua URIs and many signatures stay well under).
const maxRowBytes = 16 << 10

// ParseRow reads one line of a day file. Lines that are not a row are an
// error: the caller skips them.
func ParseRow(line []byte) (Row, error) {
	if len(line) > maxRowBytes {
		return Row{}, errors.New("dmarc report: row too long")
	}
	var r Row
	if err := json.Unmarshal(line, &r); err != nil {
		return Row{}, fmt.Errorf("dmarc report: bad row: %w", err)
	}
	if r.PolicyDomain == "" || r.HeaderFrom == "" || r.Time <= 0 {
		return Row{}, errors.New("dmarc report: row without a policy domain, From domain or time")
	}
	if r.SourceIP != "" {
		if _, err := netip.ParseAddr(r.SourceIP); err != nil {
			return Row{}, fmt.Errorf("dmarc report: bad source IP %q", r.SourceIP)
		}
	}
	switch r.Disposition {
	case "none", "quarantine", "reject":
	default:
		return Row{}, fmt.Errorf("dmarc report: bad disposition %q", r.Disposition)
	}
	return r, nil
}

// Store appends rows to DIR/YYYY-MM-DD.jsonl, one file per UTC day. It is
// safe for concurrent use.
type Store struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	day     string
	f       *os.File
	lastErr time.Time
}

// OpenStore makes dir if needed. log may be nil.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dmarc report: %w", err)
	}
	return &Store{dir: dir, log: log}, nil
}

// Dir is where the day files are.
func (s *Store) Dir() string { return s.dir }

// RecordDMARC implements dmarc.Recorder.
func (s *Store) RecordDMARC(o dmarc.Observation) {
	r, ok := RowOf(o)
	if !ok {
		return
	}
	if err := s.Append(r); err != nil {
		s.mu.Lock()
		// One warning a minute at most: a full disk must not flood the log.
		if time.Since(s.lastErr) > time.Minute {
			s.lastErr = time.Now()
			s.log.Warn("dmarc report: row not kept", "err", err)
		}
		s.mu.Unlock()
	}
}

// Append writes r to its day's file in one write (O_APPEND: lines from
// concurrent sessions never interleave).
func (s *Store) Append(r Row) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	day := time.Unix(r.Time, 0).UTC().Format(time.DateOnly)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.day != day {
		if s.f != nil {
			s.f.Close()
		}
		s.f = nil
		f, err := os.OpenFile(filepath.Join(s.dir, day+".jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("dmarc report: %w", err)
		}
		s.f, s.day = f, day
	}
	_, err = s.f.Write(line)
	return err
}

// Close closes the open day file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// ReadRows returns the rows of dir with begin <= time < end, in file
// order, and how many lines were skipped as damaged.
func ReadRows(dir string, begin, end time.Time) (rows []Row, skipped int, err error) {
	skipped, err = ScanRows(dir, begin, end, func(r Row) { rows = append(rows, r) })
	return rows, skipped, err
}

// ScanRows calls fn with each row of dir with begin <= time < end, in file
// order, reading one line at a time (a day of a busy server does not fit
// in memory), and returns how many lines were skipped as damaged. A last
// line without its newline is being written: it is left for later.
func ScanRows(dir string, begin, end time.Time, fn func(Row)) (skipped int, err error) {
	for d := begin.UTC().Truncate(24 * time.Hour); d.Before(end); d = d.Add(24 * time.Hour) {
		f, err := os.Open(filepath.Join(dir, d.Format(time.DateOnly)+".jsonl"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return skipped, fmt.Errorf("dmarc report: %w", err)
		}
		n, err := scanFile(f, begin, end, fn)
		f.Close()
		skipped += n
		if err != nil {
			return skipped, fmt.Errorf("dmarc report: %s: %w", f.Name(), err)
		}
	}
	return skipped, nil
}

func scanFile(f io.Reader, begin, end time.Time, fn func(Row)) (skipped int, err error) {
	br := bufio.NewReaderSize(f, maxRowBytes)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			// Longer than any row: skip to the end of the line.
			skipped++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return skipped, nil
			}
			if err != nil {
				return skipped, err
			}
			continue
		case err == io.EOF:
			return skipped, nil // a partial last line, or none
		case err != nil:
			return skipped, err
		}
		r, perr := ParseRow(line[:len(line)-1])
		if perr != nil {
			skipped++
			continue
		}
		if t := time.Unix(r.Time, 0); !t.Before(begin) && t.Before(end) {
			fn(r)
		}
	}
}

// firstDay returns the earliest day file's date in dir.
func firstDay(dir string) (time.Time, bool) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var days []time.Time
	for _, f := range files {
		if d, err := time.Parse(time.DateOnly, strings.TrimSuffix(filepath.Base(f), ".jsonl")); err == nil {
			days = append(days, d)
		}
	}
	if len(days) == 0 {
		return time.Time{}, false
	}
	sort.Slice(days, func(i, j int) bool { return days[i].Before(days[j]) })
	return days[0], true
}

// removeBefore deletes the day files wholly before t.
func removeBefore(dir string, t time.Time) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, f := range files {
		d, err := time.Parse(time.DateOnly, strings.TrimSuffix(filepath.Base(f), ".jsonl"))
		if err == nil && !d.Add(24*time.Hour).After(t) {
			os.Remove(f)
		}
	}
}
