package maildir

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The UID database is Courier's courierimapuiddb, one per folder:
//
//	1 UIDVALIDITY NEXTUID
//	UID KEY
//	...
//
// The first field is the format version (1). KEY is the message's base
// name without the ":2," info. Dovecot's dovecot-uidlist started from the
// same format, which is why Courier installations migrate by keeping this
// file: the UIDs clients have cached stay valid.
//
// Courier rewrites the whole file whenever a UID is given or a message
// leaves. At 100,000 messages that is 6 MB and an fsync per new message,
// so Postern writes the header with both numbers zero-padded to ten
// digits (Courier's sscanf("%d %lu %lu") reads them as before) and then
// changes the file in place: the new header is written over the old one
// (same length) and the new lines are appended. A message that left is
// recorded by appending its UID alone on a line, which Courier's reader
// skips (a line without a space) and ours reads as "this UID is gone";
// Courier itself drops a line whose file no longer exists. When such
// lines outnumber the live ones the file is rewritten in full, as it is
// when the header was written by Courier (unpadded) or could not be
// trusted.

// maxUIDDBSize bounds what we read; a folder of a million messages needs
// about 80 MB, so 256 MiB leaves headroom while refusing absurd files.
const maxUIDDBSize = 256 << 20

// maxUIDDBLine bounds one line: keys are file names (< 256 bytes).
const maxUIDDBLine = 4096

var errCorruptUIDDB = errors.New("corrupt courierimapuiddb")

type uidDB struct {
	validity uint32
	next     uint32
	uids     map[string]uint32 // key → UID
	// padded is true when the file's header has the fixed-width form that
	// can be rewritten in place; lines counts the file's lines after the
	// header (live, stale and gone markers) to tell when to compact.
	padded bool
	lines  int
	// gen counts changes made in place, so that Sync can tell this
	// database from the one its last snapshot was built from.
	gen uint64
}

// paddedHeaderLen is the length of "1 VVVVVVVVVV NNNNNNNNNN\n".
const paddedHeaderLen = 24

func paddedHeader(validity, next uint32) []byte {
	return fmt.Appendf(nil, "1 %010d %010d\n", validity, next)
}

func newUIDDB(validity uint32) *uidDB {
	return &uidDB{validity: validity, next: 1, uids: make(map[string]uint32)}
}

// parseUIDDB reads a courierimapuiddb. Any inconsistency (bad header,
// malformed line, a UID used twice) makes the whole file untrustworthy:
// the caller starts a new UIDVALIDITY, as Courier does, rather than risk
// giving two messages one UID. A UID at or above NEXTUID only raises
// NEXTUID, since that keeps every promise made so far. The header's
// validity is returned even on error so that a replacement can differ.
func parseUIDDB(data []byte) (*uidDB, uint32, error) {
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	head := strings.Fields(string(line))
	if len(head) != 3 || head[0] != "1" {
		return nil, 0, fmt.Errorf("header %.40q: %w", line, errCorruptUIDDB)
	}
	validity, err1 := strconv.ParseUint(head[1], 10, 32)
	next, err2 := strconv.ParseUint(head[2], 10, 32)
	if err1 != nil || err2 != nil || validity == 0 || next == 0 {
		return nil, 0, fmt.Errorf("header %.40q: %w", line, errCorruptUIDDB)
	}
	db := &uidDB{validity: uint32(validity), next: uint32(next), uids: make(map[string]uint32)}
	db.padded = len(line) == paddedHeaderLen-1 && string(line)+"\n" == string(paddedHeader(db.validity, db.next))
	// keyOf remembers each UID's key, so that a gone marker can drop it;
	// a UID seen once is never accepted again, gone or not.
	keyOf := make(map[uint32]string)
	lineNo := 1
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		lineNo++
		if len(line) == 0 {
			continue
		}
		db.lines++
		if len(line) > maxUIDDBLine {
			return nil, db.validity, fmt.Errorf("line %d too long: %w", lineNo, errCorruptUIDDB)
		}
		uidText, key, ok := bytes.Cut(line, []byte(" ")) // keys may hold spaces: cut at the first
		uid, err := strconv.ParseUint(string(uidText), 10, 32)
		if !ok && err == nil && uid != 0 {
			// "UID" alone: the message with that UID left the folder.
			if k, known := keyOf[uint32(uid)]; known && k != "" && db.uids[k] == uint32(uid) {
				delete(db.uids, k)
			}
			if _, known := keyOf[uint32(uid)]; !known {
				keyOf[uint32(uid)] = ""
			}
			continue
		}
		if !ok || err != nil || uid == 0 || len(key) == 0 || bytes.ContainsAny(key, "/:\x00") {
			return nil, db.validity, fmt.Errorf("line %d %.60q: %w", lineNo, line, errCorruptUIDDB)
		}
		k := string(key)
		if _, seen := keyOf[uint32(uid)]; seen || db.uids[k] != 0 {
			return nil, db.validity, fmt.Errorf("line %d: UID %d or key used twice: %w", lineNo, uid, errCorruptUIDDB)
		}
		keyOf[uint32(uid)] = k
		db.uids[k] = uint32(uid)
		if uint32(uid) >= db.next {
			if uid == 1<<32-1 {
				return nil, db.validity, fmt.Errorf("line %d: UID space exhausted: %w", lineNo, errCorruptUIDDB)
			}
			db.next = uint32(uid) + 1
		}
	}
	return db, db.validity, nil
}

