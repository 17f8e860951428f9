//go:build pam && cgo

package pamauth

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"postern/auth"
)

// confDir writes PAM service files into a directory of the test's own:
// "imap" checks the password with pam_exec running a script (the password
// on its standard input), and lets the account in; "pop3" refuses every
// account in its account stack.
func confDir(t *testing.T, password string) string {
	t.Helper()
	if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_exec.so"); err != nil {
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/security/pam_exec.so"); err != nil {
			t.Skip("pam_exec.so not found")
		}
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "check.sh")
	os.WriteFile(script, []byte("#!/bin/sh\npw=$(tr -d '\\000')\n[ \"$pw\" = '"+password+"' ]\n"), 0o700)
	// pam_exec fails with a system error; as pam_unix would, the stack
	// answers a wrong password with pam_deny's authentication error.
	authStack := "auth [success=1 default=ignore] pam_exec.so quiet expose_authtok " + script + "\nauth requisite pam_deny.so\nauth required pam_permit.so\n"
	os.WriteFile(filepath.Join(dir, "imap"), []byte(authStack+"account required pam_permit.so\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pop3"), []byte(authStack+"account required pam_deny.so\n"), 0o600)
	return dir
}

func TestPAM(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Config{ConfDir: confDir(t, "pam secret")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := m.Authenticate(ctx, "imap", me.Username, "pam secret")
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	if a.Name != me.Username || a.Home != me.HomeDir || a.MaildirPath() != filepath.Join(me.HomeDir, "Maildir") || a.Module != "authpam" {
		t.Errorf("account: %+v", a)
	}
	if _, err := m.Authenticate(ctx, "imap", me.Username, "wrong"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := m.Authenticate(ctx, "imap", me.Username, ""); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("empty password: %v", err)
	}
	if _, err := m.Authenticate(ctx, "pop3", me.Username, "pam secret"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("the account stack's refusal: %v", err)
	}
	for _, name := range []string{"no-such-user-here", me.Username + "@example.test", "a b", ""} {
		if _, err := m.Authenticate(ctx, "imap", name, "pam secret"); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("%q: %v, want no such user", name, err)
		}
	}
}
