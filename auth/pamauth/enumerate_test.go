package pamauth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/auth"
)

func listing(t *testing.T, path string) ([]*auth.Account, string) {
	t.Helper()
	var logs bytes.Buffer
	m := &Module{cfg: Config{PasswdFile: path}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var got []*auth.Account
	if err := m.Enumerate(context.Background(), func(a *auth.Account) error { got = append(got, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return got, logs.String()
}

// TestEnumerate: the passwd file's accounts from uid 100 up, in its
// order, as Courier's authpam lists them; entries a lookup could not use
// are logged and left out; NIS lines and comments are passed over.
func TestEnumerate(t *testing.T) {
	got, logs := listing(t, "testdata/passwd")
	var names []string
	for _, a := range got {
		names = append(names, a.Name)
	}
	if want := "messagebus alice erin gina bob"; strings.Join(names, " ") != want {
		t.Fatalf("listed %v, want %s", names, want)
	}
	a := got[1]
	if a.UID != 1001 || a.GID != 1002 || a.Home != "/home/alice" || a.MaildirPath() != "/home/alice/Maildir" ||
		a.Fields["gecos"] != "Alice Liddell" || a.Module != "authpam" {
		t.Errorf("alice: %+v", a)
	}
	if e := got[2]; e.Home != "/home/erin" || e.UID != 1006 {
		t.Errorf("erin, without a shell: %+v", e)
	}
	if b := got[4]; b.Home != "/home/bob" || b.UID != 1002 {
		t.Errorf("bob, on a line ending in CR LF: %+v", b)
	}
	for _, want := range []string{"bad uid", "carol", "dave", "line=13", "frank@example.test"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not mention %s:\n%s", want, logs)
		}
	}
	for _, quiet := range []string{"nisuser", "blocked", "root", "daemon"} {
		if strings.Contains(logs, quiet) {
			t.Errorf("%s was logged:\n%s", quiet, logs)
		}
	}
}

// TestEnumerateSystem: this machine's /etc/passwd; every account listed
// is the one a lookup returns.
func TestEnumerateSystem(t *testing.T) {
	m := &Module{log: slog.New(slog.DiscardHandler)}
	n := 0
	err := m.Enumerate(context.Background(), func(l *auth.Account) error {
		n++
		if l.UID < MinListedUID {
			t.Errorf("%s has uid %d, below %d", l.Name, l.UID, MinListedUID)
		}
		a, err := m.Lookup(context.Background(), l.Name)
		if err != nil || a.UID != l.UID || a.GID != l.GID || a.Home != l.Home || a.Fields["gecos"] != l.Fields["gecos"] {
			t.Errorf("lookup of listed %s: %v %+v, listed %+v", l.Name, err, a, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d accounts in /etc/passwd", n)
}

// TestEnumerateLongLine: a line too long to be an account is left out
// and the listing goes on after it; a missing file is a temporary failure.
func TestEnumerateLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	long := "x:" + strings.Repeat("y", maxPasswdLine+10) + ":1000:1000::/home/x:/bin/sh\n"
	if err := os.WriteFile(path, []byte("a:x:1000:1000::/home/a:/bin/sh\n"+long+"b:x:1001:1001::/home/b:/bin/sh"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, logs := listing(t, path)
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || !strings.Contains(logs, "too long") {
		t.Errorf("listed %+v, log %s", got, logs)
	}
	m := &Module{cfg: Config{PasswdFile: filepath.Join(t.TempDir(), "none")}, log: slog.New(slog.DiscardHandler)}
	if err := m.Enumerate(context.Background(), func(*auth.Account) error { return nil }); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("no passwd file: %v, want a temporary failure", err)
	}
}

// FuzzParsePasswdLine: any line gives an account a lookup could use, no
// account, or an error; never a panic.
func FuzzParsePasswdLine(f *testing.F) {
	data, err := os.ReadFile("testdata/passwd")
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f.Add(l)
	}
	f.Add("a:x:99999999999999999999:1::/h:/s")
	f.Add("a:x:-1:1::/h:/s")
	f.Add(":::::::")
	f.Fuzz(func(t *testing.T, line string) {
		a, err := ParsePasswdLine(line)
		if err != nil || a == nil {
			return
		}
		if !systemName(a.Name) || a.UID < 0 || a.GID < 0 || !strings.HasPrefix(a.Home, "/") ||
			strings.ContainsAny(a.Home+a.Fields["gecos"], "\n\t\x00") {
			t.Errorf("%q gave %+v", line, a)
		}
	})
}
