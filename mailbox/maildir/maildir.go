package maildir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"postern/internal/dirfact"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Names of the files this package keeps beside the messages. They are the
// names Courier (and, for keywords, Dovecot) use, so that an existing
// installation's state is picked up as it is.
const (
	uidDBName         = "courierimapuiddb"      // per folder: UIDVALIDITY, next UID, key → UID
	uidLockName       = "courierimapuiddb.lock" // per folder: flock held while assigning UIDs or keywords
	keywordsName      = "dovecot-keywords"      // per folder: keyword index → name
	courierKwDir      = "courierimapkeywords"   // per folder: Courier's keyword store (kept in step, courierkw.go)
	maildirsizeName   = "maildirsize"           // root: Maildir++ quota
	maildirfolderName = "maildirfolder"         // marks a Maildir++ folder
	subscribedName    = "courierimapsubscribed" // root: IMAP subscriptions
	subscribedLock    = "courierimapsubscribed.lock"
)

// Options tunes a Maildir opened with OpenWithOptions.
type Options struct {
	// Logger receives rare but important events (a corrupt UID database
	// replaced by a new UIDVALIDITY, a quota recalculation). nil means
	// slog.Default().
	Logger *slog.Logger
	// Hostname goes into new unique names; empty means os.Hostname().
	Hostname string
	// DefaultQuota is used when the maildir has no maildirsize yet: the
	// first delivery creates maildirsize with it (deliverquota's QUOTA
	// argument, or a quota from the account database). Zero means none.
	DefaultQuota Quota
	// SharedFrom makes the maildir a private view of a sharable folder
	// (Courier's shared-folders/NICK/FOLDER; see fsshared.go): the
	// sharable folder as its "shared" link names it. Every message is then
	// a symbolic link, read only when it points directly into
	// SharedFrom's cur/ or new/ and ends at a regular file reached with no
	// other link. SharedView.Options sets it.
	SharedFrom string
	sharedReal string    // SharedFrom resolved
	sharedID   *Identity // who reads: a message must be readable for them
	// Reader, when set, is the user the mail is read and written for by
	// a process that does not run as them (a server or delivery agent
	// running as root for a system account): the maildir's root and each
	// folder's cur/ and new/ must be reachable for Reader by their modes
	// (every directory on the way searchable), a message is served only
	// when it is a regular file, not a symbolic link, readable for
	// Reader, and a delivery goes only into a tmp/ and new/ that Reader
	// may write, as the kernel would decide for a process running as that
	// user. Without it, a user could point a link in their maildir at
	// another user's mail or a system file and read it through the
	// server, or at a system directory and have root write mail there.
	// OpenAs sets it.
	Reader *Identity
}

// Maildir is one user's mailbox tree: INBOX at the root and Maildir++ folders
// as ".Name" subdirectories. Safe for use by several goroutines and by
// several processes at once (other deliveries, a Courier server side by side).
type Maildir struct {
	root         string
	hostname     string // already escaped for use in a file name
	pid          int
	log          *slog.Logger
	defaultQuota Quota
	deliveries   atomic.Uint64 // the Q<n> counter of unique names
	// sharedFrom, sharedReal: Options.SharedFrom, as written and
	// resolved; "" for an ordinary maildir.
	sharedFrom, sharedReal string
	sharedID               *Identity
	reader                 *Identity // Options.Reader

	mu      sync.Mutex
	folders map[string]*Folder // by Maildir++ name ("" is INBOX)
}

