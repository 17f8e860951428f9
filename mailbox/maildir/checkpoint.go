package maildir

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A checkpoint lets a caller that keeps its own index of a folder (the
// IMAP server) take the folder up again in a new process without listing
// cur/ or reading the UID database, as Dovecot does with its index. It
// records what the folder's files said when the caller's snapshot was
// exact:
//
//   - cur/'s inode, modification time and change time at a listing taken
//     when both times were old enough that any later change to the
//     directory must carry a later time (trustAge: 100 ms when the time has
//     a sub-second part, else 2 s). The change time is set by the kernel
//     alone, so a time put back with utimes(2) (cp -a, rsync) still shows;
//   - the identity (inode, size, modification time) of courierimapuiddb and
//     of dovecot-keywords;
//   - UIDVALIDITY, UIDNEXT and the number of messages;
//   - the file names that are not the canonical "cur/KEY:2,FLAGS+LETTERS"
//     the snapshot's flags and keywords give (at most maxCheckpointNames).
//
// Resume accepts it only when all of that still holds and new/ may hold
// anything (new/ is listed by every Sync anyway). A checkpoint is never
// given while messages sit in new/ or cur/'s listing is not trusted.

// checkpointMagic starts an encoded checkpoint; the digit is its version.
const checkpointMagic = "PMCK1"

// maxCheckpointNames bounds the non-canonical names a checkpoint carries;
// a folder with more is listed at its next open.
const maxCheckpointNames = 1024

// dirStamp is what a directory's stat says about its entries: any change
// to them moves both times.
type dirStamp struct {
	ino          uint64
	mtime, ctime int64 // Unix ns
}

func stampOf(st os.FileInfo) dirStamp {
	s := dirStamp{mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
		s.ctime = time.Unix(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)).UnixNano()
	}
	return s
}

// trustedAt says whether a listing taken right after a stat at statAt,
// which gave s, stays exact while the directory keeps s: both times were
// old enough then that a later change cannot carry them again.
func (s dirStamp) trustedAt(statAt time.Time) bool {
	m, c := time.Unix(0, s.mtime), time.Unix(0, s.ctime)
	return s.ctime != 0 && statAt.Sub(m) > trustAge(m) && statAt.Sub(c) > trustAge(c)
}

// trustListing records that cur/, stat'ed at statAt as st, was listed and
// its listing may be reused while its time stays (curTrusted). Caller
// holds f.mu.
func (f *Folder) trustListing(st os.FileInfo, statAt time.Time) {
	f.curMtime, f.curTrusted = st.ModTime(), true
	f.curStamp = stampOf(st)
	f.curStampOK = f.curStamp.trustedAt(statAt)
}

// checkpoint is a decoded checkpoint.
type checkpoint struct {
	cur          dirStamp
	uidDB, kw    fileIdentity
	validity     uint32
	next         uint32
	count        int
	names        map[uint32]string // UID → name, where not canonical
	namesInOrder []uint32
}

