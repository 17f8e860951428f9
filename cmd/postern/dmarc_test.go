package main

import (
	"encoding/xml"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/filters/dmarc"
	"postern/filters/dmarc/report"
	"postern/policy"
)

// postern dmarc report: --help, --preview without a running server (the
// rows read from DATADIR/state/dmarc), --send refused without one, and the
// dmarcreport* settings checked at load.
func TestDMARCReportCommand(t *testing.T) {
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "dmarcreportorg"), []byte("Example Org\n"), 0o640)
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := report.OpenStore(filepath.Join(cfg.DataDir, "state", "dmarc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dmarc.ParseRecord("v=DMARC1; p=quarantine; rua=mailto:agg@news.example")
	for _, ip := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.2"} {
		st.RecordDMARC(dmarc.Observation{Time: time.Now(), SourceIP: netip.MustParseAddr(ip), EnvelopeFrom: "news.example",
			SPFDomain: "news.example", SPFScope: "mfrom", SPFResult: "pass",
			Evaluation: dmarc.Evaluation{Status: dmarc.Pass, FromDomain: "news.example", RecordDomain: "news.example", Record: rec,
				Policy: dmarc.PolicyQuarantine, Disposition: dmarc.PolicyNone, SPFAligned: true}})
	}
	st.Close()

	if code, out, _ := runCmd(t, "", "--config", etc, "config"); code != 0 || strings.Contains(out, "dmarcrpt") {
		t.Errorf("config with dmarcreports off: %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(etc, "dmarcreports"), []byte("yes\n"), 0o640)
	if code, out, _ := runCmd(t, "", "--config", etc, "config"); code != 0 || !strings.Contains(out, "dmarcrpt   every 24h, from postmaster@example.test\n") {
		t.Errorf("config with dmarcreports on: %d\n%s", code, out)
	}

	code, out, errb := runCmd(t, "", "--config", etc, "dmarc", "report", "--help")
	if code != 0 || !strings.Contains(out, "postern dmarc report --preview") || !strings.Contains(out, "--period") {
		t.Fatalf("--help: %d %s%s", code, out, errb)
	}
	code, out, errb = runCmd(t, "", "--config", etc, "dmarc", "report", "--preview", "--domain", "news.example")
	if code != 0 {
		t.Fatalf("--preview: exit %d\n%s%s", code, out, errb)
	}
	var fb report.Feedback
	if err := xml.Unmarshal([]byte(out), &fb); err != nil {
		t.Fatalf("--preview output is not the report: %v\n%s", err, out)
	}
	if fb.Metadata.OrgName != "Example Org" || fb.Metadata.Email != "postmaster@example.test" || fb.PolicyPublished.P != "quarantine" ||
		len(fb.Records) != 2 || fb.Records[0].Row.Count != 2 || fb.Records[1].Row.SourceIP != "192.0.2.2" {
		t.Errorf("preview: %+v", fb)
	}
	if !strings.Contains(errb, "news.example: 3 messages, 2 records; to mailto:agg@news.example as example.test!news.example!") {
		t.Errorf("preview note: %q", errb)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "dmarc", "report", "--preview", "--period", "last"); code != 1 || !strings.Contains(errb, "nothing recorded") {
		t.Errorf("empty period: %d %s", code, errb)
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "dmarc", "report", "--send"); code != 69 || !strings.Contains(errb, "running server") {
		t.Errorf("--send without a server: %d %s", code, errb)
	}
	for _, args := range [][]string{{"dmarc"}, {"dmarc", "frob"}, {"dmarc", "report"}, {"dmarc", "report", "--preview", "--send"}, {"dmarc", "report", "--preview", "--period", "week"}} {
		if code, _, _ := runCmd(t, "", append([]string{"--config", etc}, args...)...); code != 64 {
			t.Errorf("%v: exit %d, want 64", args, code)
		}
	}
	os.WriteFile(filepath.Join(etc, "dmarcreportinterval"), []byte("5h\n"), 0o640)
	if _, err := policy.Load(etc); err == nil || !strings.Contains(err.Error(), "dmarcreportinterval") {
		t.Errorf("5h interval accepted: %v", err)
	}
	os.WriteFile(filepath.Join(etc, "dmarcreportinterval"), []byte("6h\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "dmarcreportfrom"), []byte("not an address\n"), 0o640)
	if _, err := policy.Load(etc); err == nil || !strings.Contains(err.Error(), "dmarcreportfrom") || strings.Contains(err.Error(), "dmarcreportinterval") {
		t.Errorf("bad dmarcreportfrom: %v", err)
	}
}
