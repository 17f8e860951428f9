package acme

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ACME Renewal Information (ARI, RFC 9773): a CA that offers it says, for
// each certificate, when it would like it renewed. The Manager asks right
// after issuance and again when the answer's Retry-After says, and renews
// at a random moment of the suggested window instead of its own schedule.
// That is how a CA spreads renewals over time and, when it must revoke
// certificates (a mis-issuance), gets them replaced at once: it moves the
// window into the past. A CA without ARI, or an answer that cannot be
// used, leaves the Manager's own schedule (a third of the lifetime left).

// Bounds on the Retry-After of a RenewalInfo answer (RFC 9773 section
// 4.3: under a minute counts as a minute, over a day as a day), and the
// pause when the CA gave none or could not be asked.
const (
	ariMinPoll     = time.Minute
	ariMaxPoll     = 24 * time.Hour
	ariDefaultPoll = 6 * time.Hour
	ariErrorPoll   = time.Hour
	maxARIBody     = 64 << 10
)

// ariState is what the CA last said about one host's certificate.
type ariState struct {
	serial string    // the certificate it is about (a renewal starts afresh)
	at     time.Time // when to renew, chosen in the window; zero: no usable window
	poll   time.Time // when to ask again
}

// renewalInfo is the RenewalInfo object (RFC 9773 section 4.2).
type renewalInfo struct {
	SuggestedWindow struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"suggestedWindow"`
	ExplanationURL string `json:"explanationURL"`
}

// ariCertID is the certificate's identifier in ARI requests (RFC 9773
// section 4.1): the authority key identifier and the serial number's DER
// content octets, each base64url without padding, joined by a dot.
func ariCertID(leaf *x509.Certificate) (string, error) {
	if len(leaf.AuthorityKeyId) == 0 {
		return "", errors.New("the certificate has no authority key identifier")
	}
	if leaf.SerialNumber == nil {
		return "", errors.New("the certificate has no serial number")
	}
	der, err := asn1.Marshal(leaf.SerialNumber)
	if err != nil {
		return "", err
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(leaf.AuthorityKeyId) + "." + enc.EncodeToString(raw.Bytes), nil
}

// parseRenewalInfo reads a RenewalInfo object and checks its window.
func parseRenewalInfo(body []byte) (*renewalInfo, error) {
	var ri renewalInfo
	if err := json.Unmarshal(body, &ri); err != nil {
		return nil, fmt.Errorf("renewal info: %w", err)
	}
	w := ri.SuggestedWindow
	if w.Start.IsZero() || w.End.IsZero() {
		return nil, errors.New("renewal info: no suggested window")
	}
	if !w.End.After(w.Start) {
		// Section 4.2: the end must be after the start; such a window is
		// treated as if the CA had not answered.
		return nil, fmt.Errorf("renewal info: window ends (%s) before it starts (%s)", w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
	}
	return &ri, nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) and
// bounds it; absent or unreadable gives the default.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	d := ariDefaultPoll
	if s, err := strconv.ParseInt(h, 10, 64); err == nil && s >= 0 {
		d = time.Duration(min(s, int64(ariMaxPoll/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, ariMinPoll), ariMaxPoll)
}

// renewalInfoURL is the directory's "renewalInfo" resource, "" when the CA
// offers no ARI. Fetched once; x/crypto/acme's Directory does not carry it.
func (m *Manager) renewalInfoURL(ctx context.Context) (string, error) {
	m.mu.Lock()
	u, known := m.ariURL, m.ariKnown
	m.mu.Unlock()
	if known {
		return u, nil
	}
	body, _, err := m.get(ctx, m.opt.Directory)
	if err != nil {
		return "", fmt.Errorf("directory: %w", err)
	}
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.Unmarshal(body, &dir); err != nil {
		return "", fmt.Errorf("directory: %w", err)
	}
	u = strings.TrimRight(dir.RenewalInfo, "/")
	m.mu.Lock()
	m.ariURL, m.ariKnown = u, true
	m.mu.Unlock()
	return u, nil
}

// get fetches url with the CA's HTTP client (section 4.2: a plain GET, no
// account signature).
func (m *Manager) get(ctx context.Context, url string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	hc := m.opt.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxARIBody))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.Header, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, resp.Header, nil
}

// checkARI asks the CA about host's certificate when it is time to, and
// records when to renew it. Failures only log: the Manager's own schedule
// stays in force.
func (m *Manager) checkARI(ctx context.Context, host string, leaf *x509.Certificate) {
	now := time.Now()
	serial := leaf.SerialNumber.String()
	m.mu.Lock()
	st := m.ari[host]
	if st.serial != serial {
		st = ariState{serial: serial} // new certificate: ask at once
	}
	due := !now.Before(st.poll)
	m.mu.Unlock()
	if !due || now.After(leaf.NotAfter) {
		return // section 4.3: no more questions about an expired certificate
	}
	base, err := m.renewalInfoURL(ctx)
	if err != nil || base == "" {
		if err != nil {
			m.log.Warn("acme: renewal information not asked for", "host", host, "err", err)
		}
		m.setARI(host, ariState{serial: serial, poll: now.Add(ariErrorPoll)})
		return
	}
	id, err := ariCertID(leaf)
	if err != nil {
		m.setARI(host, ariState{serial: serial, poll: now.Add(ariMaxPoll)})
		return
	}
	body, hdr, err := m.get(ctx, base+"/"+id)
	if err != nil {
		m.log.Warn("acme: renewal information unavailable; keeping the usual schedule", "host", host, "err", err)
		m.setARI(host, ariState{serial: serial, poll: now.Add(ariErrorPoll)})
		return
	}
	next := now.Add(retryAfter(hdr.Get("Retry-After"), now))
	ri, err := parseRenewalInfo(body)
	if err != nil {
		m.log.Warn("acme: unusable renewal information; keeping the usual schedule", "host", host, "err", err)
		m.setARI(host, ariState{serial: serial, poll: next})
		return
	}
	// Section 4.2: a uniformly random moment of the window, kept while
	// the window still holds it; a window already past means now.
	w := ri.SuggestedWindow
	at := st.at
	if at.IsZero() || at.Before(w.Start) || at.After(w.End) {
		at = w.Start.Add(rand.N(w.End.Sub(w.Start)))
		if at.After(leaf.NotAfter) {
			at = leaf.NotAfter.Add(-time.Minute) // a window past expiry must not let it lapse
		}
		args := []any{"host", host, "window_start", w.Start.UTC().Format(time.RFC3339), "window_end", w.End.UTC().Format(time.RFC3339), "renew_at", at.UTC().Format(time.RFC3339)}
		if ri.ExplanationURL != "" {
			args = append(args, "explanation", ri.ExplanationURL)
		}
		if at.After(now) {
			m.log.Info("acme: renewal window from the CA", args...)
		} else {
			m.log.Warn("acme: the CA asks for this certificate to be replaced now", args...)
		}
	}
	m.setARI(host, ariState{serial: serial, at: at, poll: next})
}

func (m *Manager) setARI(host string, st ariState) {
	m.mu.Lock()
	m.ari[host] = st
	m.mu.Unlock()
}
