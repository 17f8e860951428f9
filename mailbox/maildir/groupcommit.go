package maildir

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Group commit for deliveries. A delivery must be durable before the SMTP
// 250: the file's data, then its name in new/. Instead of an fsync of the
// file and one of the directory per message, concurrent deliveries on one
// filesystem share syncfs(2) calls: each waits for a syncfs that started
// after its own write (data durable), links the file into new/, and waits
// for a syncfs that started after the link (name durable). A lone delivery
// pays two syncfs calls, as it paid two fsyncs; many deliveries at once
// share them.
//
// syncfs(2) reports writeback errors only from Linux 5.8 on; on older
// kernels deliveries keep the per-file fsync and directory fsync.
//
// The coordinators are per filesystem (device) for the whole process,
// because deliveries to one disk come from many sessions and mailboxes.
var fsBarriers = struct {
	sync.Mutex
	m map[uint64]*fsBarrier
}{m: map[uint64]*fsBarrier{}}

type fsBarrier struct {
	mu        sync.Mutex
	cond      *sync.Cond
	fd        int
	requested uint64
	completed uint64
	running   bool
	failedTo  uint64
	failErr   error
}

// barrierFor returns the coordinator of the filesystem holding dir.
func barrierFor(dir string) (*fsBarrier, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	fsBarriers.Lock()
	defer fsBarriers.Unlock()
	if b := fsBarriers.m[st.Dev]; b != nil {
		return b, nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	b := &fsBarrier{fd: fd}
	b.cond = sync.NewCond(&b.mu)
	fsBarriers.m[st.Dev] = b
	return b, nil
}

// wait returns once everything written before the call is durable.
func (b *fsBarrier) wait() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requested++
	mine := b.requested
	for b.completed < mine {
		if mine <= b.failedTo {
			return b.failErr
		}
		if b.running {
			b.cond.Wait()
			continue
		}
		b.running = true
		target := b.requested
		b.mu.Unlock()
		err := unix.Syncfs(b.fd)
		b.mu.Lock()
		b.running = false
		if err != nil {
			b.failedTo, b.failErr = target, os.NewSyscallError("syncfs", err)
		} else if target > b.completed {
			b.completed = target
		}
		b.cond.Broadcast()
	}
	return nil
}

// groupCommit says whether deliveries use syncfs group commit; set once at
// start from the kernel version (tests may switch it to cover both paths).
var groupCommit = syncfsReportsErrors()

// syncfsReportsErrors reports whether this kernel is Linux 5.8 or newer.
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}
