package arc_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters"
	"postern/filters/arc"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/smtprules"
	"postern/filters/spf"
	"postern/policy"
)

type bytesMessage struct{ *bytes.Reader }

func (m bytesMessage) Size() int64 { return int64(m.Len()) }

func message(s string) filters.Message { return bytesMessage{bytes.NewReader([]byte(s))} }

func TestFilterResults(t *testing.T) {
	keys, r, _ := chainSetup(t)
	f, err := arc.New(arc.Options{Resolver: r, Trusted: []string{"Lists.Example.NET."}})
	if err != nil {
		t.Fatal(err)
	}
	var _ filters.DataChecker = f
	s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.7")}
	footer := func(m string) string { return m + "--\r\nfooter\r\n" }

	cases := []struct {
		name  string
		msg   string
		ar    string
		vars  map[string]string
		score float64
	}{
		{"no chain", original, "arc=none smtp.remote-ip=192.0.2.7",
			map[string]string{"ARC": "none", "ARC_INSTANCES": "0", "ARC_TRUSTED_SEALER": ""}, 0},
		{"trusted first sealer", forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1], change: footer}}),
			"arc=pass (i=2) header.oldest-pass=2 smtp.remote-ip=192.0.2.7",
			map[string]string{"ARC": "pass", "ARC_INSTANCES": "2", "ARC_OLDEST_PASS": "2",
				"ARC_SEALERS": "lists.example.net forward.example.com", "ARC_TRUSTED_SEALER": "lists.example.net"}, -1},
		{"untrusted first sealer", forward(t, r, original, []hop{{key: keys[1]}, {key: keys[0]}}),
			"arc=pass (i=2) header.oldest-pass=0 smtp.remote-ip=192.0.2.7",
			map[string]string{"ARC": "pass", "ARC_OLDEST_PASS": "0", "ARC_TRUSTED_SEALER": ""}, 0},
		{"broken", strings.Replace(forward(t, r, original, []hop{{key: keys[0]}}), "noon", "one", 1),
			"arc=fail (ARC-Message-Signature i=1 d=lists.example.net: body hash did not verify: the body was changed) smtp.remote-ip=192.0.2.7",
			map[string]string{"ARC": "fail", "ARC_TRUSTED_SEALER": ""}, 0.5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := f.CheckData(context.Background(), s, message(c.msg))
			if res.Filter != "arc" || res.Verdict != filters.NoOpinion || res.Score != c.score {
				t.Errorf("result %+v", res)
			}
			if len(res.AuthResults) != 1 || res.AuthResults[0] != c.ar {
				t.Errorf("auth results %q, want %q", res.AuthResults, c.ar)
			}
			for k, want := range c.vars {
				if got, ok := res.Vars[k]; !ok || got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}

	// Our own users' mail is not checked.
	res := f.CheckData(context.Background(), &filters.Session{AuthUser: "alice"}, message(original))
	if res.Vars["ARC"] != "none" || len(res.AuthResults) != 0 {
		t.Errorf("authenticated: %+v", res)
	}
	if _, err := arc.New(arc.Options{}); err == nil {
		t.Error("no resolver accepted")
	}
}

