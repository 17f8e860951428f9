// Package unixpeer tells who is at the other end of a Unix socket, from
// the kernel (SO_PEERCRED), never from anything the peer says: the
// submission socket, LMTP over a socket and the control socket decide
// what a local process may do by its uid.
package unixpeer

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// ErrNotUnix is returned for a connection that is not a Unix socket.
var ErrNotUnix = errors.New("not a unix socket")

// UID returns the uid of the process at the other end of c.
func UID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, ErrNotUnix
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}