// Folder is one folder (INBOX or a Maildir++ subfolder) of a Maildir.
type Folder struct {
	md   *Maildir
	name string // "" for INBOX
	path string

	mu       sync.Mutex
	uidCache *uidDB       // last parsed courierimapuiddb, valid while uidStat matches
	uidStat  fileIdentity // identity of the file uidCache was read from
	kwCache  *keywordMap  // last parsed dovecot-keywords
	kwStat   fileIdentity //
	// ckwStat is courierimapkeywords/'s identity when Sync last applied
	// it, and ckwSeen each message's set (courierSetKey) as last applied
	// from or written to it (courierkw.go).
	ckwStat   fileIdentity
	ckwStatOK bool
	ckwSeen   map[string]string
	// lastKwStat is kwStat when lastSnap was built: keyword names in it
	// hold while the file is the same.
	lastKwStat fileIdentity
	meta       map[string]fileMeta // key → mtime/size seen by the last Sync
	names      map[string]string   // key → "cur/KEY:2,..." as the last Sync saw it
	// namesInNew counts the names in new/ when the last Sync built names;
	// later renames only lower the true count.
	namesInNew int
	// curMtime is cur/'s modification time when it was last listed; while
	// curTrusted and the time is unchanged, Sync reuses names instead of
	// listing cur/ again.
	curMtime   time.Time
	curTrusted bool
	// curSuspect: names is cur/ as last listed plus our own moves, and
	// curMtime is the time right after those moves; trusted like
	// curTrusted until verifyCur, pending since verifyPending, checks it.
	curSuspect    bool
	verifyPending bool
	// curStamp is cur/'s stat at the listing curTrusted rests on, and
	// curStampOK says that its change time was old enough then too: what
	// a Checkpoint records.
	curStamp   dirStamp
	curStampOK bool
	// resumeDB is the identity of the UID database a snapshot taken from a
	// checkpoint (Resume) was built from, until the database is read.
	resumeDB *fileIdentity
	// lastSnap is the last Snapshot returned and lastDB the UID database it
	// was built from; Sync returns it again while nothing changed.
	lastSnap *Snapshot
	lastDB   *uidDB
	lastGen  uint64 // lastDB.gen when lastSnap was built
	// arena is the longest Messages slice handed out of the array the
	// last snapshot's Messages live in (see extendable).
	arena []Message
	// curList is cur/'s last listing in directory order when names holds
	// exactly it (deltaSync compares the next listing with it); nil when
	// unknown.
	curList []string
	// newKeys are the keys names has in new/ (namesInNew of them) when
	// curList is set.
	newKeys []string
	// deltaSyncs counts the snapshots deltaSync patched, ownMoveSyncs
	// those it patched without listing cur/, inPlaceSyncs those whose
	// messages it appended to the last snapshot's array (for tests).
	deltaSyncs, ownMoveSyncs, inPlaceSyncs int
	// numbered is every key of a UID database that assignUIDs just made
	// from nothing, in UID order, for the snapshot built right after it
	// (which then need not sort them again).
	numbered []numberedKey
	// dbWritten delivers the result of writing dbWriting, a new UID
	// database, in the background (finishDBWrite).
	dbWritten chan error
	dbWriting *uidDB
	// resumes counts the snapshots taken from checkpoints (for tests).
	resumes int
	// scanHook, when set (by tests), is called at each scanStage of
	// scanFolder and deltaSync, with f.mu held: a test does there what
	// another process could do at that instant.
	scanHook func(scanStage)
}

// fileMeta caches what stat told us about a message; mtime and content never
// change in a Maildir (flag changes are renames), so one stat per message
// life is enough.
type fileMeta struct {
	mtime time.Time
	size  int64
}

// Make creates a maildir at root: root itself (and missing parents) and its
// tmp/, new/ and cur/ subdirectories, mode 0700. Existing directories are
// left alone, as maildirmake does when asked to repair one.
func Make(root string) error {
	for _, d := range []string{root, filepath.Join(root, "tmp"), filepath.Join(root, "new"), filepath.Join(root, "cur")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("maildir %s: make: %w", root, err)
		}
	}
	return nil
}

// MakeFor is Make for the mail of the user uid, gid (a first login): a
// process running as root gives the user the directories it made, the
// missing parents included, as Courier's maildirmake run as the user would
// have them.
func MakeFor(root string, uid, gid int) error {
	if ReaderFor(uid, gid) == nil {
		return Make(root)
	}
	first := root // the top directory that does not exist yet
	for p := root; ; {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		first = p
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if err := Make(root); err != nil {
		return err
	}
	var made []string
	for p := root; ; p = filepath.Dir(p) {
		made = append(made, p)
		if p == first || p == filepath.Dir(p) {
			break
		}
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		made = append(made, filepath.Join(root, d))
	}
	for _, p := range made {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("maildir %s: make: %w", root, err)
		}
	}
	return nil
}

