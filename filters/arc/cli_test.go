package arc_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/filters/arc"
	"postern/filters/dns/dnstest"
)

// postern check arc on a sealed message of the ValiMail suite, served by
// a local DNS server: the sets, the result and the header field.
func TestCheckMain(t *testing.T) {
	srv := dnstest.Start(t, dnstest.NewZone().Add(valimailKey))
	msg, err := os.ReadFile(filepath.Join("testdata", "valimail", "cv_pass_i2_1_ams1_invalid.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := arc.CheckMain([]string{"--dns", srv.Addr, "--ip", "192.0.2.1", "--authserv-id", "mx.example.net"}, bytes.NewReader(msg), &out, &errOut)
	if code != arc.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"sets: 2\n",
		"set 1: sealed by example.org (key dummy._domainkey.example.org), cv=none\n",
		"  results: lists.example.org; spf=pass smtp.mfrom=jqd@d1.example; dkim=pass (1024-bit key) header.i=@d1.example; dmarc=pass\n",
		"set 2: sealed by example.org (key dummy._domainkey.example.org), cv=pass\n",
		"result: pass\n",
		"oldest-pass: 2\n",
		"Authentication-Results: mx.example.net;\n\tarc=pass (i=2) header.oldest-pass=2 smtp.remote-ip=192.0.2.1\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// A broken message: the result and why; still exit 0.
	out.Reset()
	broken := bytes.Replace(msg, []byte("Hey gang"), []byte("Hey all"), 1)
	if code := arc.CheckMain([]string{"--dns", srv.Addr}, bytes.NewReader(broken), &out, &errOut); code != arc.ExitOK ||
		!strings.Contains(out.String(), "result: fail\nreason: ARC-Message-Signature i=2 (d=example.org): body hash did not verify") {
		t.Errorf("broken: exit %d\n%s", code, out.String())
	}

	for _, args := range [][]string{{"--ip", "nonsense"}, {"extra"}, {"--frobnicate"}} {
		if code := arc.CheckMain(args, strings.NewReader(""), &out, &errOut); code != arc.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, arc.ExitUsage)
		}
	}
	out.Reset()
	if code := arc.CheckMain([]string{"--help"}, strings.NewReader(""), &out, &errOut); code != arc.ExitOK || !strings.Contains(errOut.String(), "usage: postern check arc") {
		t.Errorf("--help: exit %d %q", code, errOut.String())
	}
}
