package makemime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These tests run Courier's makemime (maildrop 2.9.3 in Debian) and ours on
// the same arguments and files and compare standard output, the -o file
// and the exit status byte for byte. Boundaries, random by design
// (=_N_TIME_PID), are normalised. They skip when makemime is not installed.

var boundary = regexp.MustCompile(`=_[0-9]+_[0-9]+_[0-9]+`)

func normalize(b []byte) []byte { return boundary.ReplaceAll(b, []byte("=_BOUNDARY")) }

type result struct {
	stdout []byte
	code   int
	output []byte // the -o file, if any
}

// inputs are the files every case may name.
func inputs(t *testing.T, dir string) {
	t.Helper()
	long := strings.Repeat("x", 991) + "\n"
	files := map[string]string{
		"text.txt":     "hello\nworld\n",
		"latin1.txt":   "h\xe9llo\n",
		"nul.bin":      "a\x00b\n",
		"long.txt":     long,
		"long990.txt":  strings.Repeat("x", 990) + "\n",
		"crlf.txt":     "a\r\nb\r\n",
		"nonl.txt":     "no newline",
		"x100.txt":     strings.Repeat("x", 100),
		"ctl.txt":      "a\x01\x0b\x0c\x1b\x7f\x08b\n",
		"qp.txt":       "a b \nc\t\n\td\r\ne=f\xe9\n",
		"zeros.bin":    strings.Repeat("\x00", 100),
		"empty.txt":    "",
		"allbytes.bin": allBytes(),
		"section.txt":  "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\nhello\nworld\n",
		"section2.txt": "Content-Type: text/html\nContent-Transfer-Encoding: 7bit\n\n<p>hi</p>\n",
		"collection.txt": "X-A: 1\nContent-Type: multipart/mixed;\n boundary=\"zz\"; foo=bar\nX-B: 2\n\nmy preamble\n--zz\n" +
			"Content-Type: text/plain\n\none\n--zz\n\ntwo\n--zz--\nepilogue\n",
		"notmulti.txt": "X: y\n\nbody\n",
		"args1":        "#comment\n  -c\n\ttext/plain\n\n-a\n  X-Y: z  \n-N\nname.txt\ntext.txt\n",
		"args2":        "-j\n(\n  -m\n    multipart/alternative\n  -a\n    Content-Disposition: inline\n  (\n    -c\n      text/plain; charset=iso-8859-1\n    text.txt\n  )\n)\n-o\n  out.msg\n(\n  -c\n    text/html\n  latin1.txt\n)\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func allBytes() string {
	var b strings.Builder
	for i := 0; i < 256; i++ {
		b.WriteByte(byte(i))
	}
	return b.String()
}

func outputFile(args []string) string {
	for i, a := range args {
		if a == "-o" && i+1 < len(args) && !strings.HasPrefix(args[i+1], "&") {
			return args[i+1]
		}
	}
	return ""
}

func runCourier(t *testing.T, bin, dir string, args []string, stdin string) result {
	t.Helper()
	os.Remove(filepath.Join(dir, "out.msg"))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r := result{stdout: out.Bytes(), code: code}
	if o := outputFile(args); o != "" {
		r.output, _ = os.ReadFile(filepath.Join(dir, o))
	} else if b, err := os.ReadFile(filepath.Join(dir, "out.msg")); err == nil {
		r.output = b
	}
	return r
}

func runOurs(t *testing.T, dir string, args []string, stdin string) result {
	t.Helper()
	os.Remove(filepath.Join(dir, "out.msg"))
	var out, errb bytes.Buffer
	code := Run(context.Background(), Config{Now: time.Now, PID: 4242, Dir: dir}, args, strings.NewReader(stdin), &out, &errb)
	r := result{stdout: out.Bytes(), code: code}
	if o := outputFile(args); o != "" {
		r.output, _ = os.ReadFile(filepath.Join(dir, o))
	} else if b, err := os.ReadFile(filepath.Join(dir, "out.msg")); err == nil {
		r.output = b
	}
	return r
}

func TestCourierMakemime(t *testing.T) {
	bin, err := exec.LookPath("makemime")
	if err != nil {
		t.Skip("Courier's makemime is not installed")
	}
	if target, err := filepath.EvalSymlinks(bin); err == nil && filepath.Base(target) == "postern" {
		t.Skip("makemime on $PATH is Postern's own, not Courier's")
	}
	dir := t.TempDir()
	inputs(t, dir)
	var cases [][]string
	for _, f := range []string{"text.txt", "latin1.txt", "nul.bin", "long.txt", "long990.txt", "crlf.txt", "nonl.txt", "x100.txt", "ctl.txt", "qp.txt", "zeros.bin", "empty.txt", "allbytes.bin"} {
		cases = append(cases, []string{"-c", "auto", f}, []string{"-c", "image/gif", f})
		for _, e := range []string{"7bit", "8bit", "quoted-printable", "base64"} {
			cases = append(cases, []string{"-c", "auto", "-e", e, f}, []string{"-c", "text/plain", "-e", e, f})
		}
		cases = append(cases, []string{"-c", "text/plain", "-C", "iso-8859-1", "-N", "file.txt", "-a", "X: y", "-a", "Content-Disposition: inline", f})
	}
	for _, n := range []string{"a", "my file", "é", strings.Repeat("n", 70), strings.Repeat("n", 71), strings.Repeat("n", 200),
		"a*b", "a'b", "a%b", "a(b)", "a~b!c#d$e&f+g{h}|", "a<b", "a?b", "a=b", "a;b", `a\b`, `a"b`} {
		cases = append(cases, []string{"-c", "text/plain", "-N", n, "text.txt"}, []string{"-c", "text/plain", "-C", "utf-8", "-N", n, "text.txt"})
	}
	cases = append(cases,
		[]string{"-m", "multipart/alternative", "-a", "Mime-Version: 1.0", "section.txt"},
		[]string{"-m", "multipart/mixed", "-e", "7bit", "section.txt"},
		[]string{"-m", "multipart/mixed", "-e", "base64", "section.txt"},
		[]string{"-m", "section.txt"},
		[]string{"-j", "collection.txt", "section2.txt"},
		[]string{"-j", "notmulti.txt", "section2.txt"},
		[]string{"-j", "collection.txt", "-o", "out.msg", "section2.txt"},
		[]string{"-j", "missing.txt", "section2.txt"},
		[]string{"-c", "text/plain", "missing.txt"},
		[]string{},
		[]string{"-c", "text/plain"},
		[]string{"-c", "text/plain", "-e", "bogus", "text.txt"},
		[]string{"-c", "text/plain", "text.txt", "extra"},
		[]string{"-c", "text/plain", "-o", "out.msg", "text.txt"},
		[]string{"-c", "text/plain", "-", "-"},
		[]string{"-c", "text/plain", "-"},
		[]string{"-c", "auto", "-e", "base64", "-"},
		[]string{"-m", "multipart/mixed", "(", "-c", "text/plain", "-", ")"},
		[]string{"@args1"},
		[]string{"@args2"},
		[]string{"@args1", "text.txt"},
		[]string{"@missing"},
		[]string{"-j", "(", "-m", "multipart/alternative", "-a", "Content-Disposition: inline", "(", "-c", "text/plain; charset=iso-8859-1", "text.txt", ")", ")",
			"(", "-c", "text/html; charset=iso-8859-1", "latin1.txt", ")"},
		[]string{"-m", "multipart/mixed", "(", "-c", "text/plain", "-o", "x", "text.txt", ")"},
		[]string{"-c", "text/plain", "(", "-c", "text/html", "text.txt"},
		[]string{"-c", "text/plain", "-Z", "text.txt"},
		[]string{"-e", "7bit", "-c", "text/plain", "text.txt"},
		[]string{"-a", "X: y", "-m", "multipart/mixed", "section.txt"},
	)
	for _, args := range cases {
		name := fmt.Sprintf("%q", args)
		c, o := runCourier(t, bin, dir, args, "stdin data\n"), runOurs(t, dir, args, "stdin data\n")
		if got, want := normalize(o.stdout), normalize(c.stdout); !bytes.Equal(got, want) {
			t.Errorf("%s: stdout\ncourier: %q\nours:    %q", name, want, got)
		}
		if got, want := normalize(o.output), normalize(c.output); !bytes.Equal(got, want) {
			t.Errorf("%s: output file\ncourier: %q\nours:    %q", name, want, got)
		}
		if o.code != c.code {
			t.Errorf("%s: exit %d, Courier %d", name, o.code, c.code)
		}
	}
	// Options and content from one pipe: "@-", then "-" ends the options
	// and "&0" reads the rest.
	for _, in := range []string{"-c\ntext/plain\n&0\n-\ninline data\n", "-c\ntext/plain\n-\n-\ninline data\n"} {
		c, o := runCourier(t, bin, dir, []string{"@-"}, in), runOurs(t, dir, []string{"@-"}, in)
		if !bytes.Equal(normalize(o.stdout), normalize(c.stdout)) || o.code != c.code {
			t.Errorf("@- %q: ours %q exit %d, Courier %q exit %d", in, o.stdout, o.code, c.stdout, c.code)
		}
	}
}
