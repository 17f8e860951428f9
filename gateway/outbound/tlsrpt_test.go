package outbound

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/gateway/outbound/tlsrpt"
)

// Outbound MX sessions are counted for TLS reporting under the policy
// they were held to: a DANE host whose TLSA record matches is a "tlsa"
// success, one whose record does not is a "tlsa" validation-failure with
// the hosts' names and addresses; the next day, the domain's TLSRPT
// record (its TXT, from a real DNS server) gets the report by mail and by
// HTTPS: gzip'd JSON with the counts (RFC 8460 sections 4 and 5).
func TestTLSReporting(t *testing.T) {
	checkGoroutines(t)
	var (
		mu    sync.Mutex
		posts [][]byte
		ctype string
	)
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts, ctype = append(posts, b), r.Header.Get("Content-Type")
		mu.Unlock()
	}))
	defer web.Close()
	other, _ := selfSigned(t, "mx.example.test")
	s := newTLSSetup(t, serverConfig{}, func(s *tlsSetup) []string {
		return []string{s.tlsaEE(s.cert), `_smtp._tls.example.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.test,` + web.URL + `/tlsrpt"`}
	})
	secureNames(s, "example.test.", "mx.example.test.", s.tlsaName())
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := day
	rec, err := tlsrpt.NewRecorder(t.TempDir(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	c := s.client(t, func(o *Options) { o.TLSReport = rec })
	wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	// The TLSA record changes to another key: the next session fails.
	s.zone.mu.Lock()
	s.zone.records[s.tlsaName()] = nil
	s.zone.mu.Unlock()
	s.zone.add(t, s.tlsaEE(other))
	c2 := s.client(t, func(o *Options) { o.TLSReport = rec })
	wantFailure(t, deliver(t, c2, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)

	now = day.Add(24 * time.Hour)
	var mails []string
	sender := &tlsrpt.Sender{
		Recorder:  rec,
		Reporter:  tlsrpt.Reporter{Organization: "Sender Org", Contact: "postmaster@sender.test", Submitter: "sender.test"},
		From:      "tlsrpt@sender.test",
		LookupTXT: NewDNSResolver([]string{s.dnsAddr}, time.Second).LookupTXT,
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			mails = append(mails, to+"\n"+string(msg))
			return nil
		},
		HTTP: web.Client(),
		Now:  func() time.Time { return now },
	}
	if n := sender.SendFinished(context.Background()); n != 2 {
		t.Fatalf("%d reports sent, want 2 (mail and https)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || ctype != "application/tlsrpt+gzip" {
		t.Fatalf("%d POSTs, content type %q", len(posts), ctype)
	}
	var rep struct {
		Org       string `json:"organization-name"`
		DateRange struct {
			Start string `json:"start-datetime"`
		} `json:"date-range"`
		Policies []struct {
			Policy struct {
				Type    string   `json:"policy-type"`
				Strings []string `json:"policy-string"`
				Domain  string   `json:"policy-domain"`
			} `json:"policy"`
			Summary struct {
				Success int `json:"total-successful-session-count"`
				Failure int `json:"total-failure-session-count"`
			} `json:"summary"`
			Failures []struct {
				ResultType string `json:"result-type"`
				MX         string `json:"receiving-mx-hostname"`
				IP         string `json:"receiving-ip"`
				Count      int    `json:"failed-session-count"`
			} `json:"failure-details"`
		} `json:"policies"`
	}
	zr, err := gzip.NewReader(bytes.NewReader(posts[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(zr).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Org != "Sender Org" || rep.DateRange.Start != "2026-11-25T00:00:00Z" || len(rep.Policies) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	var succ, fail int
	for _, p := range rep.Policies {
		if p.Policy.Type != "tlsa" || p.Policy.Domain != "example.test" || len(p.Policy.Strings) != 1 || !strings.HasPrefix(p.Policy.Strings[0], "3 1 1 ") {
			t.Errorf("policy %+v", p.Policy)
		}
		succ += p.Summary.Success
		fail += p.Summary.Failure
		for _, f := range p.Failures {
			if f.ResultType != "validation-failure" || f.MX != "mx.example.test" || f.IP != "127.0.0.2" || f.Count != 1 {
				t.Errorf("failure detail %+v", f)
			}
		}
	}
	if succ != 1 || fail != 1 {
		t.Fatalf("%d successes and %d failures, want 1 and 1", succ, fail)
	}

	// The mail: multipart/report, report-type tlsrpt, the gzip'd JSON
	// attached under the name section 5.1 gives.
	if len(mails) != 1 || !strings.HasPrefix(mails[0], "tls-reports@example.test\n") {
		t.Fatalf("mails: %q", mails)
	}
	m, err := mail.ReadMessage(strings.NewReader(strings.SplitN(mails[0], "\n", 2)[1]))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("TLS-Report-Domain") != "example.test" || m.Header.Get("TLS-Report-Submitter") != "sender.test" ||
		!strings.HasPrefix(m.Header.Get("Subject"), "Report Domain: example.test Submitter: sender.test Report-ID: <") {
		t.Fatalf("header: %v", m.Header)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("content type %q %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	mr.NextPart() // the text
	att, err := mr.NextPart()
	if err != nil || att.Header.Get("Content-Type") != "application/tlsrpt+gzip" ||
		!regexp.MustCompile(`^sender\.test!example\.test!1795564800!1795651199!\w+\.json\.gz$`).MatchString(att.FileName()) {
		t.Fatalf("attachment %v %q %v", att.Header, att.FileName(), err)
	}
	gz, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, att))
	if zr, err := gzip.NewReader(bytes.NewReader(gz)); err != nil {
		t.Fatalf("attachment is not gzip: %v", err)
	} else if js, _ := io.ReadAll(zr); !json.Valid(js) {
		t.Fatalf("attachment JSON: %q", js)
	}
	// The day was sent: nothing left to report.
	if fin := rec.Finished(); len(fin) != 0 {
		t.Fatalf("left after sending: %+v", fin)
	}
}
