package arc_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters/arc"
	"postern/filters/dns/dnstest"
)

// valimailKey is the key record of the ValiMail ARC test suite
// (dummy._domainkey.example.org), as its YAML folds it: with spaces in p=,
// which a verifier ignores.
const valimailKey = `dummy._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3id Y6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lx j+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"`

// TestValiMailSuite verifies messages sealed by another implementation
// (the suite's, see testdata/valimail/README): what the round trips alone
// cannot show is that our canonicalization and seal input are the
// standard's and not merely consistent with themselves.
func TestValiMailSuite(t *testing.T) {
	srv := dnstest.Start(t, dnstest.NewZone().Add(valimailKey))
	r := newResolver(t, srv.Addr)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "valimail", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		file       string
		change     func(string) string
		status     arc.Status
		instances  int
		oldestPass int
	}{
		{file: "cv_pass_i1_1.eml", status: arc.Pass, instances: 1, oldestPass: 0},
		{file: "cv_pass_i2_1.eml", status: arc.Pass, instances: 2, oldestPass: 0},
		{file: "cv_pass_i2_1_ams1_invalid.eml", status: arc.Pass, instances: 2, oldestPass: 2},
		// h= with white space around its colons.
		{file: "ams_fields_h_cws1.eml", status: arc.Pass, instances: 1, oldestPass: 0},
		// CRLF, as the message arrives by SMTP.
		{file: "cv_pass_i2_1.eml", change: func(m string) string { return strings.ReplaceAll(m, "\n", "\r\n") },
			status: arc.Pass, instances: 2, oldestPass: 0},
		// Changes the suite's signatures must catch.
		{file: "cv_pass_i1_1.eml", change: func(m string) string { return strings.Replace(m, "Hey gang", "Hey all", 1) }, status: arc.Fail},
		{file: "cv_pass_i2_1.eml", change: func(m string) string { return strings.Replace(m, "Subject: Example 1", "Subject: Example 2", 1) }, status: arc.Fail},
		{file: "cv_pass_i2_1.eml", change: func(m string) string {
			return strings.Replace(m, "i=1; lists.example.org;\n    spf=pass", "i=1; lists.example.org;\n    spf=fail", 1)
		}, status: arc.Fail},
		// Folding white space is not a change under relaxed canonicalization.
		{file: "cv_pass_i1_1.eml", change: func(m string) string { return strings.Replace(m, "Subject: Example 1", "Subject:   Example\t 1  ", 1) },
			status: arc.Pass, instances: 1, oldestPass: 0},
	}
	for _, c := range cases {
		msg := read(c.file)
		if c.change != nil {
			changed := c.change(msg)
			if changed == msg {
				t.Fatalf("%s: the change changed nothing", c.file)
			}
			msg = changed
		}
		v := verify(t, r, msg)
		if v.Status != c.status {
			t.Errorf("%s: status %v (%s), want %v", c.file, v.Status, v.Reason, c.status)
			continue
		}
		if c.status == arc.Pass && (v.Instances() != c.instances || v.OldestPass != c.oldestPass || v.OldestSealer() != "example.org") {
			t.Errorf("%s: instances %d oldest-pass %d sealer %q, want %d, %d, example.org", c.file, v.Instances(), v.OldestPass, v.OldestSealer(), c.instances, c.oldestPass)
		}
	}
}
