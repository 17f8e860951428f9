package deliver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMboxFormatQuotesFromLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mbox")
	msg := []byte("From: a@example.org\nSubject: x\n\nFrom here on\n>From stays\nlast line without newline")
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := deliverMbox(context.Background(), p, msg, "", now, MboxLock{Ext: ".lock", Sleep: 0, Timeout: time.Second}, 0o600); err != nil {
		t.Fatal(err)
	}
	want := "From MAILER-DAEMON Tue Jan  2 03:04:05 2024\nFrom: a@example.org\nSubject: x\n\n>From here on\n>From stays\nlast line without newline\n\n"
	if got := readFile(t, p); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if fileExists(p + ".lock") {
		t.Fatal("lock left behind")
	}
}

func TestMboxConcurrentDeliveriesDoNotInterleave(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mbox")
	body := strings.Repeat("line of text\n", 2000)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("Subject: %d\n\n%s", i, body)
			if err := deliverMbox(context.Background(), p, []byte(msg), "s@example.org", time.Now(), MboxLock{Ext: ".lock", Timeout: 10 * time.Second}, 0o600); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := readFile(t, p)
	if n := strings.Count(got, "\nFrom s@example.org ") + 1; n != 8 {
		t.Fatalf("%d messages", n)
	}
	for _, part := range strings.Split(got, "\n\nFrom s@example.org ") {
		if n := strings.Count(part, "line of text"); n != 2000 || strings.Count(part, "Subject: ") != 1 {
			t.Fatalf("interleaved message: %d lines", n)
		}
	}
}

func TestMboxStaleLockIsTakenOverAndFreshLockWaits(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mbox")
	lock := MboxLock{Ext: ".lock", Sleep: 0, Timeout: 2 * time.Second}
	os.WriteFile(p+".lock", []byte("999999\n"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p+".lock", old, old)
	if err := deliverMbox(context.Background(), p, []byte("Subject: a\n\nx\n"), "", time.Now(), lock, 0o600); err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	// A lock its owner keeps refreshing (maildrop's LOCKREFRESH) is never
	// stale: ErrLocked after the timeout.
	os.WriteFile(p+".lock", nil, 0o600)
	stop := make(chan struct{})
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				now := time.Now()
				os.Chtimes(p+".lock", now, now)
			}
		}
	}()
	start := time.Now()
	err := deliverMbox(context.Background(), p, []byte("Subject: b\n\nx\n"), "", time.Now(), MboxLock{Ext: ".lock", Sleep: 0, Timeout: 300 * time.Millisecond}, 0o600)
	if !errors.Is(err, ErrLocked) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	close(stop)
	<-refreshed
	// Released while we wait: the delivery goes through.
	go func() { time.Sleep(200 * time.Millisecond); os.Remove(p + ".lock") }()
	if err := deliverMbox(context.Background(), p, []byte("Subject: c\n\nx\n"), "", time.Now(), MboxLock{Ext: ".lock", Sleep: 0, Timeout: 5 * time.Second}, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(readFile(t, p), "From MAILER-DAEMON "); got != 2 {
		t.Fatalf("%d messages", got)
	}
}

func TestMboxLockVarsFromFilter(t *testing.T) {
	l := mboxLockFromVars(map[string]string{"LOCKEXT": ".lck", "LOCKSLEEP": "1", "LOCKTIMEOUT": "30"})
	if l.Ext != ".lck" || l.Sleep != time.Second || l.Timeout != 30*time.Second {
		t.Fatalf("%+v", l)
	}
	l = mboxLockFromVars(map[string]string{"LOCKEXT": "/../x", "LOCKSLEEP": "-1", "LOCKTIMEOUT": "abc"})
	if l != DefaultMboxLock {
		t.Fatalf("bad values should keep defaults: %+v", l)
	}
}

func TestMboxFilterUsesLockext(t *testing.T) {
	s := newTestSite(t, "alice@example.test")
	home := s.home("alice@example.test")
	os.WriteFile(filepath.Join(home, "box.lock"), nil, 0o600) // held under the default name
	s.write("alice@example.test", ".mailfilter", "LOCKEXT=.lk\nto ./box\n")
	wantOK(t, s.deliver("alice@example.test", "", testMessage))
	if !strings.Contains(readFile(t, filepath.Join(home, "box")), "Subject: hello there") {
		t.Fatal("not delivered")
	}
}
