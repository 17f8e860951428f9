package queue

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Group commit. The cost of a durable Enqueue is dominated by the flushes:
// the files' data and the directory entry that names them. Concurrent
// Enqueues join a batch; one leader makes the whole batch durable with one
// fsync of spool/ (and, in commitGroupSyncfs mode, one syncfs instead of
// the per-file fsyncs), then releases every waiter of the batch. While a
// batch is being flushed the next one gathers, so under load each flush
// covers many messages and with a single writer there is no added wait.
// docs/queue.md records the measured rates of each mode.

// commitReq is one Enqueue waiting for its files to become durable.
type commitReq struct {
	id               string
	msgTmp, envTmp   string
	msgFile, envFile *os.File // open until the leader fsyncs them (commitGroup)
	err              error
}

func (r *commitReq) closeFiles() {
	for _, f := range []*os.File{r.msgFile, r.envFile} {
		if f != nil {
			f.Close()
		}
	}
	r.msgFile, r.envFile = nil, nil
}

// flushBatch makes a batch durable: (syncfs,) rename each message then its
// envelope into spool/, then one fsync of spool/. The message is renamed
// before its envelope so that an envelope never names a missing message.
// Each request's err is set; a failed request leaves nothing in spool/.
func (q *Queue) flushBatch(batch []*commitReq) {
	q.flushes.Add(1)
	fail := func(r *commitReq, err error) {
		r.closeFiles()
		r.err = err
		os.Remove(r.msgTmp)
		os.Remove(r.envTmp)
		os.Remove(q.paths.envPath(r.id))
		os.Remove(q.paths.msgPath(r.id))
	}
	if q.opt.commit == commitGroup {
		// All of the batch's fsyncs at once: the filesystem serves them
		// with one journal commit instead of one after another.
		var wg sync.WaitGroup
		for _, r := range batch {
			wg.Go(func() {
				var errs [2]error
				var inner sync.WaitGroup
				for i, f := range []*os.File{r.msgFile, r.envFile} {
					inner.Go(func() { errs[i] = f.Sync() })
				}
				inner.Wait()
				if err := errors.Join(errs[:]...); err != nil {
					fail(r, fmt.Errorf("fsync: %w", err))
					return
				}
				r.closeFiles()
			})
		}
		wg.Wait()
	}
	if q.opt.commit == commitGroupSyncfs {
		if err := syncFilesystem(q.spoolDir); err != nil {
			for _, r := range batch {
				fail(r, fmt.Errorf("syncfs: %w", err))
			}
			return
		}
	}
	renamed := 0
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		if err := os.Rename(r.msgTmp, q.paths.msgPath(r.id)); err != nil {
			fail(r, fmt.Errorf("rename message: %w", err))
			continue
		}
		if err := os.Rename(r.envTmp, q.paths.envPath(r.id)); err != nil {
			fail(r, fmt.Errorf("rename envelope: %w", err))
			continue
		}
		renamed++
	}
	if renamed == 0 {
		return
	}
	if err := q.spoolDir.Sync(); err != nil {
		for _, r := range batch {
			if r.err == nil {
				fail(r, fmt.Errorf("fsync %s: %w", q.paths.spool, err))
			}
		}
	}
}
