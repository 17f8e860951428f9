package deliver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrLocked means an mbox file's dot-lock could not be taken within
// LOCKTIMEOUT (another delivery or a mail reader holds it).
var ErrLocked = errors.New("deliver: mailbox locked")

// MboxLock is maildrop's mbox locking: a dot-lock FILE+Ext made with
// O_EXCL, retried every Sleep, taken over when older than Timeout
// (maildropfilter(7): LOCKEXT, LOCKSLEEP, LOCKTIMEOUT), plus flock(2) on the
// file itself, so that readers using either convention are kept out.
type MboxLock struct {
	Ext     string        // ".lock"
	Sleep   time.Duration // 5s
	Timeout time.Duration // 60s
}

// DefaultMboxLock is maildrop's default.
var DefaultMboxLock = MboxLock{Ext: ".lock", Sleep: 5 * time.Second, Timeout: 60 * time.Second}

// mboxLockFromVars reads LOCKEXT, LOCKSLEEP and LOCKTIMEOUT (seconds) from
// a filter's variables, keeping the defaults for missing or bad values.
func mboxLockFromVars(vars map[string]string) MboxLock {
	l := DefaultMboxLock
	if v, ok := vars["LOCKEXT"]; ok && v != "" && !bytes.ContainsAny([]byte(v), "/\x00") {
		l.Ext = v
	}
	if n, err := strconv.Atoi(vars["LOCKSLEEP"]); err == nil && n >= 0 && n <= 3600 {
		l.Sleep = time.Duration(n) * time.Second
	}
	if n, err := strconv.Atoi(vars["LOCKTIMEOUT"]); err == nil && n > 0 && n <= 86400 {
		l.Timeout = time.Duration(n) * time.Second
	}
	return l
}

// deliverMbox appends msg to the mbox file path in the traditional format:
// a "From SENDER DATE" line (an empty sender is MAILER-DAEMON, as maildrop
// writes it), the message with lines starting "From " quoted as
// ">From ", and a blank line. The file is locked, synced, and on any write
// error truncated back to where it was, so a failed delivery leaves no half
// message behind.
func deliverMbox(ctx context.Context, path string, msg []byte, sender string, now time.Time, lock MboxLock, perm os.FileMode) error {
	unlock, err := dotLock(ctx, path+lock.Ext, lock)
	if err != nil {
		return fmt.Errorf("mbox %s: %w", path, err)
	}
	defer unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("mbox %s: open: %w", path, err)
	}
	defer f.Close()
	if err := flockWait(ctx, f, lock.Timeout); err != nil {
		return fmt.Errorf("mbox %s: flock: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("mbox %s: %w", path, err)
	}
	start := st.Size()
	if err := writeMboxMessage(f, msg, sender, now); err != nil {
		f.Truncate(start)
		return fmt.Errorf("mbox %s: write: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Truncate(start)
		return fmt.Errorf("mbox %s: sync: %w", path, err)
	}
	return nil
}

// AppendMbox appends msg (LF line ends) to the mbox file at path with
// maildrop's locking (dot-lock and flock), creating it with mode 0600, as
// one "From " entry; the file is synced, and left as it was on failure.
func AppendMbox(ctx context.Context, path string, msg []byte, sender string) error {
	return deliverMbox(ctx, path, msg, sender, time.Now(), mboxLockFromVars(nil), 0o600)
}

func writeMboxMessage(f io.Writer, msg []byte, sender string, now time.Time) error {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	w := bufio.NewWriterSize(f, 64*1024)
	fmt.Fprintf(w, "From %s %s\n", sender, now.Format("Mon Jan _2 15:04:05 2006"))
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line = msg[:i+1]
		}
		msg = msg[len(line):]
		// Every line, header included: a message that starts with its
		// own "From " line (an mbox export) must not start a new
		// message, and maildrop 2.9.3 quotes it too.
		if bytes.HasPrefix(line, []byte("From ")) {
			w.WriteByte('>')
		}
		w.Write(line)
		if line[len(line)-1] != '\n' {
			w.WriteByte('\n')
		}
	}
	w.WriteByte('\n')
	return w.Flush()
}

// dotLock takes the lock file name with O_EXCL. A lock older than
// lock.Timeout is stale and removed (the owner died); otherwise it waits
// lock.Sleep between tries and gives up with ErrLocked after lock.Timeout.
func dotLock(ctx context.Context, name string, lock MboxLock) (func(), error) {
	sleep := lock.Sleep
	if sleep <= 0 {
		sleep = 100 * time.Millisecond
	}
	deadline := time.Now().Add(lock.Timeout)
	for {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(name) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("dot-lock %s: %w", name, err)
		}
		if st, err := os.Lstat(name); err == nil && time.Since(st.ModTime()) > lock.Timeout {
			os.Remove(name)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s held for more than %s", ErrLocked, name, lock.Timeout)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// flockWait takes an exclusive flock, polling so that it can give up.
func flockWait(ctx context.Context, f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: flock held for more than %s", ErrLocked, timeout)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
