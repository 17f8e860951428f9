// Package queue is Postern's durable mail queue: the spool every accepted
// message waits in until each recipient is delivered or bounced. It owns
// the spool directory's layout and its crash guarantees, group commit of
// concurrent Enqueues, the retry schedule (Courier's defaults), the queue
// lifetime, RFC 3464 delivery status notifications (failure, delay,
// success) sent from the null sender, and the admin operations behind
// `postern queue` and `mailq` (List, Show, Retry, Delete, Bounce), which
// work from another process on the same spool while the server runs.
//
// The queue drives delivery through the delivery.Deliverer contract: local
// recipients go to Options.Local, the others to Options.Remote, one call
// per (message, destination domain). It never knows how either delivers.
//
// Guarantees (docs/queue.md has the long form):
//   - Enqueue returns nil only when the message and its envelope are on
//     disk: written under tmp/, fsync'd, renamed into spool/, and spool/
//     fsync'd. After a crash a message is either wholly there or absent.
//   - After each Deliver call the recipients' new state is written
//     atomically (temp file, fsync, rename, fsync dir). A crash between a
//     delivery and that write re-delivers those recipients; each carries
//     Recipient.DeliveryKey (ID.index) so a local Deliverer can skip a
//     delivery it already made.
//   - A DSN is enqueued (durably) before the recipients it reports are
//     marked failed, so a crash can duplicate a DSN but never lose one.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"postern/internal/groupcommit"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"postern/gateway/delivery"
)

// Options configures a Queue. Zero values take the documented defaults.
type Options struct {
	Dir         string             // spool directory (DATADIR/queue)
	Hostname    string             // for DSN Reporting-MTA and Message-IDs (default: os.Hostname)
	Local       delivery.Deliverer // for Recipient.Local
	Remote      delivery.Deliverer // for the rest; called with recipients grouped by domain
	Schedule    []time.Duration    // retry gaps after attempt 1, 2, ...; the last repeats (default DefaultSchedule), ±10% jitter
	Lifetime    time.Duration      // default 7 days (then bounce as expired, 4.4.7)
	DelayNotice time.Duration      // default 4h: one delay DSN per recipient (if NOTIFY allows)
	Concurrency int                // messages in delivery, and Deliver calls, at once (default 20)
	PerDomain   int                // remote Deliver calls at once per destination domain (default 4)
	Logger      *slog.Logger
	Now         func() time.Time // tests

	// IsLocal decides whether the queue's own DSNs go to the local or the
	// remote Deliverer (the queue does not know the local domains). Nil:
	// every DSN recipient is remote.
	IsLocal func(addr string) bool
	// Expand, when set, gives the recipients a DSN to addr really goes
	// to: the sender may be an alias (a list owner) rather than an
	// account. When it fails or gives nothing, IsLocal decides as before.
	Expand func(ctx context.Context, addr string) ([]delivery.Recipient, error)
	// SoftBounce, when it returns true, keeps what would be bounced: a
	// permanent failure is retried as a temporary one and an expired
	// message stays queued (Postfix's soft_bounce). An administrator's
	// "queue bounce" still bounces.
	SoftBounce func() bool
	// DrainTimeout bounds how long Run waits, after its context ends, for
	// in-flight deliveries to finish before cancelling them (default 30s).
	DrainTimeout time.Duration

	// PerFileSync makes group commit fsync each file of a batch (all at
	// once) instead of one syncfs(2) of the spool's filesystem. syncfs
	// measured faster (docs/queue.md), but it also flushes whatever else
	// is dirty on that filesystem: choose PerFileSync when the spool
	// shares a filesystem with heavy unrelated writers, or on kernels
	// before 5.8, whose syncfs does not report write errors.
	PerFileSync bool

	commit commitMode // tests and benchmarks: how Enqueue makes files durable
}

