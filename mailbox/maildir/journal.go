package maildir

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"postern/mailbox/maildir/wal"
)

// Journal makes deliveries durable with one write to a write-ahead log
// instead of two file-system flushes per message (the file's data, then its
// name). A journaled delivery writes the message file and links it into
// new/ without syncing either; the same bytes and the destination name are
// in the log, flushed before Deliver returns. A checkpoint every 200 ms
// (syncfs of the Maildirs' file systems) makes the files themselves durable
// and frees the log's space. After a crash, OpenJournal puts back every
// message of the log that did not reach the disk whole. See
// docs/maildir.md, "Delivery journal".
//
// One long-running process (the server) owns a journal; deliveries opt in
// with DeliverOptions.Journal. Messages larger than a quarter of the log go
// the usual way.
type Journal struct {
	log    *wal.Log
	logger *slog.Logger

	mu       sync.Mutex
	barriers map[*fsBarrier]bool // file systems deliveries went to
	warned   atomic.Bool         // the journal's failure was logged

	applyFailures atomic.Int64 // deferred deliveries left for the replay
	pending       atomic.Int64 // deferred deliveries not yet run
}

// Deferred holds the second half of journaled deliveries made with
// DeliverOptions.Defer: writing each message's file and linking it into
// its folder. Their records are durable when Deliver returns, so the
// caller may acknowledge the message first (an SMTP server's 250) and call
// Run right after, while the client reads the reply: the work leaves the
// path the client waits on. A message is not visible in its folder until
// Run. A crash before Run loses nothing: the journal's replay writes the
// message at the next start. Not safe for concurrent use; one per session.
type Deferred struct {
	fns []func()
}

// Then queues fn to run after the deliveries deferred so far (a delivery
// agent gives the new files to their owner this way).
func (d *Deferred) Then(fn func()) { d.fns = append(d.fns, fn) }

// Pending reports whether Run has work to do.
func (d *Deferred) Pending() bool { return d != nil && len(d.fns) > 0 }

// Run completes the deferred deliveries, in order. A failure is handled
// here (the message written again the flushed way, or left for the
// journal's replay, and logged): the message was acknowledged already.
func (d *Deferred) Run() {
	if d == nil {
		return
	}
	for i := 0; i < len(d.fns); i++ {
		d.fns[i]()
		d.fns[i] = nil
	}
	d.fns = d.fns[:0]
}

// refused notes a delivery the journal did not take (it is flushed the
// usual way). Full or too big is expected now and then; a failed journal
// is logged once, not once per message.
func (j *Journal) refused(err error) {
	if errors.Is(err, wal.ErrFull) || errors.Is(err, wal.ErrTooBig) {
		j.logger.Debug("delivery journal refused a message; flushing it the usual way", "err", err)
		return
	}
	if !j.warned.Swap(true) {
		j.logger.Error("delivery journal failed; deliveries are flushed one by one until a restart, which replays it", "err", err)
	}
}

// JournalOptions tunes OpenJournal.
type JournalOptions struct {
	// Size of a new journal file in bytes; 0 means 32 MiB.
	Size int64
	// Interval between checkpoints; 0 means 200 ms. It bounds how much
	// the journal replays after a crash.
	Interval time.Duration
	Logger   *slog.Logger
}

