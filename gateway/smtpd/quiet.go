package smtpd

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Quiet sessions. A connection accepted while the server has only a few
// sessions open is taken out of the Go runtime's network poller: the
// session reads and writes its socket with plain system calls and, when
// the socket is empty, waits in the kernel on that socket alone (ppoll)
// for up to QuietWait. Woken straight from ppoll, the thread that asked
// goes on at once, as a process-per-connection server does.
//
// In the poller, a goroutine waiting to read is woken by the poller's
// thread and then scheduled, and the scheduler wakes a second thread to
// look for work. And while the socket stays registered with the poller
// (edge-triggered), every segment the client sends also wakes the thread
// blocked in epoll_wait, whether or not anyone waits there. At one SMTP
// client at a time those wake-ups were a good part of the server's CPU
// time between commands, and on a virtual machine each one that crosses
// CPUs costs more than the command itself.
//
// The cost is a thread per quiet session while it waits, hence the bound
// on sessions. A wait longer than QuietWait (a slow client, an idle one)
// moves the connection back into the poller for good, so that an idle
// session holds no thread.

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
// quiet sessions off.
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

// quietConn is a TCP connection served with plain system calls on a
// descriptor the runtime's poller does not watch, until a wait outlasts
// wait; from then on it is a net.Conn of the poller's (polled).
type quietConn struct {
	laddr, raddr net.Addr
	wait         time.Duration
	reads        *atomic.Int64 // counts reads done the quiet way

	mu       sync.Mutex
	fd       int      // -1 once closed or moved
	users    int      // system calls in progress on fd
	closing  bool     // Close was called
	polled   net.Conn // after the move into the poller
	rdl, wdl time.Time
}

// makeQuiet takes nc out of the runtime's poller, or returns nil (not
// plain TCP, or the descriptor could not be duplicated) and leaves nc as
// it was.
func makeQuiet(nc net.Conn, wait time.Duration, reads *atomic.Int64) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if rc.Control(func(s uintptr) { fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }) != nil || fd < 0 {
		return nil
	}
	q := &quietConn{fd: fd, laddr: tc.LocalAddr(), raddr: tc.RemoteAddr(), wait: wait, reads: reads}
	tc.Close() // the poller forgets the socket; fd keeps it open
	return q
}

// acquire returns the descriptor to use (users counted) or, once the
// connection has moved, the poller's connection.
func (q *quietConn) acquire() (int, net.Conn, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.polled != nil:
		return -1, q.polled, nil
	case q.closing || q.fd < 0:
		return -1, nil, net.ErrClosed
	}
	q.users++
	return q.fd, nil, nil
}

func (q *quietConn) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.users--
	if q.closing && q.users == 0 && q.fd >= 0 {
		unix.Close(q.fd)
		q.fd = -1
	}
}

// await waits until fd is ready for ev, for at most the wait and the
// deadline. moved: the wait ran out and the connection is now polled.
func (q *quietConn) await(fd int, ev int16, read bool) (moved bool, err error) {
	wait := q.wait
	if dl := q.deadline(read); !dl.IsZero() {
		left := time.Until(dl)
		if left <= 0 {
			return false, os.ErrDeadlineExceeded
		}
		wait = min(wait, left)
	}
	ts := unix.NsecToTimespec(wait.Nanoseconds())
	fds := []unix.PollFd{{Fd: int32(fd), Events: ev}}
	n, err := unix.Ppoll(fds, &ts, nil)
	switch {
	case err == unix.EINTR || n > 0:
		return false, nil
	case err != nil:
		return false, os.NewSyscallError("ppoll", err)
	}
	// The deadline may have moved meanwhile (Shutdown sets it to now).
	if dl := q.deadline(read); !dl.IsZero() && !time.Now().Before(dl) {
		return false, os.ErrDeadlineExceeded
	}
	return q.move(), nil
}

func (q *quietConn) deadline(read bool) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if read {
		return q.rdl
	}
	return q.wdl
}

