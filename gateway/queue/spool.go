package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"postern/gateway/delivery"
)

// The spool directory (Options.Dir) holds:
//
//	lock          flock'd: exclusively while Open recovers, shared while a
//	              Queue or an admin command uses the spool
//	run.lock      flock'd by the one running scheduler (Run)
//	kick          rewritten by the admin commands; the running queue polls it
//	tmp/          files being written (removed by recovery)
//	spool/ID.msg  the message, exactly as accepted; never rewritten
//	spool/ID.env  the envelope and per-recipient state (JSON), replaced
//	              atomically (write tmp, fsync, rename, fsync spool/)
//	corrupt/      envelopes that could not be parsed, with their messages,
//	              kept for the administrator rather than deleted
const (
	lockFileName    = "lock"
	runLockFileName = "run.lock"
	kickFileName    = "kick"
	tmpDirName      = "tmp"
	spoolDirName    = "spool"
	corruptDirName  = "corrupt"
	msgSuffix       = ".msg"
	envSuffix       = ".env"

	envFormatVersion = 1

	// Bounds on what the envelope parser accepts: the envelope file is
	// ours, but a corrupt or hostile file must not make us allocate
	// without limit or feed CR/LF into an SMTP command.
	maxEnvelopeFileSize = 16 << 20
	maxRecipients       = 100000
	maxAddressLen       = 512 // RFC 5321 §4.5.3.1.3 allows 256 octets for a path; leave room for SMTPUTF8
	maxTextFieldLen     = 4096
	maxIDLen            = 64
)

var (
	// ErrNotFound: no message with that ID in the spool.
	ErrNotFound = errors.New("no such message in the queue")
	// ErrCorruptEnvelope: an envelope file that does not parse or breaks a bound.
	ErrCorruptEnvelope = errors.New("corrupt envelope file")
	// ErrBusy: the message stayed locked (being delivered) past the wait.
	ErrBusy = errors.New("message is busy (being delivered); try again")
	// ErrBadID: the ID is not a queue ID (and would not be a safe file name).
	ErrBadID = errors.New("bad queue id")
	// ErrAlreadyRunning: another Run (in this or another process) is
	// delivering from the spool.
	ErrAlreadyRunning = errors.New("another queue runner is active on this spool")
	// ErrBadEnvelope: Enqueue was given an envelope it cannot queue.
	ErrBadEnvelope = errors.New("bad envelope")
)

// spoolEnvelope is the envelope file's content: the shared envelope
// (its fields inline, so fields the contract gains later are kept) plus the
// queue's own state.
type spoolEnvelope struct {
	Version int
	delivery.Envelope
	// BounceRequested: the administrator asked to fail the pending
	// recipients with a DSN (postern queue bounce); the running queue
	// does it at its next look at the message.
	BounceRequested bool `json:",omitempty"`
	// Held: the administrator put the message on hold (postern queue
	// hold, Postfix's postsuper -h): no delivery attempt, delay notice or
	// expiry until it is released.
	Held bool `json:",omitempty"`
}

// newID returns a new queue ID: 13 hex digits of the time in microseconds
// (so IDs sort by arrival) and 10 of randomness (so two processes writing
// the same spool never collide).
func newID(now time.Time) string {
	var r [5]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on Linux (getrandom)
	}
	return fmt.Sprintf("%013x%s", now.UnixMicro(), hex.EncodeToString(r[:]))
}

