// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for the sending side:
// it counts, per day and per recipient domain, the TLS sessions outbound
// delivery held under each policy (DANE "tlsa", MTA-STS "sts", or
// "no-policy-found") and how they failed, keeps the counts on disk, and
// once a day is over sends each domain that asks for reports (its
// _smtp._tls TXT record: "v=TLSRPTv1; rua=...") the aggregate report,
// gzip'd JSON by mail (multipart/report; report-type="tlsrpt") or by
// HTTPS POST.
package tlsrpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Policy types (RFC 8460 section 4.4).
const (
	TypeTLSA     = "tlsa"
	TypeSTS      = "sts"
	TypeNoPolicy = "no-policy-found"
)

// Result types for failures (RFC 8460 section 4.3).
const (
	StartTLSNotSupported = "starttls-not-supported"
	CertHostMismatch     = "certificate-host-mismatch"
	CertExpired          = "certificate-expired"
	CertNotTrusted       = "certificate-not-trusted"
	ValidationFailure    = "validation-failure"
	TLSAInvalid          = "tlsa-invalid"
	STSWebPKIInvalid     = "sts-webpki-invalid"
)

// Policy is what a session was held to.
type Policy struct {
	Type    string   `json:"policy-type"`
	Strings []string `json:"policy-string,omitempty"`
	Domain  string   `json:"policy-domain"`
}

// Failure is what one failed session reports.
type Failure struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	ReasonCode          string `json:"failure-reason-code,omitempty"`
}

// policyResult is one policy's counts in a report (section 4.4).
type policyResult struct {
	Policy  Policy `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Failures []failureCount `json:"failure-details,omitempty"`
}

type failureCount struct {
	Failure
	Count int64 `json:"failed-session-count"`
}

// maxDomainsPerDay bounds what a day keeps: reports go to domains that
// asked, and a day with more destinations than this keeps the first.
const maxDomainsPerDay = 50000

// maxFailureKinds bounds the failure details kept for one policy.
const maxFailureKinds = 100

// day is one UTC day's counts: domain -> policy key -> result.
type day map[string]map[string]*policyResult

func policyKey(p Policy) string { return p.Type + "\x00" + strings.Join(p.Strings, "\x00") }

// Recorder counts sessions. It is safe for concurrent use; Save keeps
// the counts in Dir, one JSON file per day, so that a restart loses at
// most what came after the last Save.
type Recorder struct {
	dir string
	now func() time.Time

	mu   sync.Mutex
	days map[string]day // "2006-01-02"
}

// NewRecorder loads the days saved in dir (created if needed).
func NewRecorder(dir string, now func() time.Time) (*Recorder, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	r := &Recorder{dir: dir, now: now, days: map[string]day{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if _, err := time.Parse(time.DateOnly, name); err != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tlsrpt: %w", err)
		}
		var d day
		if err := json.Unmarshal(b, &d); err != nil {
			// A damaged day is set aside, not fatal: it is only a report.
			os.Rename(f, f+".bad")
			continue
		}
		r.days[name] = d
	}
	return r, nil
}

func (r *Recorder) result(p Policy) *policyResult {
	name := r.now().UTC().Format(time.DateOnly)
	d := r.days[name]
	if d == nil {
		d = day{}
		r.days[name] = d
	}
	dom := strings.ToLower(p.Domain)
	byPolicy := d[dom]
	if byPolicy == nil {
		if len(d) >= maxDomainsPerDay {
			return nil
		}
		byPolicy = map[string]*policyResult{}
		d[dom] = byPolicy
	}
	k := policyKey(p)
	pr := byPolicy[k]
	if pr == nil {
		p.Domain = dom
		pr = &policyResult{Policy: p}
		byPolicy[k] = pr
	}
	return pr
}

// Success counts a session that negotiated TLS as p asked.
func (r *Recorder) Success(p Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pr := r.result(p); pr != nil {
		pr.Summary.Success++
	}
}

// Failure counts a session that failed p, with its details.
func (r *Recorder) Failure(p Policy, f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := r.result(p)
	if pr == nil {
		return
	}
	pr.Summary.Failure++
	for i := range pr.Failures {
		if pr.Failures[i].Failure == f {
			pr.Failures[i].Count++
			return
		}
	}
	if len(pr.Failures) < maxFailureKinds {
		pr.Failures = append(pr.Failures, failureCount{Failure: f, Count: 1})
	}
}

// Save writes every day's counts to Dir (each file replaced atomically).
func (r *Recorder) Save() error {
	r.mu.Lock()
	data := map[string][]byte{}
	for name, d := range r.days {
		b, err := json.Marshal(d)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		data[name] = b
	}
	r.mu.Unlock()
	var errs []error
	for name, b := range data {
		path := filepath.Join(r.dir, name+".json")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o640); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(tmp, path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DomainReport is one policy domain's results for one day.
type DomainReport struct {
	Day      string // "2006-01-02"
	Domain   string
	Policies []policyResult
}

// Finished returns the results of the days before today (UTC), each
// domain's on its own, oldest day first.
func (r *Recorder) Finished() []DomainReport {
	today := r.now().UTC().Format(time.DateOnly)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DomainReport
	for name, d := range r.days {
		if name >= today {
			continue
		}
		for dom, byPolicy := range d {
			rep := DomainReport{Day: name, Domain: dom}
			for _, pr := range byPolicy {
				rep.Policies = append(rep.Policies, *pr)
			}
			sort.Slice(rep.Policies, func(i, j int) bool {
				return policyKey(rep.Policies[i].Policy) < policyKey(rep.Policies[j].Policy)
			})
			out = append(out, rep)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Day != out[j].Day {
			return out[i].Day < out[j].Day
		}
		return out[i].Domain < out[j].Domain
	})
	return out
}

// Forget drops a finished day, once its reports were sent (or given up).
func (r *Recorder) Forget(dayName string) error {
	r.mu.Lock()
	delete(r.days, dayName)
	r.mu.Unlock()
	err := os.Remove(filepath.Join(r.dir, dayName+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