// Open opens the maildir at root with default options.
func Open(root string) (*Maildir, error) {
	return OpenWithOptions(root, Options{})
}

// OpenAs opens the maildir at root for the user uid, gid: a process
// running as root reading for another user gets Options.Reader set, so
// that it serves only what that user could read themselves; any other
// process (running as the user, or reading root's own mail) opens it as
// Open does, the kernel deciding.
func OpenAs(root string, uid, gid int) (*Maildir, error) {
	return OpenWithOptions(root, Options{Reader: ReaderFor(uid, gid)})
}

// ReaderFor is the Options.Reader for mail of the user uid, gid read by
// this process: nil when the process is not root (the kernel checks its
// own rights) or reads root's own mail.
func ReaderFor(uid, gid int) *Identity {
	if uid == 0 || os.Geteuid() != 0 {
		return nil
	}
	return &Identity{UID: uid, GID: gid}
}

// OpenWithOptions opens the maildir at root. It returns ErrNotMaildir when
// root lacks tmp/, new/ or cur/.
func OpenWithOptions(root string, opt Options) (*Maildir, error) {
	if err := checkMaildirDirs(root); err != nil {
		return nil, err
	}
	host := opt.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		host = h
	}
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if opt.SharedFrom != "" && opt.sharedReal == "" {
		real, err := resolveSharable(opt.SharedFrom)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: %w", root, err)
		}
		opt.sharedReal = real
	}
	if opt.Reader != nil {
		if err := opt.Reader.reachesDir(root, 5); err != nil {
			return nil, fmt.Errorf("maildir %s: %w", root, err)
		}
	}
	return &Maildir{
		reader:       opt.Reader,
		sharedFrom:   strings.TrimRight(opt.SharedFrom, "/"),
		sharedReal:   opt.sharedReal,
		sharedID:     opt.sharedID,
		root:         root,
		hostname:     escapeHostname(host),
		pid:          processID(),
		log:          logger,
		defaultQuota: opt.DefaultQuota,
		folders:      make(map[string]*Folder),
	}, nil
}

// wholeMaildirs: maildirs seen with tmp/, new/ and cur/, while their
// directory is unchanged (one stat instead of three on each open).
var wholeMaildirs dirfact.Cache

func checkMaildirDirs(dir string) error {
	rootSt, err := os.Stat(dir)
	if err == nil && wholeMaildirs.Holds(dir, rootSt) {
		return nil
	}
	if err := checkMaildirSubdirs(dir); err != nil {
		wholeMaildirs.Forget(dir)
		return err
	}
	if rootSt != nil {
		wholeMaildirs.Remember(dir, rootSt, time.Now())
	}
	return nil
}

// processID is os.Getpid, asked once (a Go process does not fork).
var processID = sync.OnceValue(os.Getpid)

func checkMaildirSubdirs(dir string) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("maildir %s: %s missing: %w", dir, sub, ErrNotMaildir)
			}
			return fmt.Errorf("maildir %s: %w", dir, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("maildir %s: %s is not a directory: %w", dir, sub, ErrNotMaildir)
		}
	}
	return nil
}

// escapeHostname makes the host name safe inside a unique name: "/" would
// be a path separator and ":" starts the info, so they become \057 and
// \072 as Courier and Dovecot write them.
func escapeHostname(h string) string {
	h = strings.ReplaceAll(h, "/", `\057`)
	h = strings.ReplaceAll(h, ":", `\072`)
	return h
}

// Root returns the maildir's directory.
func (m *Maildir) Root() string { return m.root }

// Deliver stores a message into the named folder; see Folder.Deliver.
func (m *Maildir) Deliver(folder string, r io.Reader, opt DeliverOptions) (string, error) {
	f, err := m.Folder(folder)
	if err != nil {
		return "", err
	}
	return f.Deliver(r, opt)
}