// marshal writes the database with lines in UID order.
func (db *uidDB) marshal() []byte {
	type entry struct {
		uid uint32
		key string
	}
	entries := make([]entry, 0, len(db.uids))
	for k, u := range db.uids {
		entries = append(entries, entry{u, k})
	}
	slices.SortFunc(entries, func(a, b entry) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	var b bytes.Buffer
	b.Grow(32 + len(entries)*64)
	b.Write(paddedHeader(db.validity, db.next))
	for _, e := range entries {
		b.WriteString(strconv.FormatUint(uint64(e.uid), 10))
		b.WriteByte(' ')
		b.WriteString(e.key)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func int64cmp(a, b int64) int { return cmp.Compare(a, b) }

// readUIDDB reads the folder's database from disk. It returns (nil, nil)
// when the file does not exist and errCorruptUIDDB (with the old validity)
// when it cannot be trusted.
func readUIDDB(path string) (*uidDB, fileIdentity, uint32, error) {
	file, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fileIdentity{}, 0, nil
		}
		return nil, fileIdentity{}, 0, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, fileIdentity{}, 0, err
	}
	if st.Size() > maxUIDDBSize {
		return nil, identityOf(st), 0, fmt.Errorf("%d bytes: %w", st.Size(), errCorruptUIDDB)
	}
	data := make([]byte, st.Size())
	if _, err := file.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, identityOf(st), 0, err
	}
	db, oldValidity, err := parseUIDDB(data)
	return db, identityOf(st), oldValidity, err
}

// cachedUIDDB returns the database, re-reading it only when the file
// changed since the last read. Caller holds f.mu. A missing or corrupt
// file yields nil (the locked path deals with it).
func (f *Folder) cachedUIDDB() (*uidDB, error) {
	path := filepath.Join(f.path, uidDBName)
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			f.uidCache = nil
			return nil, nil
		}
		return nil, err
	}
	if f.uidCache != nil && identityOf(st) == f.uidStat {
		return f.uidCache, nil
	}
	db, id, _, err := readUIDDB(path)
	if err != nil {
		if errors.Is(err, errCorruptUIDDB) {
			f.uidCache = nil
			return nil, nil
		}
		return nil, err
	}
	f.uidCache, f.uidStat = db, id
	return db, nil
}

// uidMark is how far numbering had got in one UIDVALIDITY: every UID
// below next was given.
type uidMark struct{ validity, next uint32 }

// numberedSoFar is how far numbering had got when this folder last read
// or wrote its UID database (zero without one). Every message with a UID
// below it was in the folder by then: a message is numbered only once a
// listing found its file. Caller holds f.mu.
func (f *Folder) numberedSoFar() uidMark {
	if f.uidCache == nil {
		return uidMark{}
	}
	return uidMark{f.uidCache.validity, f.uidCache.next}
}