// validID says whether id may name a queue file: lower-case letters and
// digits only, so it can never escape the spool ("..", "/", NUL).
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// validAddress rejects what must never reach an SMTP command line or a
// file: CR, LF, NUL and other controls, invalid UTF-8, excess length.
func validAddress(a string) bool {
	if len(a) > maxAddressLen || !utf8.ValidString(a) {
		return false
	}
	for _, r := range a {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func validText(s string) bool {
	return len(s) <= maxTextFieldLen && utf8.ValidString(s) && !strings.ContainsAny(s, "\r\n\x00")
}

func encodeEnvelope(se *spoolEnvelope) ([]byte, error) {
	se.Version = envFormatVersion
	b, err := json.Marshal(se)
	if err != nil {
		return nil, fmt.Errorf("encode envelope %s: %w", se.ID, err)
	}
	return append(b, '\n'), nil
}

// decodeEnvelope parses an envelope file. wantID, when not empty, must be
// the ID in the file (the file name and the content agree).
func decodeEnvelope(data []byte, wantID string) (*spoolEnvelope, error) {
	if len(data) > maxEnvelopeFileSize {
		return nil, fmt.Errorf("%w: %d bytes is over the %d-byte bound", ErrCorruptEnvelope, len(data), maxEnvelopeFileSize)
	}
	var se spoolEnvelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&se); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptEnvelope, err)
	}
	if se.Version != envFormatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrCorruptEnvelope, se.Version, envFormatVersion)
	}
	if !validID(se.ID) {
		return nil, fmt.Errorf("%w: bad id %q", ErrCorruptEnvelope, se.ID)
	}
	if wantID != "" && se.ID != wantID {
		return nil, fmt.Errorf("%w: id %q in file for %q", ErrCorruptEnvelope, se.ID, wantID)
	}
	if !validAddress(se.From) {
		return nil, fmt.Errorf("%w: bad sender", ErrCorruptEnvelope)
	}
	if len(se.Rcpts) == 0 || len(se.Rcpts) > maxRecipients {
		return nil, fmt.Errorf("%w: %d recipients", ErrCorruptEnvelope, len(se.Rcpts))
	}
	for i, r := range se.Rcpts {
		if r.Addr == "" || !validAddress(r.Addr) || !validAddress(r.ORcpt) {
			return nil, fmt.Errorf("%w: recipient %d: bad address", ErrCorruptEnvelope, i)
		}
		if r.Status > delivery.StatusFailed || r.Attempts < 0 {
			return nil, fmt.Errorf("%w: recipient %d: bad state", ErrCorruptEnvelope, i)
		}
		if !validText(r.LastResult) || !validText(r.RemoteMTA) {
			return nil, fmt.Errorf("%w: recipient %d: bad text field", ErrCorruptEnvelope, i)
		}
	}
	for _, s := range []string{se.EnvID, se.Ret, se.AuthUser, se.ClientIP, se.ClientHELO, se.Quarantine} {
		if !validText(s) {
			return nil, fmt.Errorf("%w: bad text field", ErrCorruptEnvelope)
		}
	}
	return &se, nil
}

// spoolPaths names the files of one spool.
type spoolPaths struct {
	root, spool, tmp, corrupt string
}

func newSpoolPaths(dir string) spoolPaths {
	return spoolPaths{
		root:    dir,
		spool:   filepath.Join(dir, spoolDirName),
		tmp:     filepath.Join(dir, tmpDirName),
		corrupt: filepath.Join(dir, corruptDirName),
	}
}

func (p spoolPaths) msgPath(id string) string { return filepath.Join(p.spool, id+msgSuffix) }
func (p spoolPaths) envPath(id string) string { return filepath.Join(p.spool, id+envSuffix) }

// readEnvelope reads and parses spool/ID.env. A missing file is ErrNotFound.
func (p spoolPaths) readEnvelope(id string) (*spoolEnvelope, error) {
	f, err := os.Open(p.envPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("queue %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("queue %s: read envelope: %w", id, err)
	}
	defer f.Close()
	data := make([]byte, 0, 1024)
	buf := bytes.NewBuffer(data)
	if _, err := buf.ReadFrom(io.LimitReader(f, maxEnvelopeFileSize+1)); err != nil {
		return nil, fmt.Errorf("queue %s: read envelope: %w", id, err)
	}
	se, err := decodeEnvelope(buf.Bytes(), id)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", id, err)
	}
	return se, nil
}

