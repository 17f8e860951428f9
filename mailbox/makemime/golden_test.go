package makemime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGolden compares our output with Courier's, recorded in
// testdata/golden, so that it runs where makemime is not installed.
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "text/plain", "-e", "quoted-printable", "qp-input.txt"}, "qp.out"},
		{[]string{"-c", "image/gif", "-C", "utf-8", "-N", "my file.gif", "-a", "Content-Disposition: attachment", "zeros.bin"}, "base64-name.out"},
		{[]string{"-c", "auto", "qp-input.txt"}, "auto.out"},
		{[]string{"-j", "(", "-m", "multipart/alternative", "-a", "Mime-Version: 1.0", "(", "-c", "text/plain", "text.txt", ")", ")",
			"(", "-c", "text/html", "-N", strings.Repeat("n", 120), "text.txt", ")"}, "nested.out"},
	} {
		want, err := os.ReadFile(filepath.Join("testdata/golden", c.want))
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := Run(context.Background(), Config{Now: time.Now, PID: 1, Dir: "testdata/golden"}, c.args, strings.NewReader(""), &out, &errb)
		if code != 0 {
			t.Errorf("%q: exit %d (%s)", c.args, code, errb.String())
		}
		if got := normalize(out.Bytes()); !bytes.Equal(got, want) {
			t.Errorf("%q:\ngot:  %q\nwant: %q", c.args, got, want)
		}
	}
}

// TestChooseEncoding pins the thresholds Courier uses.
func TestChooseEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"hello\n":                         "7bit",
		"h\xe9llo\n":                      "8bit",
		"a\x01b\n":                        "8bit",
		"a\x00b":                          "base64",
		strings.Repeat("x", 990) + "\n":   "7bit",
		strings.Repeat("x", 991) + "\n":   "quoted-printable",
		"\xe9" + strings.Repeat("x", 991): "quoted-printable",
	} {
		if got := chooseEncoding([]byte(in)); got != want {
			t.Errorf("chooseEncoding(%.20q...) = %s, want %s", in, got, want)
		}
	}
}
