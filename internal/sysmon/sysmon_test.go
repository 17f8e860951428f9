package sysmon

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// currentSyscall reads the system call thread tid is blocked in: its
// number, or "running".
func currentSyscall(t *testing.T, tid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
	if err != nil {
		t.Skipf("no /proc syscall file: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// TestMonitorThreadIsSysmon checks that the thread Relax picks behaves as
// sysmon does: while a goroutine keeps a processor busy, sysmon sleeps in
// nanosleep (Linux x86-64 system call 35) between its checks, which no
// other runtime thread does for long.
func TestMonitorThreadIsSysmon(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("system call numbers checked are Linux x86-64's")
	}
	tid, err := monitorThread()
	if err != nil {
		t.Fatal(err)
	}
	if tid == os.Getpid() {
		t.Fatal("picked the main thread")
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
		}
	}()
	defer func() { stop.Store(true); <-done }()
	time.Sleep(5 * time.Millisecond)
	sleeping, samples := 0, 200
	for range samples {
		if currentSyscall(t, tid) == "35" {
			sleeping++
		}
		time.Sleep(100 * time.Microsecond)
	}
	if sleeping < samples/2 {
		t.Fatalf("thread %d was in nanosleep in %d of %d samples; sysmon would be in most", tid, sleeping, samples)
	}
}

func TestRelaxSetsTheSlack(t *testing.T) {
	before, err := Slack()
	if err != nil {
		t.Skipf("cannot read the slack: %v", err)
	}
	defer Relax(before)
	if err := Relax(3 * time.Millisecond); err != nil {
		if os.IsPermission(err) {
			t.Skipf("not allowed here: %v", err)
		}
		t.Fatal(err)
	}
	got, err := Slack()
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Millisecond {
		t.Fatalf("slack = %v, want 3ms", got)
	}
}