// uniqueBase returns a new unique name without the ",S=" size:
// TIME.M<usec>P<pid>Q<n>R<random>.HOST, the Courier/Dovecot style that
// sorts by delivery time and stays unique across hosts sharing NFS.
func (m *Maildir) uniqueBase() string {
	now := time.Now()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on Linux
	n := m.deliveries.Add(1)
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, m.pid, n, hex.EncodeToString(rnd[:]), m.hostname)
}

// Name returns "INBOX" or the Maildir++ name.
func (f *Folder) Name() string {
	if f.name == "" {
		return Inbox
	}
	return f.name
}

// Path returns the folder's directory on disk.
func (f *Folder) Path() string { return f.path }

// Deliver stores one message: written to tmp/ and made durable,
// hard-linked into new/ (or into cur/ with a ":2," info when opt.Flags or
// opt.Keywords are set) and the name made durable, the tmp/ name removed,
// so that on return the message survives a crash (a 250 may be sent).
// Concurrent deliveries share the flushes (groupcommit.go). The quota is checked
// before the link unless opt.IgnoreQuota. It returns the message's key.
func (f *Folder) Deliver(r io.Reader, opt DeliverOptions) (string, error) {
	st, err := f.Stage(r, opt)
	if err != nil {
		return "", err
	}
	return st.Commit()
}

// Staged is a message written to tmp/ and made durable but not yet in the
// folder: Commit links it in as Deliver does, Discard drops it. IMAP's
// MULTIAPPEND stages every message of a command before committing any, so
// that a failure halfway leaves none behind.
type Staged struct {
	f       *Folder
	opt     DeliverOptions
	info    string
	base    string
	tmpPath string
	size    int64
	barrier *fsBarrier
	// anon is the open unnamed file (O_TMPFILE) holding the message when
	// the file system offers one; tmpPath is then unused.
	anon *os.File
	// journal and data: a journaled delivery, its bytes for the log. Its
	// file is written at Commit, while the log record is being flushed.
	journal *Journal
	data    *bytes.Buffer
}

// Stage writes r to tmp/ and makes it durable (the first half of Deliver).
// A journaled delivery (opt.Journal) only reads r here: the file is
// written, and the message made durable by the journal, at Commit.
func (f *Folder) Stage(r io.Reader, opt DeliverOptions) (*Staged, error) {
	info := ""
	if opt.Flags != "" || len(opt.Keywords) > 0 {
		flags, err := normalizeFlags(opt.Flags)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: deliver: %w", f.path, err)
		}
		letters, err := f.keywordLetters(opt.Keywords)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: deliver: %w", f.path, err)
		}
		info = flags + letters
	}
	if id := f.md.reader; id != nil {
		// Written as root for a user: only where the user could write
		// (a tmp/ or new/ the user linked to /etc is refused).
		for _, sub := range []string{"tmp", "new"} {
			if err := id.reachesDir(filepath.Join(f.path, sub), 3); err != nil {
				return nil, fmt.Errorf("maildir %s: deliver: %w", f.path, err)
			}
		}
	}
	base := f.md.uniqueBase()
	st := &Staged{f: f, opt: opt, info: info, base: base, tmpPath: filepath.Join(f.path, "tmp", base)}
	// Durable data first, then a durable name: with group commit (see
	// groupcommit.go) through syncfs calls shared with concurrent
	// deliveries, else per-file fsync and a directory fsync.
	// With a journal, the data is made durable by the log at Commit.
	var err error
	if groupCommit {
		if st.barrier, err = barrierFor(f.path); err == nil && opt.Journal != nil {
			var rest io.Reader
			if st.data, rest, err = opt.Journal.take(r); err == nil {
				if st.data != nil {
					st.journal, r = opt.Journal, bytes.NewReader(st.data.Bytes())
				} else {
					r = rest // too big for the log
				}
			}
		}
		switch {
		case err != nil:
		case st.journal != nil:
			st.size = int64(st.data.Len())
		default:
			if err = st.writeFile(r); err == nil {
				err = st.barrier.wait()
			}
		}
	} else {
		st.size, err = writeSynced(st.tmpPath, r)
	}
	if err != nil {
		st.Discard()
		return nil, fmt.Errorf("maildir %s: deliver: %w", f.path, err)
	}
	return st, nil
}

