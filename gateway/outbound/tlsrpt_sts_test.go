package outbound

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/gateway/outbound/mtasts"
	"postern/gateway/outbound/tlsrpt"
)

// stsPolicyHost serves h as https://mta-sts.example.test (a certificate
// for that name) and returns an MTA-STS client that trusts it when trust.
func stsPolicyHost(t *testing.T, s *tlsSetup, h http.HandlerFunc, trust bool) *mtasts.Client {
	t.Helper()
	cert, roots := selfSigned(t, "mta-sts.example.test")
	hs := httptest.NewUnstartedServer(h)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	s.zone.add(t, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=20261127"`, "mta-sts.example.test. 60 IN A 127.0.0.1")
	if !trust {
		_, roots = selfSigned(t, "someone-else.test")
	}
	r := NewDNSResolver([]string{s.dnsAddr}, 2*time.Second)
	c, err := mtasts.New(mtasts.Options{LookupTXT: r.LookupTXT, IsNotFound: isNoSuchDomain, LookupIPAddr: r.LookupIPAddr,
		Port: p, RootCAs: roots, Dir: t.TempDir(), Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func servePolicy(policy string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, policy)
	}
}

// stsDay delivers one message to example.test with each client (they
// share rec, whose day then ends) and returns the day's report for
// example.test as policy type, its strings, successes, failures and the
// failure details "result-type reason" with their counts.
type stsResult struct {
	typ      string
	strings  []string
	success  int64
	failure  int64
	failures map[string]int64
}

func stsDay(t *testing.T, s *tlsSetup, clients ...func(*Options)) []stsResult {
	t.Helper()
	day := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now := day
	rec, err := tlsrpt.NewRecorder(t.TempDir(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range clients {
		c := s.client(t, func(o *Options) {
			o.DANE = false
			o.TLSReport = rec
			mod(o)
		})
		wantDelivered(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0])
	}
	now = day.Add(24 * time.Hour)
	var out []stsResult
	for _, rep := range rec.Finished() {
		if rep.Domain != "example.test" {
			t.Fatalf("report for %s", rep.Domain)
		}
		for _, p := range rep.Policies {
			r := stsResult{typ: p.Policy.Type, strings: p.Policy.Strings, success: p.Summary.Success, failure: p.Summary.Failure, failures: map[string]int64{}}
			for _, f := range p.Failures {
				key := f.ResultType
				if f.ReasonCode != "" {
					key += " " + f.ReasonCode
				}
				if f.ReceivingMXHostname != "mx.example.test" {
					t.Errorf("failure detail names %q", f.ReceivingMXHostname)
				}
				r.failures[key] += f.Count
			}
			out = append(out, r)
		}
	}
	return out
}

// MTA-STS testing mode (RFC 8461 section 5): mail goes as without the
// policy, but what enforce mode would have refused is reported: an
// untrusted certificate is a certificate-not-trusted failure, a trusted
// one a success, both under the sts policy with its strings.
func TestTLSReportSTSTestingChecksCertificate(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	sts := stsPolicyHost(t, s, servePolicy("version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n"), true)
	got := stsDay(t, s,
		func(o *Options) { o.MTASTS = sts },
		func(o *Options) { o.MTASTS = sts; o.TLSConfig = &tls.Config{RootCAs: poolOf(s.cert.Leaf)} },
	)
	if len(got) != 1 || got[0].typ != "sts" || strings.Join(got[0].strings, "|") != "version: STSv1|mode: testing|mx: mx.example.test|max_age: 86400" ||
		got[0].success != 1 || got[0].failure != 1 || got[0].failures["certificate-not-trusted"] != 1 {
		t.Fatalf("report %+v", got)
	}
	if n := s.srv.mailCount(); n != 2 {
		t.Fatalf("%d messages delivered, want 2: testing mode does not hold mail back", n)
	}
}

// Testing mode, an MX host the policy does not name: delivered, reported
// as a validation failure saying why.
func TestTLSReportSTSTestingMXNotListed(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	sts := stsPolicyHost(t, s, servePolicy("version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n"), true)
	got := stsDay(t, s, func(o *Options) { o.MTASTS = sts; o.TLSConfig = &tls.Config{RootCAs: poolOf(s.cert.Leaf)} })
	if len(got) != 1 || got[0].typ != "sts" || got[0].failure != 1 || got[0].failures["validation-failure mx host not in the MTA-STS policy"] != 1 {
		t.Fatalf("report %+v", got)
	}
}

// Enforce mode: the MX certificate's failure has its own result type;
// sts-webpki-invalid is for the policy host's certificate only.
func TestTLSReportSTSEnforceCertificate(t *testing.T) {
	checkGoroutines(t)
	s := newTLSSetup(t, serverConfig{}, nil)
	sts := stsPolicyHost(t, s, servePolicy("version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"), true)
	day := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now := day
	rec, _ := tlsrpt.NewRecorder(t.TempDir(), func() time.Time { return now })
	c := s.client(t, func(o *Options) { o.DANE = false; o.MTASTS = sts; o.TLSReport = rec })
	wantFailure(t, deliver(t, c, env("a@sender.test"), rcpts("b@example.test"), testMessage)[0], false, statusTLSFailed)
	now = day.Add(24 * time.Hour)
	fin := rec.Finished()
	if len(fin) != 1 || len(fin[0].Policies) != 1 || fin[0].Policies[0].Policy.Type != "sts" ||
		len(fin[0].Policies[0].Failures) != 1 || fin[0].Policies[0].Failures[0].ResultType != "certificate-not-trusted" {
		t.Fatalf("report %+v", fin)
	}
}

// A domain that announces a policy (TXT) that cannot be had: mail goes as
// without a policy (RFC 8461 section 3.3), and each session is reported
// under policy type sts as the fetch's failure (RFC 8460 4.3.2.2).
func TestTLSReportSTSPolicyFetchFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		trust   bool
		want    string
	}{
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, true, "sts-policy-fetch-error"},
		{"untrusted policy host", servePolicy("version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"), false, "sts-webpki-invalid"},
		{"invalid policy", servePolicy("version: STSv1\nmode: sometimes\nmx: mx.example.test\n"), true, "sts-policy-invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			s := newTLSSetup(t, serverConfig{}, nil)
			sts := stsPolicyHost(t, s, tc.handler, tc.trust)
			got := stsDay(t, s, func(o *Options) { o.MTASTS = sts })
			if len(got) != 1 || got[0].typ != "sts" || len(got[0].strings) != 0 || got[0].success != 0 || got[0].failure != 1 || got[0].failures[tc.want] != 1 {
				t.Fatalf("report %+v, want one %s", got, tc.want)
			}
			if sts.FetchFailure("EXAMPLE.test.") != tc.want {
				t.Errorf("FetchFailure = %q", sts.FetchFailure("example.test"))
			}
		})
	}
}
