// Package sysmon lets the Go runtime's monitor thread sleep less precisely.
//
// The runtime's sysmon thread wakes every 20 µs while the program is busy
// (to take processors back from system calls, preempt long-running
// goroutines and poll the network), and goes back to a deep sleep each time
// every processor idles. A server that answers short requests one after
// the other, as an SMTP server does at one client at a time, keeps it at
// that 20 µs rhythm: measured on a 2-core virtual machine, its wake-ups were
// a third of the server's context switches, and a millisecond of slack cut
// the server's CPU time per message by a fifth (docs/serve.md, ENVIRONMENT;
// bench/README.md). Each wake-up is a nanosleep whose precision the
// thread's timer slack sets; Relax raises that slack for this one thread,
// so that the kernel may gather its wake-ups with others. The runtime's
// duties are then done up to the slack later: a processor is taken back
// from a blocked system call after 20 µs plus up to the slack (the other
// processors run goroutines meanwhile), a goroutine is preempted after
// 10 ms plus up to the slack.
//
// Linux only, and only for a process allowed to change another thread's
// slack (CAP_SYS_NICE; root has it). Elsewhere Relax reports why not and
// changes nothing.
package sysmon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// ErrUnsupported is returned where the timer slack cannot be set.
var ErrUnsupported = errors.New("sysmon: no per-thread timer slack here")

// Relax sets the timer slack of the runtime's monitor thread. It must be
// called from the main goroutine's process, any time after start.
func Relax(slack time.Duration) error {
	tid, err := monitorThread()
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/proc/%d/timerslack_ns", tid)
	if err := os.WriteFile(path, []byte(strconv.FormatInt(slack.Nanoseconds(), 10)), 0); err != nil {
		return fmt.Errorf("sysmon: %w", err)
	}
	return nil
}

// Slack returns the monitor thread's present timer slack.
func Slack() (time.Duration, error) {
	tid, err := monitorThread()
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
	if err != nil {
		return 0, fmt.Errorf("sysmon: %w", err)
	}
	ns, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysmon: %w", err)
	}
	return time.Duration(ns), nil
}

// monitorThread finds sysmon's thread: the runtime starts it before any
// other thread, first thing in runtime.main, and Linux hands out thread IDs
// in increasing order, wrapping at pid_max. So it is the first thread
// after the main one in creation order: the smallest ID above the
// process's, or, when every later one wrapped, the smallest below it.
func monitorThread() (int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, ErrUnsupported
	}
	pid := os.Getpid()
	var above, below []int
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		switch {
		case err != nil || tid == pid:
		case tid > pid:
			above = append(above, tid)
		default:
			below = append(below, tid)
		}
	}
	switch {
	case len(above) > 0:
		return slices.Min(above), nil
	case len(below) > 0:
		return slices.Min(below), nil
	}
	return 0, ErrUnsupported
}
