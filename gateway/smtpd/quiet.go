package smtpd

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Quiet reads. While a server has only a few sessions open, a session
// waiting for its client's next line waits in the kernel, on its own
// socket (ppoll), for up to QuietWait before it hands the wait to the Go
// runtime's network poller. Parked in the poller, a goroutine is woken by
// the poller's thread and then scheduled, and the scheduler wakes a second
// thread to look for work: at one SMTP client at a time that was most of
// the server's time between commands. Woken straight from ppoll, the
// thread that asked goes on at once, as a process-per-connection server
// does. The cost is a thread per quiet session while it waits, hence the
// bound on sessions; a client slower than QuietWait gets the poller as
// before.

// The defaults of Options.QuietSessions and Options.QuietWait.
const (
	DefaultQuietSessions = 2
	DefaultQuietWait     = 2 * time.Millisecond
)

var (
	quietMu       sync.Mutex
	quietSessions = DefaultQuietSessions
	quietWait     = DefaultQuietWait
)

// SetQuietDefault sets the QuietSessions and QuietWait that servers made
// afterwards use when their Options leave them zero; sessions < 0 turns
// quiet reads off.
func SetQuietDefault(sessions int, wait time.Duration) {
	quietMu.Lock()
	defer quietMu.Unlock()
	quietSessions, quietWait = sessions, wait
}

func quietDefault() (int, time.Duration) {
	quietMu.Lock()
	defer quietMu.Unlock()
	return quietSessions, quietWait
}

// quietRead reads from the connection's socket directly, first waiting in
// ppoll when the socket is empty; deadlines and closing are honoured by
// the runtime's RawRead around it.
func quietRead(rc syscall.RawConn, p []byte, wait time.Duration) (int, error) {
	var n int
	var err error
	waited := false
	rerr := rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), p)
			if err == unix.EINTR {
				continue
			}
			if err != unix.EAGAIN || waited {
				return err != unix.EAGAIN
			}
			waited = true
			ts := unix.NsecToTimespec(wait.Nanoseconds())
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, perr := unix.Ppoll(fds, &ts, nil); perr != nil && perr != unix.EINTR {
				return false
			}
		}
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// quietReader reports whether nc can be read by quietRead, and how.
func quietReader(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
