package dotforward

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const message = "Delivered-To: alice@example.test\nReturn-Path: <bob@example.org>\nDelivered-To: list@example.net\nSubject: hi\n\nbody\n"

// run runs the command with HOME=home and the given DTLINE.
func run(t *testing.T, home, dtline string, args ...string) (int, string, string) {
	t.Helper()
	env := map[string]string{"HOME": home, "DTLINE": dtline}
	var out, errb bytes.Buffer
	code := Main(args, func(k string) string { return env[k] }, strings.NewReader(message), &out, &errb)
	return code, out.String(), errb.String()
}

func writeForward(t *testing.T, home, content string) string {
	t.Helper()
	p := filepath.Join(home, ".forward")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const dtline = "Delivered-To: alice@example.test\n"

func TestMainExitCodesAndOutput(t *testing.T) {
	home := t.TempDir()
	if code, out, errs := run(t, home, dtline); code != 0 || out != "" || errs != "" {
		t.Fatalf("no .forward: %d %q %q", code, out, errs)
	}
	writeForward(t, home, "joe@example.org, list@example.net\n\"|/usr/bin/vacation alice\"\n")
	code, out, errs := run(t, home, dtline)
	if code != 99 || out != "!joe@example.org\n|/usr/bin/vacation alice\n" {
		t.Fatalf("forward: %d %q %q", code, out, errs)
	}
	if !strings.Contains(errs, "not forwarding to list@example.net") {
		t.Fatalf("loop not explained: %q", errs)
	}
	writeForward(t, home, "\\alice\njoe@example.org\n")
	if code, out, _ := run(t, home, dtline); code != 0 || out != "!joe@example.org\n" {
		t.Fatalf("own address: %d %q", code, out)
	}
	writeForward(t, home, "# nothing yet\n\n")
	if code, out, _ := run(t, home, dtline); code != 0 || out != "" {
		t.Fatalf("comments only: %d %q", code, out)
	}
	writeForward(t, home, "joe@example.org\nJoe Bloggs\n")
	if code, out, errs := run(t, home, dtline); code != ExitTempFail || out != "" || !strings.Contains(errs, ".forward line 2: ") {
		t.Fatalf("bad line: %d %q %q", code, out, errs)
	}
	writeForward(t, home, ":include: missing.list\n")
	if code, out, errs := run(t, home, dtline); code != ExitNoUser || out != "" || !strings.Contains(errs, "missing.list") {
		t.Fatalf("missing include: %d %q %q", code, out, errs)
	}
	if err := os.WriteFile(filepath.Join(home, "team.list"), []byte("ann@example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeForward(t, home, ":include: team.list\n")
	if code, out, errs := run(t, home, dtline); code != 99 || out != "!ann@example.org\n" {
		t.Fatalf("include: %d %q %q", code, out, errs)
	}
}

func TestMainEnvironment(t *testing.T) {
	home := t.TempDir()
	writeForward(t, home, "joe@example.org\n")
	if code, out, errs := run(t, home, ""); code != 0 || out != "" || !strings.Contains(errs, "DTLINE is not set") {
		t.Fatalf("no DTLINE: %d %q %q", code, out, errs)
	}
	if code, _, _ := run(t, "", dtline); code != 0 {
		t.Fatalf("no HOME: %d", code)
	}
	if code, _, errs := run(t, filepath.Join(home, "missing"), dtline); code != ExitTempFail || !strings.Contains(errs, "home directory") {
		t.Fatalf("missing HOME: %d %q", code, errs)
	}
	if code, out, _ := run(t, home, dtline, "--help"); code != 0 || !strings.Contains(out, "Usage: dotforward") {
		t.Fatalf("--help: %d %q", code, out)
	}
	if code, out, errs := run(t, home, dtline, "./Maildir"); code != 99 || out != "!joe@example.org\n" || !strings.Contains(errs, "arguments ignored") {
		t.Fatalf("argument: %d %q %q", code, out, errs)
	}
}

// A .forward that is not safe to obey is ignored, with the reason: the
// next .courier lines deliver the mail.
func TestMainUnsafeForwardIgnored(t *testing.T) {
	home := t.TempDir()
	p := writeForward(t, home, "joe@example.org\n")
	for _, mode := range []os.FileMode{0o664, 0o646} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if code, out, errs := run(t, home, dtline); code != 0 || out != "" || !strings.Contains(errs, "writable by group or others") {
			t.Fatalf("mode %o: %d %q %q", mode, code, out, errs)
		}
	}
	os.Chmod(p, 0o644)
	if os.Getuid() == 0 {
		// Only root can give the file away.
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if code, out, errs := run(t, home, dtline); code != 0 || out != "" || !strings.Contains(errs, "owned by uid 4242") {
			t.Fatalf("foreign owner: %d %q %q", code, out, errs)
		}
	}
	os.Remove(p)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run(t, home, dtline); code != 0 || out != "" || !strings.Contains(errs, "not a regular file") {
		t.Fatalf("directory: %d %q %q", code, out, errs)
	}
}