// DefaultSchedule is the retry schedule when Options.Schedule is empty:
// three retries 5 minutes apart, then 15 minutes, then gaps doubling from
// 30 minutes up to 4 hours; the last gap repeats until the lifetime ends.
// (postern serve passes the schedule built from Courier's retryalpha,
// retrybeta, retrygamma and retrymaxdelta settings instead.)
var DefaultSchedule = []time.Duration{
	5 * time.Minute, 5 * time.Minute, 5 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour,
}

const (
	defaultLifetime     = 7 * 24 * time.Hour
	defaultDelayNotice  = 4 * time.Hour
	defaultConcurrency  = 20
	defaultPerDomain    = 4
	defaultDrainTimeout = 30 * time.Second
	defaultPollInterval = 500 * time.Millisecond
	// orphanAge: while another process may be writing the spool, only
	// leftovers at least this old are taken for crash debris.
	orphanAge = time.Hour
	// lockWait: how long the worker and the admin commands wait for a
	// message's lock.
	lockWait = 30 * time.Second
)

// commitMode is how Enqueue makes a message durable; see commit.go.
type commitMode int

const (
	commitGroupSyncfs commitMode = iota // default: no per-file fsync; one syncfs(2) + one spool/ fsync per batch
	commitGroup                         // PerFileSync: the batch leader fsyncs every file of the batch at once, then one spool/ fsync
	commitPerMessage                    // each Enqueue alone: fsync its files, rename, fsync spool/ (the baseline)
)

// Queue is an open spool. Enqueue may be called from many goroutines; Run
// runs the scheduler.
type Queue struct {
	opt      Options
	paths    spoolPaths
	log      *slog.Logger
	lockFile *os.File // the spool lock, held shared until Close
	spoolDir *os.File // open for fsync and syncfs
	commits  groupcommit.Batcher[*commitReq]
	flushes  atomic.Int64 // batches flushed (group commit), for tests and metrics
	stats    counters

	kickCh       chan struct{}
	pollInterval time.Duration
	callSlots    chan struct{} // Deliver calls at once (Concurrency)

	mu         sync.Mutex
	index      schedIndex     // messages the scheduler knows
	domainBusy map[string]int // remote Deliver calls in flight per domain
}

// Open opens (creating if needed) the spool at opt.Dir and recovers it: it
// removes temporary files and half-written or half-removed messages, and
// moves unparseable envelopes to corrupt/. When another process has the
// spool open (the server, while the CLI or sendmail opens it), only debris
// older than an hour is removed.
func Open(opt Options) (*Queue, error) {
	if opt.Dir == "" {
		return nil, errors.New("queue: open: no spool directory")
	}
	if opt.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		opt.Hostname = h
	}
	if len(opt.Schedule) == 0 {
		opt.Schedule = DefaultSchedule
	}
	for _, d := range opt.Schedule {
		if d <= 0 {
			return nil, fmt.Errorf("queue: open: retry schedule has a non-positive gap %v", d)
		}
	}
	if opt.Lifetime <= 0 {
		opt.Lifetime = defaultLifetime
	}
	if opt.DelayNotice <= 0 {
		opt.DelayNotice = defaultDelayNotice
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = defaultConcurrency
	}
	if opt.PerDomain <= 0 {
		opt.PerDomain = defaultPerDomain
	}
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = defaultDrainTimeout
	}
	if (opt.PerFileSync || !haveSyncfs) && opt.commit == commitGroupSyncfs {
		opt.commit = commitGroup
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		opt:          opt,
		paths:        newSpoolPaths(opt.Dir),
		log:          opt.Logger.With("component", "queue"),
		kickCh:       make(chan struct{}, 1),
		callSlots:    make(chan struct{}, opt.Concurrency),
		pollInterval: defaultPollInterval,
		index:        newSchedIndex(),
		domainBusy:   make(map[string]int),
	}
	q.commits.Flush = q.flushBatch
	if err := q.paths.makeDirs(); err != nil {
		return nil, err
	}
	lock, alone, err := lockSpool(q.paths, true)
	if err != nil {
		return nil, err
	}
	if err := q.recoverSpool(alone); err != nil {
		lock.Close()
		return nil, err
	}
	// Hold the lock shared from now on (a downgrade when we recovered
	// alone): other processes (CLI, sendmail) may use the spool beside us,
	// and none of them will take our files for crash debris.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("queue: lock spool: %w", err)
	}
	q.lockFile = lock
	d, err := os.Open(q.paths.spool)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("queue: open %s: %w", q.paths.spool, err)
	}
	q.spoolDir = d
	return q, nil
}