// writeFile writes the message to an unnamed file in tmp/, or to its tmp/
// name where the file system has no O_TMPFILE; unsynced.
//
// A root process writing for an account (Options.Reader) gives the file
// to the account, as the account's own process would have made it:
// otherwise the reader check would refuse the message it was just given.
func (st *Staged) writeFile(r io.Reader) error {
	var err error
	st.anon, st.size, err = writeAnonymous(filepath.Join(st.f.path, "tmp"), r)
	if errors.Is(err, errNoTmpfile) {
		st.size, err = writeUnsynced(st.tmpPath, r)
		if err == nil && st.f.md.reader != nil {
			if err = os.Chown(st.tmpPath, st.f.md.reader.UID, st.f.md.reader.GID); err != nil {
				os.Remove(st.tmpPath)
			}
		}
		return err
	}
	if err == nil && st.f.md.reader != nil {
		if err = st.anon.Chown(st.f.md.reader.UID, st.f.md.reader.GID); err != nil {
			st.anon.Close()
			st.anon = nil
		}
	}
	return err
}

// Size is the staged message's size on disk.
func (st *Staged) Size() int64 { return st.size }

// Discard removes a staged message that will not be committed.
func (st *Staged) Discard() {
	putJournalBuffer(st.data)
	st.data = nil
	if st.anon != nil {
		st.anon.Close() // an unnamed file goes with its last descriptor
		st.anon = nil
		return
	}
	os.Remove(st.tmpPath)
}

// Commit puts a staged message into the folder (the second half of
// Deliver) and returns its key. The tmp/ file is gone afterwards, whatever
// the outcome.
func (st *Staged) Commit() (string, error) {
	f, opt := st.f, st.opt
	deferred := false
	defer func() {
		if !deferred {
			st.Discard() // after the link the tmp name is just a second name
		}
	}()

	// Courier's quota leaves out the Trash folder and messages marked T.
	counts := f.name != trashFolder && !strings.Contains(opt.Flags, string(FlagTrashed))
	if counts && !opt.IgnoreQuota {
		noQuota, err := f.md.checkQuotaFile(st.size, 1)
		if err != nil {
			return "", fmt.Errorf("maildir %s: deliver: %w", f.path, err)
		}
		counts = !noQuota // no maildirsize to add the message to
	}
	key := st.base + ",S=" + strconv.FormatInt(st.size, 10)
	dest := filepath.Join(f.path, "new", key)
	if opt.Flags != "" || len(opt.Keywords) > 0 {
		dest = filepath.Join(f.path, "cur", key+":2,"+st.info)
	}
	// A journaled delivery is logged before its name appears: a crash
	// after the link finds the record and checks the file. The file is
	// whole before the link.
	if st.journal != nil && opt.Defer != nil {
		queued, err := st.logDeferred(dest, counts)
		if err != nil {
			return "", fmt.Errorf("maildir %s: deliver: %w", f.path, err)
		}
		if queued {
			deferred = true
			return key, nil
		}
	}
	var seq uint64
	if st.journal != nil {
		var err error
		if seq, err = st.writeLogged(dest); err != nil {
			return "", fmt.Errorf("maildir %s: deliver: %w", f.path, err)
		}
	}
	if err := st.setInternalDate(); err != nil {
		st.cancelRecord(seq)
		return "", fmt.Errorf("maildir %s: deliver: set internal date: %w", f.path, err)
	}
	err := st.link(dest)
	if err != nil {
		st.cancelRecord(seq)
		return "", fmt.Errorf("maildir %s: deliver: %w", f.path, err)
	}
	switch {
	case st.journal != nil:
		st.journal.log.Release(seq)
	case st.barrier != nil:
		err = st.barrier.wait()
	default:
		err = syncDir(filepath.Dir(dest))
	}
	if err != nil {
		return "", fmt.Errorf("maildir %s: deliver: %w", f.path, err)
	}
	if counts {
		f.md.addQuotaUsage(st.size, 1)
	}
	if len(opt.Keywords) > 0 {
		f.mirrorCourierKeywords(key, opt.Keywords)
	}
	return key, nil
}