// earlierListing is the listing a Sync took before the one under the
// lock. A message missing from both left the folder (one listing is not
// enough: readdir can miss a file renamed at that instant), provided it
// was already there when the earlier listing began, which numbered tells:
// a message numbered since may have arrived after that listing, and then
// only the listing under the lock has had a chance to see it.
type earlierListing struct {
	names    map[string]string
	numbered uidMark // taken before the listing began
	// relist, when set, lists the folder again under the lock: the
	// listing under the lock reused cur/'s entries from names, which is no
	// second look. assignUIDs calls it when a message seems gone.
	relist func() (map[string]string, error)
}

// assignUIDs runs under the folder's flock: it makes sure the database is
// the file's current content (a concurrent process may have assigned UIDs
// since we looked: the file is re-read unless it is the very file we last
// read or wrote), gives new keys UIDs in delivery order, drops keys that
// are gone, and records the changes. present is a listing taken under the
// lock. A key is dropped only when earlier, the listing before, lacks it
// too and could have seen it (see earlierListing); with a nil earlier no
// key is dropped (the caller cannot prove an absence).
func (f *Folder) assignUIDs(present map[string]string, earlier *earlierListing) (*uidDB, error) {
	path := filepath.Join(f.path, uidDBName)
	var db *uidDB
	var oldValidity uint32
	var err error
	if st, serr := os.Stat(path); serr == nil && f.uidCache != nil && identityOf(st) == f.uidStat {
		db = f.uidCache
	} else {
		db, _, oldValidity, err = readUIDDB(path)
	}
	rewrite := false
	if err != nil {
		if !errors.Is(err, errCorruptUIDDB) {
			return nil, err
		}
		validity := uint32(time.Now().Unix())
		if oldValidity >= validity {
			validity = oldValidity + 1
		}
		f.md.log.Warn("maildir: courierimapuiddb unusable, starting a new UIDVALIDITY",
			"folder", f.path, "err", err, "uidvalidity", validity)
		db = newUIDDB(validity)
		rewrite = true
	}
	if db == nil && f.uidCache == nil {
		// No courierimapuiddb yet: a Maildir migrated from Dovecot keeps
		// its UIDs from dovecot-uidlist.
		if imported, ierr := readDovecotUIDList(filepath.Join(f.path, dovecotUIDListName)); ierr == nil && imported != nil {
			db = imported
			rewrite = true
		} else if ierr != nil {
			f.md.log.Warn("maildir: dovecot-uidlist unusable, not imported", "folder", f.path, "err", ierr)
		}
	}
	if db == nil {
		validity := uint32(time.Now().Unix())
		if f.uidCache != nil && f.uidCache.validity >= validity {
			validity = f.uidCache.validity + 1 // the file vanished; never reuse a validity
		}
		db = newUIDDB(validity)
		rewrite = true
	}
	fresh, freshNames := unnumbered(db, present)
	var gone []string
	// Every present key not fresh is in the database; when that is all of
	// it, nothing is gone and the database need not be walked.
	maybeGone := len(present)-len(fresh) != len(db.uids)
	if maybeGone && earlier != nil && earlier.relist != nil && earlier.numbered.validity == db.validity {
		if present, err = earlier.relist(); err != nil {
			return nil, err
		}
		fresh, freshNames = unnumbered(db, present)
		maybeGone = len(present)-len(fresh) != len(db.uids)
	}
	if maybeGone && earlier != nil && earlier.numbered.validity == db.validity {
		for k, uid := range db.uids {
			if uid >= earlier.numbered.next {
				continue // numbered since the earlier listing began
			}
			_, now := present[k]
			_, before := earlier.names[k]
			if !now && !before {
				gone = append(gone, k)
			}
		}
	}
	if len(fresh) == 0 && len(gone) == 0 && !rewrite {
		return db, nil
	}
	if uint64(db.next)+uint64(len(fresh)) >= 1<<32-1 {
		return nil, fmt.Errorf("UID space exhausted in %s", path)
	}
	// Every key new (a first open): the lines to append, in UID order,
	// are the whole file after its header.
	allFresh := len(db.uids) == 0
	if allFresh && len(fresh) > 0 {
		db.uids = make(map[string]uint32, len(fresh))
	}
	// The changes, as lines to append: gone markers, then the new UIDs.
	var tail []byte
	if len(fresh) > 64 {
		tail = make([]byte, 0, len(fresh)*(len(fresh[0])+12))
	}
	for _, k := range gone {
		tail = strconv.AppendUint(tail, uint64(db.uids[k]), 10)
		tail = append(tail, '\n')
		delete(db.uids, k)
	}
	live := len(db.uids) + len(fresh) // the map's size once filled
	f.numbered = nil
	if allFresh {
		f.numbered = make([]numberedKey, 0, len(fresh))
	}
	if allFresh && len(fresh) >= 4096 {
		// A first open: the map is filled beside the file's lines and
		// their writing (which do not read it).
		first := db.next
		mapped := make(chan struct{})
		go func() {
			defer close(mapped)
			for i, k := range fresh {
				db.uids[k] = first + uint32(i)
			}
		}()
		defer func() { <-mapped }()
	}
	for _, k := range fresh {
		if !allFresh || len(fresh) < 4096 {
			db.uids[k] = db.next
		}
		if allFresh {
			f.numbered = append(f.numbered, numberedKey{uid: db.next, key: k, name: freshNames[len(f.numbered)]})
		}
		tail = strconv.AppendUint(tail, uint64(db.next), 10)
		tail = append(tail, ' ')
		tail = append(tail, k...)
		tail = append(tail, '\n')
		db.next++
	}
	db.gen++
	lines := db.lines + len(gone) + len(fresh)
	if rewrite || !db.padded || lines > 2*live+1024 {
		var data []byte
		if allFresh {
			data = append(paddedHeader(db.validity, db.next), tail...)
		} else {
			data = db.marshal()
		}
		db.padded, db.lines = true, live
		if allFresh && len(fresh) >= 4096 && f.dbWritten == nil {
			// A first open of a big folder: the file is written and
			// fsync'd while the snapshot is built; Sync waits for it
			// (finishDBWrite) before it returns the UIDs to anyone.
			written := make(chan error, 1)
			go func() { written <- writeFileAtomic(path, data, 0o600) }()
			f.dbWritten, f.dbWriting = written, db
			return db, nil
		}
		if err := writeFileAtomic(path, data, 0o600); err != nil {
			f.uidCache = nil
			return nil, err
		}
	} else {
		if err := appendUIDDB(path, db, tail); err != nil {
			// The file may hold part of the change: read it again next time.
			f.uidCache = nil
			return nil, err
		}
		db.lines = lines
	}
	if st, err := os.Stat(path); err == nil {
		f.uidCache, f.uidStat = db, identityOf(st)
	} else {
		f.uidCache = nil
	}
	return db, nil
}