// Close releases the spool. It does not stop Run (cancel its context).
func (q *Queue) Close() error {
	err1 := q.spoolDir.Close()
	err2 := q.lockFile.Close()
	return errors.Join(err1, err2)
}

// recoverSpool removes crash debris. all: nobody else uses the spool, so
// every leftover is debris; otherwise only leftovers older than orphanAge.
func (q *Queue) recoverSpool(all bool) error {
	cutoff := time.Now().Add(-orphanAge) // file times are real times, whatever the queue's clock
	if all {
		cutoff = time.Now().Add(time.Hour) // everything
	}
	old := func(e fs.DirEntry) bool {
		info, err := e.Info()
		return err == nil && info.ModTime().Before(cutoff)
	}
	tmps, err := os.ReadDir(q.paths.tmp)
	if err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	for _, e := range tmps {
		if old(e) {
			if err := os.Remove(filepath.Join(q.paths.tmp, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: recover: %w", err)
			}
		}
	}
	entries, err := os.ReadDir(q.paths.spool)
	if err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	msgs := map[string]fs.DirEntry{}
	envs := map[string]fs.DirEntry{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, msgSuffix) && validID(strings.TrimSuffix(name, msgSuffix)):
			msgs[strings.TrimSuffix(name, msgSuffix)] = e
		case strings.HasSuffix(name, envSuffix) && validID(strings.TrimSuffix(name, envSuffix)):
			envs[strings.TrimSuffix(name, envSuffix)] = e
		}
	}
	changed := false
	for id, e := range msgs {
		if _, ok := envs[id]; !ok && old(e) {
			// A message whose envelope never arrived (crash inside
			// Enqueue, before the client got its 250) or was already
			// removed (crash inside removal).
			q.log.Info("recover: removing message without envelope", "id", id)
			if err := os.Remove(q.paths.msgPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: recover: %w", err)
			}
			changed = true
		}
	}
	for id := range envs {
		if _, ok := msgs[id]; !ok {
			// Enqueue renames the message before the envelope and removal
			// removes the envelope first, so this is only crash debris
			// from reordered renames: the message was never acknowledged.
			q.log.Info("recover: removing envelope without message", "id", id)
			if err := os.Remove(q.paths.envPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: recover: %w", err)
			}
			changed = true
			continue
		}
		if _, err := q.paths.readEnvelope(id); errors.Is(err, ErrCorruptEnvelope) {
			q.log.Error("recover: corrupt envelope moved to corrupt/", "id", id, "err", err)
			for _, suffix := range []string{envSuffix, msgSuffix} {
				if err := os.Rename(filepath.Join(q.paths.spool, id+suffix), filepath.Join(q.paths.corrupt, id+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("queue: recover: %w", err)
				}
			}
			changed = true
		}
	}
	if changed {
		if err := syncDir(q.paths.spool); err != nil {
			return fmt.Errorf("queue: recover: %w", err)
		}
	}
	return nil
}