// logDeferred makes a deferred delivery (DeliverOptions.Defer) durable by
// its journal record and queues the writing of its file on the Deferred.
// When the journal refuses the record, the file is written and made
// durable the usual way instead, and queued is false: the caller links it.
func (st *Staged) logDeferred(dest string, counts bool) (queued bool, err error) {
	seq, err := st.journal.append(dest, st.opt.InternalDate, st.data.Bytes(), st.barrier)
	if err == nil {
		if counts {
			st.f.md.addQuotaUsage(st.size, 1)
		}
		st.journal.pending.Add(1)
		st.opt.Defer.Then(func() { st.apply(dest, seq) })
		return true, nil
	}
	st.journal.refused(err)
	st.journal = nil
	if err := st.writeFile(bytes.NewReader(st.data.Bytes())); err != nil {
		return false, err
	}
	return false, st.barrier.wait()
}

// setInternalDate gives the written file its internal date (mtime), when
// the delivery has one.
func (st *Staged) setInternalDate() error {
	d := st.opt.InternalDate
	if d.IsZero() {
		return nil
	}
	if st.anon != nil {
		return unix.Futimes(int(st.anon.Fd()), []unix.Timeval{unix.NsecToTimeval(time.Now().UnixNano()), unix.NsecToTimeval(d.UnixNano())})
	}
	return os.Chtimes(st.tmpPath, time.Now(), d)
}

// link gives the written file its name in the folder.
func (st *Staged) link(dest string) error {
	if st.anon != nil {
		return linkAnonymous(st.anon, dest)
	}
	return linkOrRename(st.tmpPath, dest)
}

// apply is the deferred half of a journaled delivery whose record is
// durable: the file written and linked in under dest, the record released.
// When that fails, the message is written again the way a replay would
// (flushed, through a tmp/ name); when that fails too, the record is kept
// for the replay at the next start, and the journal no longer checkpoints
// past it.
func (st *Staged) apply(dest string, seq uint64) {
	j, opt := st.journal, st.opt
	defer j.pending.Add(-1)
	defer st.Discard()
	err := st.writeFile(bytes.NewReader(st.data.Bytes()))
	if err == nil {
		err = st.setInternalDate()
	}
	if err == nil {
		err = st.link(dest)
	}
	if err == nil {
		j.log.Release(seq)
		return
	}
	j.applyFailed(dest, st.data.Bytes(), opt.InternalDate, seq, err)
}

// parallelWriteSize is the size from which a journaled message's file is
// written on a goroutine of its own while its record is flushed. Below it
// the file is written first: handing a few kilobytes to a goroutine costs
// more in scheduling (a thread woken, then parked) than the write takes.
const parallelWriteSize = 64 << 10

// writeLogged writes a journaled message's file and logs its delivery to
// dest, durable on return. When the journal refuses the record the file is
// made durable the usual way and the delivery is no longer journaled.
func (st *Staged) writeLogged(dest string) (uint64, error) {
	data := st.data.Bytes()
	var written chan error
	if len(data) >= parallelWriteSize {
		written = make(chan error, 1)
		go func() { written <- st.writeFile(bytes.NewReader(data)) }()
	} else if err := st.writeFile(bytes.NewReader(data)); err != nil {
		return 0, err
	}
	seq, err := st.journal.append(dest, st.opt.InternalDate, data, st.barrier)
	var werr error
	if written != nil {
		werr = <-written
	}
	switch {
	case err != nil:
		st.journal.refused(err)
		st.journal = nil
		if werr == nil {
			werr = st.barrier.wait()
		}
	case werr != nil:
		st.cancelRecord(seq)
	}
	return seq, werr
}

// cancelRecord marks a journaled delivery's record as not applied (the
// delivery fails), so that replay skips it.
func (st *Staged) cancelRecord(seq uint64) {
	if st.journal != nil {
		st.journal.log.Cancel(seq)
	}
}

// errNoTmpfile: the file system (or kernel) has no O_TMPFILE.
var errNoTmpfile = errors.New("no O_TMPFILE")