func (c *checkpoint) encode() []byte {
	b := []byte(checkpointMagic)
	b = binary.AppendUvarint(b, c.cur.ino)
	b = binary.AppendVarint(b, c.cur.mtime)
	b = binary.AppendVarint(b, c.cur.ctime)
	for _, id := range []fileIdentity{c.uidDB, c.kw} {
		b = binary.AppendUvarint(b, id.ino)
		b = binary.AppendVarint(b, id.size)
		b = binary.AppendVarint(b, id.mtime)
	}
	b = binary.AppendUvarint(b, uint64(c.validity))
	b = binary.AppendUvarint(b, uint64(c.next))
	b = binary.AppendUvarint(b, uint64(c.count))
	b = binary.AppendUvarint(b, uint64(len(c.namesInOrder)))
	for _, uid := range c.namesInOrder {
		n := c.names[uid]
		b = binary.AppendUvarint(b, uint64(uid))
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	return b
}

var errBadCheckpoint = errors.New("maildir: bad checkpoint")

func decodeCheckpoint(b []byte) (*checkpoint, error) {
	if !strings.HasPrefix(string(b), checkpointMagic) {
		return nil, errBadCheckpoint
	}
	b = b[len(checkpointMagic):]
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	c := &checkpoint{}
	c.cur.ino, c.cur.mtime, c.cur.ctime = uv(), sv(), sv()
	for _, id := range []*fileIdentity{&c.uidDB, &c.kw} {
		id.ino, id.size, id.mtime = uv(), sv(), sv()
	}
	validity, next, count, nnames := uv(), uv(), uv(), uv()
	if bad || validity == 0 || validity > 1<<32-1 || next > 1<<32-1 || count > 1<<32-1 || nnames > maxCheckpointNames {
		return nil, errBadCheckpoint
	}
	c.validity, c.next, c.count = uint32(validity), uint32(next), int(count)
	for range nnames {
		uid := uv()
		n := uv()
		if bad || uid == 0 || uid > 1<<32-1 || n > uint64(len(b)) {
			return nil, errBadCheckpoint
		}
		if c.names == nil {
			c.names = make(map[uint32]string)
		}
		c.names[uint32(uid)] = string(b[:n])
		c.namesInOrder = append(c.namesInOrder, uint32(uid))
		b = b[n:]
	}
	if bad || len(b) != 0 {
		return nil, errBadCheckpoint
	}
	return c, nil
}

// canonicalFileName is the file name a message in cur/ with m's flags and
// keywords has when Postern (or Dovecot) names it: "cur/KEY:2," then the
// flag letters, then the keyword letters in order. ok is false when a
// keyword has no letter in km.
func canonicalFileName(m *Message, km *keywordMap) (string, bool) {
	var kw [maxKeywords]bool
	for _, k := range m.Keywords {
		i := km.index(k)
		if i < 0 {
			return "", false
		}
		kw[i] = true
	}
	b := make([]byte, 0, 4+len(m.Key)+3+len(m.Flags)+len(m.Keywords))
	b = append(b, "cur/"...)
	b = append(b, m.Key...)
	b = append(b, ":2,"...)
	b = append(b, m.Flags...)
	for i, ok := range kw {
		if ok {
			b = append(b, byte('a'+i))
		}
	}
	return string(b), true
}

// isCanonical says whether m.Name is canonicalFileName(m), without building it
// for the usual message without keywords.
func isCanonical(m *Message, km *keywordMap) bool {
	if len(m.Keywords) > 0 {
		n, ok := canonicalFileName(m, km)
		return ok && n == m.Name
	}
	n := m.Name
	return len(n) == 4+len(m.Key)+3+len(m.Flags) && n[:4] == "cur/" && n[4:4+len(m.Key)] == m.Key &&
		n[4+len(m.Key):7+len(m.Key)] == ":2," && n[7+len(m.Key):] == m.Flags
}

// Checkpoint returns the folder's snapshot with a checkpoint for Resume,
// or a nil checkpoint when the folder cannot be described now: messages
// in new/, files changed since the snapshot, too many names out of the
// usual form. With wait it first brings the folder up to date (a Sync
// that leaves new/ alone) and, when cur/ changed so recently that its
// listing cannot be trusted yet, waits until it can be (at most trustAge,
// 100 ms on file systems with sub-second times) and lists cur/ again.
// Without wait it describes the last snapshot as it stands (a few stats;
// nil when the folder was never synced).
func (f *Folder) Checkpoint(wait bool) (*Snapshot, []byte, error) {
	var snap *Snapshot
	if wait {
		s, err := f.Sync(false)
		if err != nil {
			return nil, nil, err
		}
		snap = s
	} else {
		f.mu.Lock()
		snap = f.lastSnap
		f.mu.Unlock()
		if snap == nil {
			return nil, nil, nil
		}
	}
	f.mu.Lock()
	cp, settle := f.checkpointLocked(snap)
	if cp == nil && settle >= 0 && wait {
		f.mu.Unlock()
		time.Sleep(settle)
		f.mu.Lock()
		f.curTrusted, f.curSuspect = false, false // list cur/ again
		f.mu.Unlock()
		var err error
		if snap, err = f.Sync(false); err != nil {
			return nil, nil, err
		}
		f.mu.Lock()
		cp, _ = f.checkpointLocked(snap)
	}
	f.mu.Unlock()
	if cp == nil {
		return snap, nil, nil
	}
	return snap, cp.encode(), nil
}

// checkpointLocked describes the folder as snap, its last snapshot, has
// it. With a nil checkpoint, settle ≥ 0 says that cur/'s listing was not
// trusted and could be after that wait; -1 that waiting would not help.
// Caller holds f.mu.
func (f *Folder) checkpointLocked(snap *Snapshot) (*checkpoint, time.Duration) {
	if snap != f.lastSnap || f.namesInNew != 0 || f.names == nil {
		return nil, -1
	}
	curSt, err := os.Stat(filepath.Join(f.path, "cur"))
	if err != nil {
		return nil, -1
	}
	now := stampOf(curSt)
	if !f.curTrusted || f.curSuspect || !f.curStampOK || f.curStamp != now {
		// Listed too early, or changed since: once both of cur/'s times
		// are old enough, a new listing can be trusted.
		m, c := time.Unix(0, now.mtime), time.Unix(0, now.ctime)
		wait := max(trustAge(m)-time.Since(m), trustAge(c)-time.Since(c), 0)
		return nil, wait + 10*time.Millisecond
	}
	c := &checkpoint{cur: now, validity: snap.UIDValidity, next: snap.UIDNext, count: len(snap.Messages)}
	switch {
	case f.lastDB != nil && f.lastDB == f.uidCache && f.lastGen == f.lastDB.gen:
		c.uidDB = f.uidStat
	case f.lastDB == nil && f.resumeDB != nil:
		c.uidDB = *f.resumeDB
	default:
		return nil, -1
	}
	if st, err := os.Stat(filepath.Join(f.path, uidDBName)); err != nil || identityOf(st) != c.uidDB {
		return nil, -1
	}
	c.kw = f.lastKwStat
	if id, err := keywordsIdentity(f.path); err != nil || id != c.kw {
		return nil, -1
	}
	km := f.kwCache
	if km == nil {
		km = &keywordMap{}
	}
	if len(snap.NewUIDs) > 0 {
		return nil, -1
	}
	for i := range snap.Messages {
		m := &snap.Messages[i]
		if !strings.HasPrefix(m.Name, "cur/") {
			return nil, -1
		}
		if isCanonical(m, km) {
			continue
		}
		if len(c.namesInOrder) == maxCheckpointNames {
			return nil, -1
		}
		if c.names == nil {
			c.names = make(map[uint32]string)
		}
		c.names[m.UID] = m.Name
		c.namesInOrder = append(c.namesInOrder, m.UID)
	}
	return c, 0
}

// keywordsIdentity is dovecot-keywords' identity, zero when it is missing
// (as cachedKeywords records it).
func keywordsIdentity(dir string) (fileIdentity, error) {
	st, err := os.Stat(filepath.Join(dir, keywordsName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileIdentity{}, nil
		}
		return fileIdentity{}, err
	}
	return identityOf(st), nil
}

// Resume gives a folder this process has not synced yet the snapshot its
// caller kept together with the checkpoint Checkpoint returned for it.
// msgs are that snapshot's messages in UID order with UID, Key, Flags,
// Keywords, Size and InternalDate set; Resume fills in Name and
// VirtualSize. When cur/, courierimapuiddb and dovecot-keywords are as the
// checkpoint describes them, the snapshot becomes the folder's last one
// and is returned: the next Sync lists new/ only, and cur/ only once its
// times change. Otherwise Resume returns nil and changes nothing. The
// folder takes msgs over: the caller must not change it, nor anything
// past its end in its array, where the next Syncs may append (give it
// some spare capacity for that).
func (f *Folder) Resume(encoded []byte, msgs []Message) *Snapshot {
	c, err := decodeCheckpoint(encoded)
	if err != nil || c.count != len(msgs) {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastSnap != nil || f.names != nil {
		return nil // this process knows the folder already
	}
	curSt, err := os.Stat(filepath.Join(f.path, "cur"))
	if err != nil || stampOf(curSt) != c.cur {
		return nil
	}
	if st, err := os.Stat(filepath.Join(f.path, uidDBName)); err != nil || identityOf(st) != c.uidDB {
		return nil
	}
	km, err := f.cachedKeywords()
	if err != nil || f.kwStat != c.kw {
		return nil
	}
	// Every name in one string: the keys are the caller's, the names
	// slices of it.
	size := 0
	for i := range msgs {
		m := &msgs[i]
		if i > 0 && m.UID <= msgs[i-1].UID || m.UID == 0 || m.UID >= c.next || m.Key == "" {
			return nil
		}
		if n, ok := c.names[m.UID]; ok {
			size += len(n)
		} else {
			size += 4 + len(m.Key) + 3 + len(m.Flags) + len(m.Keywords)
		}
	}
	var sb strings.Builder
	sb.Grow(size)
	ends := make([]int, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		if n, ok := c.names[m.UID]; ok {
			sb.WriteString(n)
		} else if len(m.Keywords) > 0 {
			n, ok := canonicalFileName(m, km)
			if !ok {
				return nil
			}
			sb.WriteString(n)
		} else {
			sb.WriteString("cur/")
			sb.WriteString(m.Key)
			sb.WriteString(":2,")
			sb.WriteString(m.Flags)
		}
		ends[i] = sb.Len()
	}
	all := sb.String()
	names := make(map[string]string, len(msgs))
	start := 0
	for i := range msgs {
		m := &msgs[i]
		m.Name = all[start:ends[i]]
		start = ends[i]
		if _, exception := c.names[m.UID]; exception {
			// A name from the checkpoint must still be this message's.
			if k, _ := splitName(strings.TrimPrefix(m.Name, "cur/")); k != m.Key || !strings.HasPrefix(m.Name, "cur/") {
				return nil
			}
		}
		m.VirtualSize = max(sizeField(m.Key, 'W'), 0)
		names[m.Key] = m.Name
	}
	if len(names) != len(msgs) {
		return nil // a key twice
	}
	snap := &Snapshot{UIDValidity: c.validity, UIDNext: c.next, Messages: msgs}
	f.lastSnap, f.lastDB, f.lastGen = snap, nil, 0
	f.arena = msgs // handed over: the next deliveries are appended past its end
	id := c.uidDB
	f.resumeDB = &id
	f.lastKwStat = f.kwStat
	f.names, f.namesInNew = names, 0
	f.meta = make(map[string]fileMeta) // the snapshot has every date and size
	f.curList, f.newKeys = nil, nil
	f.curMtime, f.curTrusted, f.curSuspect = curSt.ModTime(), true, false
	f.curStamp, f.curStampOK = c.cur, true
	f.resumes++
	return snap
}

// uidDBForSync returns the UID database (nil when missing or unusable) for
// a Sync. A folder resumed from a checkpoint has not read it: when the file
// read now is the one the checkpoint named, it is the database the resumed
// snapshot was built from and becomes lastDB. Caller holds f.mu.
func (f *Folder) uidDBForSync() (*uidDB, error) {
	db, err := f.cachedUIDDB()
	if err != nil {
		return nil, err
	}
	if f.resumeDB != nil {
		if db != nil && f.lastDB == nil && f.uidStat == *f.resumeDB {
			f.lastDB, f.lastGen = db, db.gen
		}
		f.resumeDB = nil
	}
	return db, nil
}

// resumedDBUnchanged says, for a folder resumed from a checkpoint that has
// not read its UID database yet, whether the file is still the one the
// checkpoint named (a stat, not a read). Caller holds f.mu.
func (f *Folder) resumedDBUnchanged() bool {
	if f.resumeDB == nil || f.lastDB != nil {
		return false
	}
	st, err := os.Stat(filepath.Join(f.path, uidDBName))
	return err == nil && identityOf(st) == *f.resumeDB
}