// writeEnvelope replaces spool/ID.env atomically and durably: write a
// temporary file, fsync it, rename it over the old one, fsync spool/.
func (p spoolPaths) writeEnvelope(se *spoolEnvelope) error {
	data, err := encodeEnvelope(se)
	if err != nil {
		return err
	}
	return p.writeEnvelopeData(se.ID, data)
}

// writeEnvelopeData is writeEnvelope for an envelope already encoded.
func (p spoolPaths) writeEnvelopeData(id string, data []byte) error {
	se := struct{ ID string }{id}
	tmp, err := os.CreateTemp(p.tmp, se.ID+".env.*")
	if err != nil {
		return fmt.Errorf("queue %s: write envelope: %w", se.ID, err)
	}
	tmpName := tmp.Name()
	if err := p.ownLikeSpool(tmp); err != nil {
		tmp.Close()
		os.Remove(tmpName)
		return fmt.Errorf("queue %s: %w", se.ID, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmpName)
		return fmt.Errorf("queue %s: write envelope: %w", se.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmpName)
		return fmt.Errorf("queue %s: fsync envelope: %w", se.ID, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("queue %s: write envelope: %w", se.ID, err)
	}
	if err := os.Rename(tmpName, p.envPath(se.ID)); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("queue %s: replace envelope: %w", se.ID, err)
	}
	if err := syncDir(p.spool); err != nil {
		return fmt.Errorf("queue %s: %w", se.ID, err)
	}
	return nil
}

// removeMessage deletes a message from the spool: the envelope first, so
// that a crash in between leaves only an orphan message file, which
// recovery removes; never an envelope without its message.
func (p spoolPaths) removeMessage(id string) error {
	if err := os.Remove(p.envPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue %s: remove envelope: %w", id, err)
	}
	if err := os.Remove(p.msgPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue %s: remove message: %w", id, err)
	}
	if err := syncDir(p.spool); err != nil {
		return fmt.Errorf("queue %s: %w", id, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// lockMessage opens spool/ID.msg and takes an exclusive flock on it. The
// message file is never replaced, so its lock serialises the delivery
// worker and the admin commands (of any process) on one message. It waits
// up to wait, then fails with ErrBusy.
func (p spoolPaths) lockMessage(ctx context.Context, id string, wait time.Duration) (*os.File, error) {
	f, err := os.Open(p.msgPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("queue %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("queue %s: open message: %w", id, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("queue %s: lock message: %w", id, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("queue %s: %w", id, ErrBusy)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("queue %s: lock message: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ownLikeSpool gives a file root created the owner of the spool
// directory, so that `postern queue` run as root never leaves a file the
// server, running as the mail owner, cannot read or replace. Not root:
// nothing to do (our files are ours).
func (p spoolPaths) ownLikeSpool(f *os.File) error {
	if os.Geteuid() != 0 {
		return nil
	}
	info, err := os.Stat(p.root)
	if err != nil {
		return fmt.Errorf("queue: stat %s: %w", p.root, err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 && st.Gid == 0 {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("queue: chown %s: %w", f.Name(), err)
	}
	return nil
}

// makeSpoolDirs creates the spool's directories (0700: mail is private).
func (p spoolPaths) makeDirs() error {
	for _, d := range []string{p.root, p.spool, p.tmp, p.corrupt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("queue: create %s: %w", d, err)
		}
		if d == p.root {
			continue
		}
		f, err := os.Open(d)
		if err != nil {
			return fmt.Errorf("queue: open %s: %w", d, err)
		}
		err = p.ownLikeSpool(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// lockSpool takes the spool lock: exclusive (non-blocking) to recover,
// shared to use. It returns ok=false when exclusive was asked and another
// process holds the spool.
func lockSpool(p spoolPaths, exclusive bool) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(p.root, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("queue: open spool lock: %w", err)
	}
	if err := p.ownLikeSpool(f); err != nil {
		f.Close()
		return nil, false, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if exclusive && errors.Is(err, unix.EWOULDBLOCK) {
		return f, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("queue: lock spool: %w", err)
	}
	return f, true, nil
}