// move hands the connection to the runtime's poller, unless another call
// uses the descriptor too; it reports whether the connection moved.
func (q *quietConn) move() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.users != 1 || q.closing || q.polled != nil {
		return false
	}
	// FileConn registers a duplicate of the descriptor it is given; that
	// one is a duplicate too, so that a failure leaves q.fd as it was.
	dup, err := unix.FcntlInt(uintptr(q.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(dup), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return false // not movable: keep waiting in the kernel
	}
	unix.Close(q.fd)
	q.fd = -1
	if !q.rdl.IsZero() {
		nc.SetReadDeadline(q.rdl)
	}
	if !q.wdl.IsZero() {
		nc.SetWriteDeadline(q.wdl)
	}
	q.polled = nc
	return true
}

func (q *quietConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: q.laddr, Addr: q.raddr, Err: err}
}

func (q *quietConn) Read(p []byte) (int, error) {
	return q.do("read", p, q.read, net.Conn.Read)
}

func (q *quietConn) Write(p []byte) (int, error) {
	return q.do("write", p, q.write, net.Conn.Write)
}

// do runs one Read or Write: on the descriptor while the connection is
// quiet (quiet), through the poller's connection once it has moved
// (polled); when it moves during the call, the rest goes the new way.
func (q *quietConn) do(op string, p []byte, quiet func(int, []byte) (int, bool, error), polled func(net.Conn, []byte) (int, error)) (int, error) {
	fd, pc, err := q.acquire()
	if pc != nil {
		return polled(pc, p)
	}
	if err != nil {
		return 0, q.opError(op, err)
	}
	n, moved, err := quiet(fd, p)
	q.release()
	if !moved {
		return n, err
	}
	q.mu.Lock()
	pc = q.polled
	q.mu.Unlock()
	m, err := polled(pc, p[n:])
	return n + m, err
}

func (q *quietConn) read(fd int, p []byte) (int, bool, error) {
	q.reads.Add(1)
	for {
		n, err := unix.Read(fd, p)
		switch {
		case err == nil && n == 0 && len(p) > 0:
			return 0, false, io.EOF
		case err == nil:
			return n, false, nil
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, false, q.opError("read", os.NewSyscallError("read", err))
		}
		moved, err := q.await(fd, unix.POLLIN, true)
		if moved {
			return 0, true, nil
		}
		if err != nil {
			return 0, false, q.opError("read", err)
		}
	}
}

func (q *quietConn) write(fd int, p []byte) (int, bool, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(fd, p[done:])
		if n > 0 {
			done += n
		}
		switch {
		case err == nil || err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return done, false, q.opError("write", os.NewSyscallError("write", err))
		}
		moved, err := q.await(fd, unix.POLLOUT, false)
		if moved {
			return done, true, nil
		}
		if err != nil {
			return done, false, q.opError("write", err)
		}
	}
	return done, false, nil
}

// Close closes the connection. A call waiting on the socket in another
// goroutine is woken by a shutdown of the socket and closes it on its way
// out.
func (q *quietConn) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return q.opError("close", net.ErrClosed)
	}
	q.closing = true
	switch {
	case q.polled != nil:
		return q.polled.Close()
	case q.users > 0:
		unix.Shutdown(q.fd, unix.SHUT_RDWR)
		return nil
	}
	err := unix.Close(q.fd)
	q.fd = -1
	if err != nil {
		return q.opError("close", os.NewSyscallError("close", err))
	}
	return nil
}

func (q *quietConn) LocalAddr() net.Addr  { return q.laddr }
func (q *quietConn) RemoteAddr() net.Addr { return q.raddr }

func (q *quietConn) SetDeadline(t time.Time) error {
	if err := q.SetReadDeadline(t); err != nil {
		return err
	}
	return q.SetWriteDeadline(t)
}

func (q *quietConn) SetReadDeadline(t time.Time) error {
	return q.setDeadline(&q.rdl, t, net.Conn.SetReadDeadline)
}

func (q *quietConn) SetWriteDeadline(t time.Time) error {
	return q.setDeadline(&q.wdl, t, net.Conn.SetWriteDeadline)
}

// setDeadline keeps t in at for the quiet waits, or passes it on to the
// poller's connection once the connection has moved.
func (q *quietConn) setDeadline(at *time.Time, t time.Time, polled func(net.Conn, time.Time) error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.polled != nil {
		return polled(q.polled, t)
	}
	*at = t
	return nil
}