// Enqueue stores a message and its envelope durably and returns its new
// queue ID. The envelope's queue state (ID, statuses, attempts) is reset;
// Received is set to now if zero. When it returns nil the message survives
// a crash; when it returns an error nothing of it remains in the spool.
func (q *Queue) Enqueue(ctx context.Context, env delivery.Envelope, msg io.Reader) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("queue: enqueue: %w", err)
	}
	if len(env.Rcpts) == 0 {
		return "", fmt.Errorf("queue: enqueue: %w: no recipients", ErrBadEnvelope)
	}
	if len(env.Rcpts) > maxRecipients {
		return "", fmt.Errorf("queue: enqueue: %w: %d recipients is over %d", ErrBadEnvelope, len(env.Rcpts), maxRecipients)
	}
	if !validAddress(env.From) {
		return "", fmt.Errorf("queue: enqueue: %w: bad sender %q", ErrBadEnvelope, env.From)
	}
	now := q.opt.Now()
	se := &spoolEnvelope{Envelope: env}
	se.ID = newID(now)
	if se.Received.IsZero() {
		se.Received = now
	}
	se.Rcpts = make([]delivery.Recipient, len(env.Rcpts))
	for i, r := range env.Rcpts {
		if r.Addr == "" || !validAddress(r.Addr) || !validAddress(r.ORcpt) {
			return "", fmt.Errorf("queue: enqueue: %w: bad recipient %q", ErrBadEnvelope, r.Addr)
		}
		if strings.ContainsAny(r.Pipe+r.Folder, "\x00\r\n") {
			return "", fmt.Errorf("queue: enqueue: %w: bad recipient target", ErrBadEnvelope)
		}
		se.Rcpts[i] = delivery.Recipient{Addr: r.Addr, ORcpt: r.ORcpt, Notify: r.Notify, Local: r.Local, Folder: r.Folder, Pipe: r.Pipe}
	}
	for _, s := range []string{se.EnvID, se.Ret, se.AuthUser, se.ClientIP, se.ClientHELO, se.Quarantine} {
		if !validText(s) {
			return "", fmt.Errorf("queue: enqueue: %w: bad text field", ErrBadEnvelope)
		}
	}
	// A quarantined message waits for the administrator (queue release).
	se.Held = se.Quarantine != ""
	envData, err := encodeEnvelope(se)
	if err != nil {
		return "", fmt.Errorf("queue: enqueue: %w", err)
	}
	id := se.ID
	req := &commitReq{
		id:     id,
		msgTmp: filepath.Join(q.paths.tmp, id+msgSuffix),
		envTmp: filepath.Join(q.paths.tmp, id+envSuffix),
	}
	// Per message, the writer fsyncs; in group mode the files stay open
	// for the batch leader to fsync together with the rest of the batch.
	perMessage := q.opt.commit == commitPerMessage
	req.msgFile, err = writeNewFile(req.msgTmp, msg, perMessage, q.opt.commit == commitGroup, q.paths.ownLikeSpool)
	if err != nil {
		return "", fmt.Errorf("queue %s: enqueue: write message: %w", id, err)
	}
	req.envFile, err = writeNewFile(req.envTmp, strings.NewReader(string(envData)), perMessage, q.opt.commit == commitGroup, q.paths.ownLikeSpool)
	if err != nil {
		req.closeFiles()
		os.Remove(req.msgTmp)
		return "", fmt.Errorf("queue %s: enqueue: write envelope: %w", id, err)
	}
	if perMessage {
		q.flushBatch([]*commitReq{req})
	} else {
		q.commits.Do(req)
	}
	if req.err != nil {
		return "", fmt.Errorf("queue %s: enqueue: %w", id, req.err)
	}
	q.stats.enqueued.Add(1)
	q.noteDue(id, time.Time{})
	q.Kick()
	return id, nil
}

// writeNewFile creates path (it must not exist), copies r into it and,
// when fsync is set, fsyncs it. With keepOpen it returns the open file
// (for a later fsync), else nil. On error the file is removed.
func writeNewFile(path string, r io.Reader, fsync, keepOpen bool, own func(*os.File) error) (_ *os.File, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if err = own(f); err != nil {
		return nil, err
	}
	if _, err = io.Copy(f, r); err != nil {
		return nil, err
	}
	if fsync {
		if err = f.Sync(); err != nil {
			return nil, err
		}
	}
	if keepOpen {
		return f, nil
	}
	return nil, f.Close()
}

// Kick tells the scheduler that something changed: look for due work now.
func (q *Queue) Kick() {
	select {
	case q.kickCh <- struct{}{}:
	default:
	}
}