// TestDMARCOverride: mail from a p=reject domain, DKIM-signed by it, goes
// through a mailing list that adds a footer (DKIM breaks) and seals, and
// reaches us from an address outside the domain's SPF. DMARC fails; the
// message is refused unless the list is a trusted sealer, in which case
// DMARC's verdict is overridden (and says so) and nothing is refused.
func TestDMARCOverride(t *testing.T) {
	keys, r, zone := chainSetup(t)
	author := dkim.Key{Domain: "example.org", Selector: "a1", Signer: testRSAKey(t)}
	publish(t, zone, author)
	zone.Add(`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"`, `example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`)

	sig, err := dkim.NewSigner([]dkim.Key{author}).Sign(context.Background(), "example.org", strings.NewReader(original))
	if err != nil {
		t.Fatal(err)
	}
	listed := forward(t, r, sig+"\r\n"+original, []hop{{key: keys[0], change: func(m string) string { return m + "--\r\nlist footer\r\n" }}})

	df, _ := dkim.New(dkim.Options{Resolver: r})
	sf, err := spf.NewFilter(spf.FilterOptions{Resolver: r, Receiver: "mx.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	mf, _ := dmarc.New(dmarc.Options{Resolver: r})
	run := func(trusted ...string) filters.Result {
		af, _ := arc.New(arc.Options{Resolver: r, Trusted: trusted})
		s := &filters.Session{ClientIP: netip.MustParseAddr("198.51.100.9"), HELO: "lists.example.net", From: "alice@example.org"}
		s.Results = append(s.Results, sf.CheckMail(context.Background(), s))
		for _, f := range []filters.DataChecker{df, af} {
			s.Results = append(s.Results, f.CheckData(context.Background(), s, message(listed)))
		}
		if s.Var("DKIM") != "fail" || s.Var("SPF") != "fail" || s.Var("ARC") != "pass" {
			t.Fatalf("dkim %s spf %s arc %s", s.Var("DKIM"), s.Var("SPF"), s.Var("ARC"))
		}
		return mf.CheckData(context.Background(), s, message(listed))
	}

	res := run()
	if res.Verdict != filters.Reject || res.Vars["DMARC_OVERRIDE"] != "" {
		t.Errorf("untrusted list: %+v", res)
	}
	res = run("other.example", "lists.example.net")
	if res.Verdict != filters.NoOpinion || res.Vars["DMARC"] != "fail" || res.Vars["DMARC_DISPOSITION"] != "none" || res.Vars["DMARC_OVERRIDE"] != "arc" {
		t.Errorf("trusted list: %+v", res)
	}
	if res.AuthResults[0] != "dmarc=fail (p=reject dis=none policy.override=arc) header.from=example.org" || !strings.Contains(res.Reason, "first sealer lists.example.net is trusted") {
		t.Errorf("trusted list: %q %q", res.AuthResults, res.Reason)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := arc.LoadConfig(dir)
	if err != nil || !cfg.Seal || cfg.Filter.Trusted != nil || *cfg.Filter.Scores != arc.DefaultScores {
		t.Fatalf("absent setting: %+v, %v", cfg, err)
	}
	os.WriteFile(filepath.Join(dir, "arc"), []byte(`# ARC
trusted lists.example.net Google.COM.
trusted forwarder.example
score fail 2
score trusted -3
timeout 5s
seal no
`), 0o644)
	cfg, err = arc.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Filter.Trusted, " ") != "lists.example.net google.com forwarder.example" || cfg.Seal ||
		cfg.Filter.Scores.Fail != 2 || cfg.Filter.Scores.Trusted != -3 || cfg.Filter.Verify.Timeout.Seconds() != 5 {
		t.Errorf("config %+v scores %+v", cfg, cfg.Filter.Scores)
	}
	os.WriteFile(filepath.Join(dir, "arc"), []byte("trusted\ntrusted not_a..domain\nscore pass lots\nscore maybe 1\ntimeout forever\nseal perhaps\nfrobnicate\n"), 0o644)
	_, err = arc.LoadConfig(dir)
	var pe *policy.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *policy.Error", err)
	}
	for _, want := range []string{"arc:1:", "arc:2:", "arc:3:", "arc:4:", "arc:5:", "arc:6:", "arc:7:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}

// The admin's SMTP-time rules see the ARC variables as they see DKIM's.
func TestRulesSeeARC(t *testing.T) {
	keys, r, _ := chainSetup(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, smtprules.SettingName), []byte(`if ($ARC eq "pass" && $ARC_TRUSTED_SEALER eq "lists.example.net" && $ARC_SEALERS eq "lists.example.net forward.example.com")
{
	SCORE_ADD=-2
}
`), 0o644)
	rf, err := smtprules.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	af, _ := arc.New(arc.Options{Resolver: r, Trusted: []string{"lists.example.net"}})
	msg := forward(t, r, original, []hop{{key: keys[0]}, {key: keys[1]}})
	for _, c := range []struct {
		msg   string
		score float64
	}{{msg, -2}, {original, 0}} {
		s := &filters.Session{ClientIP: netip.MustParseAddr("192.0.2.7")}
		s.Results = append(s.Results, af.CheckData(context.Background(), s, message(c.msg)))
		res := rf.CheckData(context.Background(), s, message(c.msg))
		if res.Score != c.score {
			t.Errorf("rules score %v, want %v (%+v)", res.Score, c.score, res)
		}
	}
}
