package dmarc_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"postern/filters"
	"postern/filters/dmarc"
)

type failures struct {
	mu   sync.Mutex
	list []dmarc.Failure
}

func (f *failures) RecordDMARCFailure(fl dmarc.Failure) {
	f.mu.Lock()
	f.list = append(f.list, fl)
	f.mu.Unlock()
}

func TestParseFailureOptions(t *testing.T) {
	for in, want := range map[string]string{
		"": "0", "0": "0", "1": "1", "d": "d", "s": "s", "d:s": "d:s", " 1 : D ": "1:d", "x:y": "0", "0:1:d:s": "0:1:d:s", "1:bogus": "1",
	} {
		if got := dmarc.ParseFailureOptions(in).String(); got != want {
			t.Errorf("ParseFailureOptions(%q) = %q, want %q", in, got, want)
		}
	}
}

func dkimFailed(domain string) filters.Result {
	return filters.Result{Filter: "dkim", Vars: map[string]string{"DKIM": "fail", "DKIM_DOMAINS": "", "DKIM_DETAILS": "fail/" + domain + "/sel"}}
}

// TestFailureReportsByFailureOptions: the filter hands over a failing
// message when the policy has a mailto: ruf= and its fo= asks for this
// failure (RFC 7489 section 6.3), with the header and not the body; never
// a passing message, nor a failing one the fo= does not cover, nor one
// of a policy without ruf=.
func TestFailureReportsByFailureOptions(t *testing.T) {
	checkGoroutines(t)
	r, _ := world(t,
		`_dmarc.fo0.example. 300 IN TXT "v=DMARC1; p=reject; ruf=mailto:ruf@fo0.example"`,
		`_dmarc.fo1.example. 300 IN TXT "v=DMARC1; p=quarantine; fo=1; ruf=mailto:ruf@fo1.example"`,
		`_dmarc.fod.example. 300 IN TXT "v=DMARC1; p=none; fo=d; ruf=mailto:ruf@fod.example"`,
		`_dmarc.fos.example. 300 IN TXT "v=DMARC1; p=none; fo=s; ruf=mailto:ruf@fos.example"`,
		`_dmarc.noruf.example. 300 IN TXT "v=DMARC1; p=reject; fo=1; rua=mailto:rua@noruf.example"`,
		`_dmarc.https.example. 300 IN TXT "v=DMARC1; p=reject; ruf=https://https.example/ruf"`,
	)
	cases := []struct {
		name, from string
		results    []filters.Result
		want       bool
	}{
		{"fo=0 fail", "a@fo0.example", []filters.Result{spfResult("pass", "evil.example"), dkimNone()}, true},
		{"fo=0 pass", "a@fo0.example", []filters.Result{spfResult("pass", "fo0.example"), dkimNone()}, false},
		{"fo=1 fail", "a@fo1.example", []filters.Result{spfResult("softfail", "fo1.example"), dkimNone()}, true},
		{"fo=1 pass by spf, dkim failed", "a@fo1.example", []filters.Result{spfResult("pass", "fo1.example"), dkimFailed("fo1.example")}, false},
		{"fo=d no signature", "a@fod.example", []filters.Result{spfResult("fail", "fod.example"), dkimNone()}, false},
		{"fo=d bad signature", "a@fod.example", []filters.Result{spfResult("pass", "evil.example"), dkimFailed("fod.example")}, true},
		{"fo=s spf pass unaligned", "a@fos.example", []filters.Result{spfResult("pass", "evil.example"), dkimFailed("fos.example")}, false},
		{"fo=s spf fail", "a@fos.example", []filters.Result{spfResult("fail", "fos.example"), dkimNone()}, true},
		{"no ruf", "a@noruf.example", []filters.Result{spfResult("fail", "noruf.example"), dkimNone()}, false},
		{"ruf not mailto", "a@https.example", []filters.Result{spfResult("fail", "https.example"), dkimNone()}, false},
	}
	for _, tc := range cases {
		rec := &failures{}
		f, err := dmarc.New(dmarc.Options{Resolver: r, Failures: rec})
		if err != nil {
			t.Fatal(err)
		}
		results := append([]filters.Result{}, tc.results...)
		results[0].AuthResults = []string{"spf=" + results[0].Vars["SPF"] + " smtp.mailfrom=" + results[0].Vars["SPF_DOMAIN"]}
		s := &filters.Session{From: "bounce@" + results[0].Vars["SPF_DOMAIN"], Results: results}
		f.CheckData(context.Background(), s, message(mail(tc.from)))
		if got := len(rec.list) == 1; got != tc.want || len(rec.list) > 1 {
			t.Errorf("%s: %d failures handed over, want report=%v", tc.name, len(rec.list), tc.want)
			continue
		}
		if !tc.want {
			continue
		}
		fl := rec.list[0]
		h := string(fl.Header)
		if !strings.Contains(h, "From: "+tc.from+"\r\n") || !strings.HasSuffix(h, "Message-ID: <x@y>\r\n") || strings.Contains(h, "Hello Bob") {
			t.Errorf("%s: header %q", tc.name, h)
		}
		if fl.MailFrom != s.From || fl.Evaluation.Status != dmarc.Fail || len(fl.AuthResults) != 2 || !strings.HasPrefix(fl.AuthResults[0], "spf=") || !strings.HasPrefix(fl.AuthResults[1], "dmarc=fail") {
			t.Errorf("%s: failure %+v", tc.name, fl)
		}
	}
}

func TestReadHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", 1000, "A: 1\r\nB: 2\r\n"},
		{"A: 1\nB: 2\n\nbody\n", 1000, "A: 1\r\nB: 2\r\n"},
		{"A: 1\r\nB: 2", 1000, "A: 1\r\nB: 2\r\n"},
		{"A: 1\r\nB: 22222222\r\n\r\n", 12, "A: 1\r\n"},
		{"\r\nbody", 1000, ""},
	} {
		if got := string(dmarc.ReadHeader(strings.NewReader(tc.in), tc.max)); got != tc.want {
			t.Errorf("ReadHeader(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