// unnumbered returns the keys of present that db gives no UID, in
// delivery order, and their names.
func unnumbered(db *uidDB, present map[string]string) (keys, names []string) {
	for k, n := range present {
		if db.uids[k] == 0 {
			keys = append(keys, k)
			names = append(names, n)
		}
	}
	sortKeysWith(keys, names)
	return keys, names
}

// finishDBWrite waits for a UID database assignUIDs is writing in the
// background, and records it as the file last read. Caller holds f.mu
// (and the folder's UID lock, under which the write started).
func (f *Folder) finishDBWrite() error {
	if f.dbWritten == nil {
		return nil
	}
	err := <-f.dbWritten
	db := f.dbWriting
	f.dbWritten, f.dbWriting = nil, nil
	if err != nil {
		f.uidCache = nil
		return err
	}
	if st, serr := os.Stat(filepath.Join(f.path, uidDBName)); serr == nil {
		f.uidCache, f.uidStat = db, identityOf(st)
	} else {
		f.uidCache = nil
	}
	return nil
}

// appendUIDDB records changes in place: the header with the new NEXTUID
// over the old one, then the new lines at the end, then fdatasync. A crash
// in between leaves either a NEXTUID above every UID in the file (some
// numbers are skipped, none given twice) or lines above NEXTUID, which our
// reader takes as raising it.
func appendUIDDB(path string, db *uidDB, tail []byte) error {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err == nil && st.Size() < paddedHeaderLen {
		err = errCorruptUIDDB
	}
	if err == nil {
		_, err = file.WriteAt(paddedHeader(db.validity, db.next), 0)
	}
	if err == nil {
		_, err = file.WriteAt(tail, st.Size())
	}
	if err == nil {
		err = unix.Fdatasync(int(file.Fd()))
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// dovecotUIDListName is Dovecot's UID list, read once when a folder has no
// courierimapuiddb yet.
const dovecotUIDListName = "dovecot-uidlist"

// readDovecotUIDList reads Dovecot's dovecot-uidlist, version 3
// ("3 V<validity> N<next> G<guid>", then "UID [ext ...] :KEY") or
// version 1 ("1 VALIDITY NEXT", then "UID KEY", Courier's layout).
// (nil, nil) when the file does not exist.
func readDovecotUIDList(path string) (*uidDB, error) {
	data, err := readBounded(path, maxUIDDBSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return parseDovecotUIDList(data)
}

func parseDovecotUIDList(data []byte) (*uidDB, error) {
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	head := strings.Fields(string(line))
	if len(head) == 0 {
		return nil, fmt.Errorf("dovecot-uidlist: empty header: %w", errCorruptUIDDB)
	}
	var validity, next uint64
	switch head[0] {
	case "1":
		if len(head) < 3 {
			return nil, fmt.Errorf("dovecot-uidlist: header %.40q: %w", line, errCorruptUIDDB)
		}
		validity, _ = strconv.ParseUint(head[1], 10, 32)
		next, _ = strconv.ParseUint(head[2], 10, 32)
	case "3":
		for _, h := range head[1:] {
			if len(h) < 2 {
				continue
			}
			switch h[0] {
			case 'V':
				validity, _ = strconv.ParseUint(h[1:], 10, 32)
			case 'N':
				next, _ = strconv.ParseUint(h[1:], 10, 32)
			}
		}
	default:
		return nil, fmt.Errorf("dovecot-uidlist: version %.10q: %w", head[0], errCorruptUIDDB)
	}
	if validity == 0 {
		return nil, fmt.Errorf("dovecot-uidlist: no UIDVALIDITY: %w", errCorruptUIDDB)
	}
	db := newUIDDB(uint32(validity))
	db.next = max(uint32(next), 1)
	used := map[uint32]bool{}
	for n := 2; len(rest) > 0; n++ {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		if len(line) > maxUIDDBLine {
			return nil, fmt.Errorf("dovecot-uidlist: line %d too long: %w", n, errCorruptUIDDB)
		}
		uidText, after, ok := bytes.Cut(line, []byte(" "))
		uid, err := strconv.ParseUint(string(uidText), 10, 32)
		if !ok || err != nil || uid == 0 || uid == 1<<32-1 {
			return nil, fmt.Errorf("dovecot-uidlist: line %d: %w", n, errCorruptUIDDB)
		}
		key := after
		if head[0] == "3" {
			// Extension fields (W<vsize>, S<size>, G<guid>...) come before
			// " :KEY"; a line without extensions starts with ":".
			if i := bytes.Index(after, []byte(" :")); i >= 0 {
				key = after[i+2:]
			} else if len(after) > 0 && after[0] == ':' {
				key = after[1:]
			} else {
				return nil, fmt.Errorf("dovecot-uidlist: line %d: no file name: %w", n, errCorruptUIDDB)
			}
		}
		// The list holds base names; drop any ":2," info to get our key.
		k, _ := splitName(string(key))
		if k == "" || strings.ContainsAny(k, "/\x00") || used[uint32(uid)] || db.uids[k] != 0 {
			return nil, fmt.Errorf("dovecot-uidlist: line %d: bad or repeated entry: %w", n, errCorruptUIDDB)
		}
		used[uint32(uid)] = true
		db.uids[k] = uint32(uid)
		if uint32(uid) >= db.next {
			db.next = uint32(uid) + 1
		}
	}
	return db, nil
}
