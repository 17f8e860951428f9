package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/authdaemon"
	"postern/auth/authtool"
	"postern/policy"
)

// TestAuthdaemond: "postern authdaemond --socket PATH" answers the
// configuration's accounts there, reads authmodulelist again on SIGHUP,
// and on SIGTERM stops and removes the socket.
func TestAuthdaemond(t *testing.T) {
	root := t.TempDir()
	if err := policy.Init(root, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(root, "etc")
	var out, errb bytes.Buffer
	if code := authtool.UserMain([]string{"add", "alice@example.test", "--password", "pw1"}, strings.NewReader(""), &out, &errb, etc); code != 0 {
		t.Fatalf("user add: %s%s", out.String(), errb.String())
	}
	base, err := os.MkdirTemp("", "pad")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	sock := filepath.Join(base, "authdaemon", "socket")

	var logs bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"postern", "--config", etc, "authdaemond", "--socket", sock}, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &logs})
	}()
	c := &authdaemon.Client{Path: sock, Timeout: 5 * time.Second}
	ctx := context.Background()
	var a *auth.Account
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a, err = c.Authenticate(ctx, "imap", "alice@example.test", "pw1")
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("authdaemond ended with %d:\n%s", code, logs.String())
		default:
		}
	}
	if err != nil {
		t.Fatalf("login over the socket: %v\n%s", err, logs.String())
	}
	if a.Name != "alice@example.test" || !strings.HasPrefix(a.Home, root) {
		t.Errorf("account: %+v", a)
	}
	if _, err := c.Authenticate(ctx, "imap", "alice@example.test", "wrong"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("wrong password: %v", err)
	}

	// SIGHUP: the new module list (a daemon that does not answer) is in
	// force for the next request.
	os.WriteFile(filepath.Join(etc, "authdaemonclient"), []byte(filepath.Join(base, "nothing")+"\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "authmodulelist"), []byte("authdaemon\n"), 0o640)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err = c.Lookup(ctx, "alice@example.test")
		if errors.Is(err, auth.ErrTemporary) || time.Now().After(deadline) {
			break
		}
	}
	if !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("after SIGHUP with an authdaemon module that cannot be reached: %v\n%s", err, logs.String())
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after SIGTERM:\n%s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("authdaemond did not stop on SIGTERM")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}

// TestAuthdaemondArgv0: a link named authdaemond is the command.
func TestAuthdaemondArgv0(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"/usr/lib/postern/authdaemond", "--help"}, &env{stdout: &out, stderr: &errb})
	if code != 0 || !strings.Contains(errb.String()+out.String(), "Usage: postern authdaemond") {
		t.Errorf("authdaemond --help: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