// tmpfileWorks turns false at the first file system that refuses
// O_TMPFILE (NFS, old kernels), so later deliveries go straight to named
// files in tmp/.
var tmpfileWorks atomic.Bool

func init() { tmpfileWorks.Store(true) }

// writeAnonymous copies r into an unnamed file in dir (open(2) O_TMPFILE)
// without syncing it. It is the tmp/ step of maildir(5) without a name:
// no directory entry to create and remove again, and nothing left behind
// by a crash (the kernel frees an unlinked inode). linkAnonymous gives it
// its name in new/ or cur/. errNoTmpfile when unsupported.
func writeAnonymous(dir string, r io.Reader) (*os.File, int64, error) {
	if !tmpfileWorks.Load() {
		return nil, 0, errNoTmpfile
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			tmpfileWorks.Store(false)
			return nil, 0, errNoTmpfile
		}
		return nil, 0, fmt.Errorf("open tmpfile in %s: %w", dir, err)
	}
	file := os.NewFile(uintptr(fd), dir+"/(unnamed)")
	n, err := copyPooled(file, r)
	if err != nil {
		file.Close()
		return nil, 0, err
	}
	return file, n, nil
}

// linkAnonymous names an unnamed file at dst. linkat(2) with AT_EMPTY_PATH
// needs CAP_DAC_READ_SEARCH, so the file is linked through its
// /proc/self/fd entry (AT_SYMLINK_FOLLOW), which any process may do with
// its own descriptor. A name clash is an error, never a replacement.
func linkAnonymous(file *os.File, dst string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(file.Fd())), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("link %s: name clash: %w", dst, fs.ErrExist)
		}
		return fmt.Errorf("link %s: %w", dst, err)
	}
	return nil
}

// writeUnsynced copies r into a new file at path without syncing it; the
// caller makes it durable. On any error the file is removed.
func writeUnsynced(path string, r io.Reader) (int64, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := copyPooled(file, r)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return n, nil
}

// copyBuffers are reused by deliveries: a fresh 32 KiB copy buffer per
// message was most of a delivery's garbage.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// copyPooled is io.Copy with a pooled buffer. A message already in memory
// is written in one call. Otherwise both ends are wrapped so that neither
// the reader's WriteTo nor the file's ReadFrom (which falls back to io.Copy
// with a fresh 32 KiB buffer for a reader it cannot splice) is used.
func copyPooled(w io.Writer, r io.Reader) (int64, error) {
	if br, ok := r.(*bytes.Reader); ok {
		return br.WriteTo(w)
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, *bp)
}

// writeSynced copies r into a new file at path and fsyncs it. On any error
// the file is removed, so tmp/ never keeps a partial message.
func writeSynced(path string, r io.Reader) (int64, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(file, r)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return n, nil
}

// linkOrRename puts src at dst without ever replacing an existing dst: a
// hard link is atomic and fails on a name clash. Filesystems without hard
// links (some FUSE and SMB mounts) get a rename instead.
func linkOrRename(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("link %s: name clash: %w", dst, err)
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EMLINK) {
		if rerr := os.Rename(src, dst); rerr != nil {
			return fmt.Errorf("rename %s: %w", dst, rerr)
		}
		return nil
	}
	return fmt.Errorf("link %s: %w", dst, err)
}

// syncDir fsyncs a directory so that a name just linked into it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary name beside path, fsyncs it,
// renames it over path and fsyncs the directory: readers see the old or
// the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.tmp.%d.%s", path, os.Getpid(), hex.EncodeToString(rnd[:]))
	file, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// fileIdentity tells whether a file was replaced or changed since it was
// last read: rename-over gives a new inode, appends change size and mtime.
type fileIdentity struct {
	ino   uint64
	size  int64
	mtime int64
}

func identityOf(st os.FileInfo) fileIdentity {
	id := fileIdentity{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = sys.Ino
	}
	return id
}

// lockFile takes an exclusive flock on path (created if missing) and
// returns the function that releases it. flock locks belong to the open
// file description, so two goroutines of this process exclude each other
// as two processes do.
func lockFile(path string) (func(), error) {
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(file.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
		file.Close()
	}, nil
}