// OpenJournal opens (creating when missing) the delivery journal at path
// and restores the messages a crash left unwritten. Only one process may
// have it open.
func OpenJournal(path string, opt JournalOptions) (*Journal, error) {
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	j := &Journal{logger: logger, barriers: map[*fsBarrier]bool{}}
	restored := 0
	curKeys := map[string]map[string]string{} // folder → key → cur/ name, listed once per open
	l, err := wal.Open(path, wal.Options{
		Size:     opt.Size,
		Interval: opt.Interval,
		Sync:     j.sync,
		OnError: func(err error) {
			logger.Error("delivery journal checkpoint failed; deliveries fall back to per-message flushes", "err", err)
		},
	}, func(r wal.Record) error {
		ok, err := j.replay(r.Payload, curKeys)
		if ok {
			restored++
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("maildir: delivery journal: %w", err)
	}
	logger.Debug("delivery journal open", "journal", path, "writes", l.Stats().Mode)
	if restored > 0 {
		logger.Warn("delivery journal: restored messages a crash left unwritten", "messages", restored, "journal", path)
	}
	j.log = l
	return j, nil
}

// applyFailed handles a deferred delivery (see Deferred) whose file could
// not be written or linked after its record was made durable: the message
// is written again as a replay would, else the record stays unreleased for
// the replay at the next start.
func (j *Journal) applyFailed(dest string, data []byte, mtime time.Time, seq uint64, cause error) {
	_, err := j.restore(dest, mtime, data, map[string]map[string]string{})
	if err == nil {
		j.logger.Warn("delivery journal: a deferred delivery failed and was written again", "path", dest, "err", cause)
		j.log.Release(seq)
		return
	}
	cause = fmt.Errorf("%w; written again: %w", cause, err)
	j.applyFailures.Add(1)
	j.logger.Error("delivery journal: an acknowledged message could not be written; it stays in the journal and is restored at the next start",
		"path", dest, "err", cause)
}

// DeferredFailures counts deferred deliveries that could be neither
// written nor written again after their acknowledgement: they wait in the
// journal for the replay at the next start.
func (j *Journal) DeferredFailures() int64 { return j.applyFailures.Load() }

// DeferredPending counts deliveries whose record is durable and whose
// file Deferred.Run has not written yet.
func (j *Journal) DeferredPending() int64 { return j.pending.Load() }

// Stats returns the journal's counters (see wal.Stats).
func (j *Journal) Stats() wal.Stats { return j.log.Stats() }

// Close checkpoints and closes the journal.
func (j *Journal) Close() error { return j.log.Close() }

// sync makes every journaled delivery so far durable: syncfs of each file
// system written to, shared with concurrent group commits.
func (j *Journal) sync() error {
	j.mu.Lock()
	bs := make([]*fsBarrier, 0, len(j.barriers))
	for b := range j.barriers {
		bs = append(bs, b)
	}
	j.mu.Unlock()
	for _, b := range bs {
		if err := b.wait(); err != nil {
			return err
		}
	}
	return nil
}

var journalBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// take reads the message into memory for the log. When it is larger than
// a record may be, it returns a nil buffer and a reader of the whole
// message for the usual path.
func (j *Journal) take(r io.Reader) (*bytes.Buffer, io.Reader, error) {
	buf := journalBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	limit := j.log.MaxRecord() - recordOverhead - maxPathLen
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		putJournalBuffer(buf)
		return nil, nil, err
	}
	if n > limit {
		rest := io.MultiReader(bytes.NewReader(bytes.Clone(buf.Bytes())), r)
		putJournalBuffer(buf)
		return nil, rest, nil
	}
	return buf, nil, nil
}

func putJournalBuffer(b *bytes.Buffer) {
	if b != nil && b.Cap() <= 1<<20 {
		journalBuffers.Put(b)
	}
}

// Record payload: version(1) mtime-ns(8) path-length(2) path data.
const (
	recordVersion  = 1
	recordOverhead = 1 + 8 + 2
	maxPathLen     = 4096
)

// append logs a delivery of data to dest (durable on return).
func (j *Journal) append(dest string, mtime time.Time, data []byte, b *fsBarrier) (uint64, error) {
	if len(dest) > maxPathLen {
		return 0, wal.ErrTooBig
	}
	j.mu.Lock()
	j.barriers[b] = true
	j.mu.Unlock()
	var hdr [recordOverhead]byte
	hdr[0] = recordVersion
	if mtime.IsZero() {
		mtime = time.Now() // a restored message keeps its arrival time
	}
	binary.LittleEndian.PutUint64(hdr[1:], uint64(mtime.UnixNano()))
	binary.LittleEndian.PutUint16(hdr[9:], uint16(len(dest)))
	return j.log.Append(hdr[:], []byte(dest), data)
}

// decodeRecord splits a record's payload.
func decodeRecord(p []byte) (dest string, mtime time.Time, data []byte, err error) {
	if len(p) < recordOverhead || p[0] != recordVersion {
		return "", time.Time{}, nil, errors.New("unknown record format")
	}
	if ns := int64(binary.LittleEndian.Uint64(p[1:])); ns != 0 {
		mtime = time.Unix(0, ns)
	}
	n := int(binary.LittleEndian.Uint16(p[9:]))
	if len(p) < recordOverhead+n || n == 0 {
		return "", time.Time{}, nil, errors.New("truncated record")
	}
	dest = string(p[recordOverhead : recordOverhead+n])
	if !filepath.IsAbs(dest) || filepath.Clean(dest) != dest || strings.ContainsRune(dest, 0) {
		return "", time.Time{}, nil, fmt.Errorf("bad destination %q", dest)
	}
	return dest, mtime, p[recordOverhead+n:], nil
}

// replay puts back one journaled message if the crash lost it or cut it
// short; a message that is there whole (in new/, or already moved to cur/
// by a reader, flags and all) is left alone. It reports whether it wrote.
func (j *Journal) replay(payload []byte, curKeys map[string]map[string]string) (bool, error) {
	dest, mtime, data, err := decodeRecord(payload)
	if err != nil {
		j.logger.Warn("delivery journal: skipping a record", "err", err)
		return false, nil
	}
	return j.restore(dest, mtime, data, curKeys)
}

// restore writes a journaled message to dest unless it is there whole.
func (j *Journal) restore(dest string, mtime time.Time, data []byte, curKeys map[string]map[string]string) (bool, error) {
	dir := filepath.Dir(dest)
	folder := filepath.Dir(dir)
	if sub := filepath.Base(dir); sub != "new" && sub != "cur" {
		j.logger.Warn("delivery journal: skipping a record outside new/ and cur/", "path", dest)
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(folder, "tmp")); err != nil {
		j.logger.Warn("delivery journal: the folder of a journaled message is gone; not restored", "path", dest, "err", err)
		return false, nil
	}
	key, _, _ := strings.Cut(filepath.Base(dest), ":")
	have, err := findMessageFile(folder, key, curKeys)
	if err != nil {
		return false, err
	}
	if have != "" {
		st, err := os.Stat(have)
		if err != nil {
			return false, err
		}
		if st.Size() == int64(len(data)) {
			return false, nil
		}
		dest = have // cut short: replace it under its present name (flags kept)
	}
	if err := restoreFile(folder, dest, data, mtime); err != nil {
		return false, fmt.Errorf("restore %s: %w", dest, err)
	}
	j.logger.Info("delivery journal: restored a message", "path", dest, "size", len(data))
	return true, nil
}

// findMessageFile returns the path of the message with this key in new/ or
// cur/ (any info suffix), or "" when there is none. cur/ is listed once per
// folder for the whole replay (a big folder and many records would
// otherwise list it again for each).
func findMessageFile(folder, key string, curKeys map[string]map[string]string) (string, error) {
	for _, p := range []string{filepath.Join(folder, "new", key), filepath.Join(folder, "cur", key)} {
		if _, err := os.Lstat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	names, ok := curKeys[folder]
	if !ok {
		ents, err := os.ReadDir(filepath.Join(folder, "cur"))
		if err != nil {
			return "", err
		}
		names = make(map[string]string, len(ents))
		for _, e := range ents {
			k, _, _ := strings.Cut(e.Name(), ":")
			names[k] = e.Name()
		}
		curKeys[folder] = names
	}
	if name, ok := names[key]; ok {
		// Listed at the start of the replay; it may have moved since
		// only if another program renames it meanwhile.
		p := filepath.Join(folder, "cur", name)
		if _, err := os.Lstat(p); err == nil {
			return p, nil
		}
	}
	return "", nil
}

// restoreFile writes data durably to dest through a file in tmp/ renamed
// into place. A root process gives it to the folder's owner, as the
// delivery agent gives the files it makes to the account.
func restoreFile(folder, dest string, data []byte, mtime time.Time) error {
	tmp := filepath.Join(folder, "tmp", ".postern-journal-"+filepath.Base(dest))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, time.Now(), mtime); err != nil {
			return err
		}
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if st, err := os.Stat(folder); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
				if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
					f.Close()
					return err
				}
			}
		}
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dest))
}
