package maildir

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// scanResult is one look at a folder's directories.
type scanResult struct {
	names   map[string]string // key → "new/KEY" or "cur/KEY:2,INFO"
	fromNew map[string]bool   // keys found in new/
	// listedCur: cur/ was really listed, so a key absent from names is
	// gone; otherwise cur/ entries came from an earlier listing.
	listedCur bool
	// curAfter is cur/'s time right after this scan's own renames into it
	// (zero when it made none).
	curAfter time.Time
	// reusedAll: names started as a copy of the last Sync's names.
	reusedAll bool
	// curList is cur/'s listing in directory order when this scan listed
	// it (after its own moves), for the next Sync's delta (deltaSync).
	curList []string
}

// scanStage names a point in scanFolder (or deltaSync), for
// Folder.scanHook.
type scanStage int

const (
	scanCurStated scanStage = iota // cur/ stat'ed, new/ not listed yet
	scanNewListed                  // new/ listed, nothing moved yet
)

// scanFolder lists new/ and cur/. With moveNew, files in new/ are renamed
// into cur/ first (maildir(5): a reader that has seen a message moves it
// to cur/ and appends the info). new/ is read before cur/ so a message
// another process moves between the two listings is still seen. Files
// vanishing mid-scan are normal and not errors.
//
// cur/ holds nearly every message of a big folder, so it is listed only
// when its modification time differs from the last listing's (or that
// time was too recent to trust, see curTrustAge); otherwise the names the
// last Sync saw, as kept up to date by this process's own renames, are
// reused. base, when set, is an earlier scan of the same Sync: if cur/ has
// not changed since that scan's own renames, its cur/ entries are reused.
// A reused listing lacks what another process moved from new/ to cur/
// meanwhile, so cur/ is listed after all when its time changed while new/
// was listed, or when a file listed in new/ was gone by the time we would
// move it. force lists cur/ regardless.
func (f *Folder) scanFolder(moveNew, force bool, base *scanResult) (*scanResult, error) {
	curDir := filepath.Join(f.path, "cur")
	statAt := time.Now()
	curBefore, curErr := os.Stat(curDir)
	if f.scanHook != nil {
		f.scanHook(scanCurStated)
	}
	var reuse map[string]string
	if !force && curErr == nil {
		switch {
		case base != nil && !base.curAfter.IsZero() && curBefore.ModTime().Equal(base.curAfter):
			reuse = base.names
		case base == nil && f.curTrusted && f.names != nil && curBefore.ModTime().Equal(f.curMtime):
			reuse = f.names
		}
	}
	res := &scanResult{fromNew: make(map[string]bool)}
	newNames, err := readNames(filepath.Join(f.path, "new"))
	if err != nil {
		return nil, fmt.Errorf("maildir %s: scan: %w", f.path, err)
	}
	if reuse != nil {
		// A message another process moved from new/ to cur/ after the
		// stat above is in neither new/'s listing nor the reused one:
		// cur/ must still have that time now that new/ is listed.
		if st, err := os.Stat(curDir); err != nil || !st.ModTime().Equal(curBefore.ModTime()) {
			reuse = nil
		}
	}
	if f.scanHook != nil {
		f.scanHook(scanNewListed)
	}
	// new/'s entries, as they are once moved.
	type entry struct{ key, name string }
	entries := make([]entry, 0, len(newNames))
	moved := false
	for _, n := range newNames {
		key, info := splitName(n)
		res.fromNew[key] = true
		if !moveNew {
			entries = append(entries, entry{key, "new/" + n})
			continue
		}
		target := key + ":2," + info
		err := os.Rename(filepath.Join(f.path, "new", n), filepath.Join(curDir, target))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir %s: move %s to cur: %w", f.path, n, err)
		}
		if err == nil {
			entries = append(entries, entry{key, "cur/" + target})
			moved = true
		} else {
			// Someone else moved it (or removed it) since new/ was
			// listed: only a listing of cur/ taken now can tell. A
			// reused one would lose a message the folder holds.
			reuse = nil
		}
	}
	if moved {
		// Our own renames changed cur/'s time: the next Sync lists it
		// once, in case someone else changed it at the same moment.
		f.curTrusted, f.curSuspect = false, false
		if st, err := os.Stat(curDir); err == nil {
			res.curAfter = st.ModTime()
		}
	}
	if reuse != nil && base == nil && f.namesInNew == 0 {
		// Every reused entry is in cur/: copy the map whole (a block copy,
		// several times cheaper than re-inserting 100,000 keys); new/'s
		// entries then replace any stale cur/ entry, as the cur/-only
		// copy below lets them.
		res.names = maps.Clone(reuse)
		res.reusedAll = true
	} else {
		res.names = make(map[string]string, len(f.names)+8)
	}
	names := res.names
	for _, e := range entries {
		names[e.key] = e.name
	}
	if res.reusedAll {
		return res, nil
	}
	if reuse != nil {
		for k, n := range reuse {
			if strings.HasPrefix(n, "cur/") {
				if _, ok := names[k]; !ok {
					names[k] = n
				}
			}
		}
		if !moved && base != nil {
			res.curAfter = base.curAfter
		}
		return res, nil
	}
	hint := 0
	if curErr == nil {
		hint = int(min(curBefore.Size()/64, 1<<22))
	}
	if len(names) < hint/2 {
		// A first listing of a big cur/ (its directory file is about 64
		// bytes a name on ext4): size the map once rather than grow it.
		sized := make(map[string]string, hint+len(names))
		maps.Copy(sized, names)
		names, res.names = sized, sized
	}
	// The names go into the map while the kernel reads the next batch.
	var curNames []string
	batches := make(chan [2][]string, 16)
	mapped := make(chan struct{})
	go func() {
		defer close(mapped)
		for b := range batches {
			for i, n := range b[0] {
				key, _ := splitName(n)
				names[key] = b[1][i] // cur wins over a stale new/ listing
			}
		}
	}()
	err = listDirFunc(curDir, "cur/", func(n, p []string) {
		curNames = append(curNames, n...)
		batches <- [2][]string{n, p}
	})
	close(batches)
	<-mapped
	if err != nil {
		return nil, fmt.Errorf("maildir %s: scan: %w", f.path, err)
	}
	res.listedCur = true
	res.curList = curNames
	// The listing is exact as of the stat taken before it, provided no later
	// change can carry the same timestamp: file systems with coarse times
	// (1 s on ext3, NFS) could, so a time less than curTrustAge old is not
	// trusted and the next Sync lists cur/ again.
	f.curTrusted, f.curSuspect = false, false
	if curErr == nil && !moved && time.Since(curBefore.ModTime()) > trustAge(curBefore.ModTime()) {
		f.trustListing(curBefore, statAt)
	}
	return res, nil
}

// curTrustAge is how old cur/'s modification time must be before a listing
// of it may be reused on the strength of an unchanged time, on a file
// system whose times may be whole seconds (ext3, FAT's two seconds, some
// NFS servers).
const curTrustAge = 2 * time.Second

// fineTrustAge replaces curTrustAge when the time carries a sub-second
// part, which a file system with whole-second (or coarser) times never
// produces: ext4, XFS, Btrfs and tmpfs stamp directories from the kernel's
// coarse clock, which advances every jiffy (1-10 ms), so a change made
// 100 ms after a listing always carries a later time. Without this a
// 100,000-message folder was listed again (tens of milliseconds) at every
// SELECT for 2 s after any flag change.
const fineTrustAge = 100 * time.Millisecond

// trustAge is the age a cur/ time with this value must reach before a
// listing taken under it is trusted.
func trustAge(mtime time.Time) time.Duration {
	if mtime.Nanosecond() != 0 {
		return fineTrustAge
	}
	return curTrustAge
}

// readNames lists a directory's message names, skipping dot files and
// names no UID line could hold.
func readNames(dir string) ([]string, error) {
	names, _, err := listDir(dir, "")
	return names, err
}

// listDir lists a directory's message names as readNames does, in
// directory order, and the same names with prefix before each. Both are
// slices of a few strings (one per getdents(2) call): listing cur/ of
// 100,000 messages makes no string per name nor another per "cur/" name.
func listDir(dir, prefix string) (names, prefixed []string, err error) {
	err = listDirFunc(dir, prefix, func(n, p []string) {
		names = append(names, n...)
		if prefix != "" {
			prefixed = append(prefixed, p...)
		}
	})
	if prefix == "" {
		prefixed = names
	}
	return names, prefixed, err
}

// direntBuffers hold getdents(2) results for listDirFunc.
var direntBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// listDirFunc lists a directory as listDir does, handing fn each batch of
// names one getdents(2) call read, in order, so that a caller can work on
// one batch while the kernel reads the next.
func listDirFunc(dir, prefix string, fn func(names, prefixed []string)) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	// From a pool, not the stack: a 64 KiB local would grow every IMAP
	// session's goroutine stack to 128 KiB for good (10,000 idle sessions
	// took 531 MiB instead of about 300).
	bp := direntBuffers.Get().(*[]byte)
	defer direntBuffers.Put(bp)
	buf := *bp
	var arena []byte
	var ends []int
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n <= 0 {
			return nil
		}
		arena, ends = arena[:0], ends[:0]
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				return &fs.PathError{Op: "getdents", Path: dir, Err: unix.EIO}
			}
			ino := binary.NativeEndian.Uint64(buf[off:])
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if ino == 0 || len(name) == 0 || name[0] == '.' || bytes.IndexByte(name, '\n') >= 0 || bytes.IndexByte(name, '\r') >= 0 {
				continue
			}
			arena = append(arena, prefix...)
			arena = append(arena, name...)
			ends = append(ends, len(arena))
		}
		if len(ends) == 0 {
			continue
		}
		all := string(arena)
		names := make([]string, len(ends))
		prefixed := names
		if prefix != "" {
			prefixed = make([]string, len(ends))
		}
		start := 0
		for i, end := range ends {
			prefixed[i] = all[start:end]
			names[i] = all[start+len(prefix) : end]
			start = end
		}
		fn(names, prefixed)
	}
}

// Sync scans the folder, optionally moving new/ to cur/ (IMAP and POP3
// sessions do), gives UIDs to keys not seen before and returns the state.
// UID assignment happens under an exclusive flock on the folder's
// courierimapuiddb.lock and re-reads the database inside the lock, so
// several processes may Sync and deliver at once: UIDs stay unique and
// strictly increasing and survive restarts. When nothing changed the
// database is neither locked nor rewritten.
func (f *Folder) Sync(moveNew bool) (snap *Snapshot, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.numbered = nil
	f.syncCourierKeywords()

	if snap, err := f.unchangedSnapshot(); err != nil || snap != nil {
		return snap, err
	}
	if snap, err := f.deltaSync(moveNew); err != nil || snap != nil {
		return snap, err
	}
	f.curList = nil // set again below only from a listing that matches names
	// Whether a UID database exists before the listing: when none does
	// even under the lock, nobody numbered a message since, so the listing
	// is as good as one taken under the lock (a first open lists a big
	// cur/ once, not twice).
	_, dbErr := os.Lstat(filepath.Join(f.path, uidDBName))
	noDBBefore := errors.Is(dbErr, fs.ErrNotExist)
	// The first listing can only vouch for the absence of messages
	// numbered before it is taken (see earlierListing): note how far
	// numbering has got. A first Sync reads the database for that.
	if f.uidCache == nil && !noDBBefore {
		if _, err := f.uidDBForSync(); err != nil {
			return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
	}
	numbered := f.numberedSoFar()
	first, err := f.scanFolder(moveNew, false, nil)
	if err != nil {
		return nil, err
	}
	names, fromNew := first.names, first.fromNew
	// listing is cur/'s listing when names is exactly that listing (plus
	// new/), kept for the next Sync's delta.
	listing := first.curList
	db, err := f.uidDBForSync()
	if err != nil {
		return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
	}
	if !first.listedCur && len(first.names) == len(f.names) && len(fromNew) == 0 && db != nil && db == f.lastDB && db.gen == f.lastGen && f.lastSnap != nil {
		// Nothing moved: cur/ is as last listed, new/ is empty and the UID
		// database is the one last read. The previous snapshot still holds
		// (a big folder's SELECT or NOOP then costs two stats and a listing
		// of an empty new/).
		return f.lastSnap, nil
	}
	needLock := db == nil || f.needsKeywordImport()
	if !needLock {
		for k := range names {
			if db.uids[k] == 0 {
				needLock = true
				break
			}
		}
	}
	if !needLock && len(db.uids) != len(names) {
		// Keys in the database that the listing lacks were expunged, or
		// readdir missed a file being renamed; a second, real listing tells.
		again, err := f.scanFolder(moveNew, true, nil)
		if err != nil {
			return nil, err
		}
		// db was read before this listing: it can vouch for every
		// message db numbered.
		numbered = uidMark{db.validity, db.next}
		for k, n := range again.names {
			names[k] = n
		}
		listing = nil // names is the union of two listings
		for k := range again.fromNew {
			fromNew[k] = true
		}
		for k := range db.uids {
			if _, ok := names[k]; !ok {
				needLock = true // really gone: drop its line
				break
			}
		}
		if !needLock {
			for k := range names {
				if db.uids[k] == 0 {
					needLock = true
					break
				}
			}
		}
		first.listedCur = true
	}
	if needLock {
		unlock, err := lockFile(filepath.Join(f.path, uidLockName))
		if err != nil {
			return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		defer unlock()
		fresh := first
		var earlier *earlierListing
		if _, err := os.Lstat(filepath.Join(f.path, uidDBName)); !noDBBefore || !first.listedCur || !errors.Is(err, fs.ErrNotExist) {
			if fresh, err = f.scanFolder(moveNew, false, first); err != nil {
				return nil, err
			}
			earlier = &earlierListing{names: names, numbered: numbered}
			if !fresh.listedCur {
				// cur/'s entries are the first listing's: should a
				// message seem gone, cur/ is listed again for a second
				// look.
				earlier.relist = func() (map[string]string, error) {
					for k := range fresh.fromNew {
						fromNew[k] = true
					}
					again, err := f.scanFolder(moveNew, true, nil)
					if err != nil {
						return nil, err
					}
					fresh = again
					return again.names, nil
				}
			}
		}
		// else: no database to drop anything from, and the first listing
		// stands (what arrived since is numbered by the next Sync).
		if err := f.importCourierKeywords(fresh.names); err != nil {
			f.md.log.Warn("maildir: courier keyword import failed", "folder", f.path, "err", err)
		}
		db, err = f.assignUIDs(fresh.names, earlier)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		for k := range fresh.fromNew {
			fromNew[k] = true
		}
		// A new database may still be being written: it must be on disk
		// before the snapshot (its UIDs) leaves Sync, and the lock held.
		defer func() {
			if werr := f.finishDBWrite(); werr != nil && err == nil {
				snap, err = nil, fmt.Errorf("maildir %s: sync: %w", f.path, werr)
				f.lastSnap, f.lastDB = nil, nil
			}
		}()
		names = fresh.names
		listing = fresh.curList
	}
	snap, err = f.snapshot(db, names, fromNew)
	if err == nil {
		f.lastSnap, f.lastDB, f.lastGen = snap, db, db.gen
		f.curList, f.newKeys = nil, nil
		if listing != nil && (f.namesInNew == 0 || !moveNew && len(fromNew) == f.namesInNew) {
			f.curList = listing
			for k := range fromNew {
				if strings.HasPrefix(names[k], "new/") {
					f.newKeys = append(f.newKeys, k)
				}
			}
			if len(f.newKeys) != f.namesInNew {
				f.curList, f.newKeys = nil, nil
			}
		}
	}
	return snap, err
}

// unchangedSnapshot returns the last snapshot when the folder cannot have
// changed since: cur/ carries the trusted time of its last listing, new/
// is empty, the last snapshot had nothing in new/ and the UID database is
// the one it was built from. It is the same test as Sync's own shortcut
// after a scan, made before the scan so that a warm SELECT or NOOP on a
// big folder does not copy the folder's name map (10 ms at 100,000
// messages). nil when a scan is needed. Caller holds f.mu.
func (f *Folder) unchangedSnapshot() (*Snapshot, error) {
	if f.lastSnap == nil || f.lastDB == nil && f.resumeDB == nil || !f.curTrusted && !f.curSuspect || f.names == nil || f.namesInNew != 0 {
		return nil, nil
	}
	st, err := os.Stat(filepath.Join(f.path, "cur"))
	if err != nil || !st.ModTime().Equal(f.curMtime) {
		return nil, nil // the scan reports a real error
	}
	newNames, err := readNames(filepath.Join(f.path, "new"))
	if err != nil || len(newNames) != 0 {
		return nil, nil
	}
	if f.resumedDBUnchanged() {
		return f.lastSnap, nil // resumed from a checkpoint; the database is not read
	}
	db, err := f.uidDBForSync()
	if err != nil {
		return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
	}
	if db == nil || db != f.lastDB || db.gen != f.lastGen {
		return nil, nil
	}
	return f.lastSnap, nil
}

// needsKeywordImport is true while a Courier keyword store waits to be
// converted. Caller holds f.mu.
func (f *Folder) needsKeywordImport() bool {
	if _, err := os.Stat(filepath.Join(f.path, keywordsName)); err == nil {
		return false
	}
	_, err := os.Stat(filepath.Join(f.path, courierKwDir, ":list"))
	return err == nil
}

// snapshot builds the Snapshot from a listing and the UID database.
// Caller holds f.mu.
func (f *Folder) snapshot(db *uidDB, names map[string]string, fromNew map[string]bool) (*Snapshot, error) {
	km, err := f.cachedKeywords()
	if err != nil {
		return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
	}
	if f.meta == nil {
		f.meta = make(map[string]fileMeta)
	}
	snap, err := f.patchSnapshot(db, names, fromNew, km)
	if err == nil && snap == nil {
		snap, err = f.fullSnapshot(db, names, fromNew, km)
	}
	f.numbered = nil // only for the snapshot right after its numbering
	if err == nil {
		f.lastKwStat = f.kwStat
	}
	return snap, err
}

// fullSnapshot builds the snapshot from every name. A message's internal
// date and size come from the last snapshot when it held the same UID and
// key, else from what Remember was told. Otherwise a file whose name
// carries its size (",S=") is not stat'ed: its InternalDate is left zero
// until asked for (Folder.InternalDate), as a first open of 100,000
// messages would stat every file for dates SELECT does not need. The
// other files are stat'ed in parallel, relative to the directory. Caller
// holds f.mu.
func (f *Folder) fullSnapshot(db *uidDB, names map[string]string, fromNew map[string]bool, km *keywordMap) (*Snapshot, error) {
	var order []numberedKey
	inNew := 0
	if numbered := f.numbered; len(numbered) == len(names) && len(names) > 0 {
		// Every name was just numbered, in this order (a first open).
		order = numbered
		for i := range order {
			if strings.HasPrefix(order[i].name, "new/") {
				inNew++
			}
		}
	}
	if order == nil {
		// Sort small (UID, key) pairs rather than the Messages themselves.
		order = make([]numberedKey, 0, len(names))
		for key, name := range names {
			if strings.HasPrefix(name, "new/") {
				inNew++
			}
			if uid := db.uids[key]; uid != 0 {
				order = append(order, numberedKey{uid, key, name})
			} // else: appeared after the locked listing; the next Sync numbers it
		}
		slices.SortFunc(order, func(a, b numberedKey) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	}
	f.numbered = nil
	msgs := make([]Message, len(order), withRoom(len(order)))
	var last []Message
	if f.lastSnap != nil && f.lastSnap.UIDValidity == db.validity {
		last = f.lastSnap.Messages
	}
	// Each message is described from its name alone (and the last
	// snapshot, Remember's dates): pure work, split between the cores for
	// a big folder.
	describeRange := func(lo, hi int) (unknown []int) {
		j, _ := slices.BinarySearchFunc(last, order[lo].uid, func(m Message, uid uint32) int { return int64cmp(int64(m.UID), int64(uid)) })
		for i := lo; i < hi; i++ {
			o := order[i]
			m := &msgs[i]
			m.UID, m.Key = o.uid, o.key
			setName(m, o.name, km)
			m.VirtualSize = max(sizeField(o.key, 'W'), 0)
			for j < len(last) && last[j].UID < o.uid {
				j++
			}
			if j < len(last) && last[j].UID == o.uid && last[j].Key == o.key {
				m.InternalDate, m.Size = last[j].InternalDate, last[j].Size
				continue
			}
			if meta, ok := f.meta[o.key]; ok {
				m.InternalDate, m.Size = meta.mtime, meta.size
				if s := sizeField(o.key, 'S'); s >= 0 {
					m.Size = s
				}
				continue
			}
			if s := sizeField(o.key, 'S'); s >= 0 {
				m.Size = s // the date waits until asked for
				continue
			}
			unknown = append(unknown, i)
		}
		return unknown
	}
	var unknown []int // indexes into msgs whose date and size are to be stat'ed
	if n := len(order); n > 8192 && runtime.GOMAXPROCS(0) > 1 {
		var second []int
		done := make(chan struct{})
		go func() {
			second = describeRange(n/2, n)
			close(done)
		}()
		unknown = describeRange(0, n/2)
		<-done
		unknown = append(unknown, second...)
	} else if n > 0 {
		unknown = describeRange(0, n)
	}
	if len(unknown) > 0 {
		if err := f.statMessages(msgs, unknown, names, km); err != nil {
			return nil, err
		}
	}
	// Messages whose file vanished since the listing (Size -1) are left out.
	msgs = slices.DeleteFunc(msgs, func(m Message) bool { return m.Size < 0 })
	snap := &Snapshot{UIDValidity: db.validity, UIDNext: db.next, Messages: msgs, NewUIDs: newUIDsIn(msgs, fromNew, db)}
	f.arena = msgs
	for key := range f.meta {
		if _, ok := names[key]; !ok {
			delete(f.meta, key)
		}
	}
	f.names, f.namesInNew = names, inNew
	return snap, nil
}

// statMessages sets the internal date (the file's modification time) and
// size (",S=" in the key, else the file's) of msgs[i] for each i in todo,
// stat'ing the files in parallel relative to new/ and cur/. A file renamed
// since the listing is looked up again; one gone is marked with Size -1
// and its name dropped from names. Caller holds f.mu.
func (f *Folder) statMessages(msgs []Message, todo []int, names map[string]string, km *keywordMap) error {
	var dirs [2]int // new/, cur/
	for i, sub := range []string{"new", "cur"} {
		fd, err := unix.Open(filepath.Join(f.path, sub), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, d := range dirs[:i] {
				unix.Close(d)
			}
			return fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		dirs[i] = fd
	}
	defer unix.Close(dirs[0])
	defer unix.Close(dirs[1])
	var missing []int // gone since the listing (or another error): done one by one below
	var mu sync.Mutex
	statRange := func(part []int) {
		var st unix.Stat_t
		var lost []int
		for _, i := range part {
			m := &msgs[i]
			dir, base := dirs[1], m.Name[4:]
			if strings.HasPrefix(m.Name, "new/") {
				dir = dirs[0]
			}
			if err := unix.Fstatat(dir, base, &st, 0); err != nil {
				lost = append(lost, i)
				continue
			}
			sec, nsec := st.Mtim.Unix()
			setStat(m, sec, nsec, st.Size)
		}
		if lost != nil {
			mu.Lock()
			missing = append(missing, lost...)
			mu.Unlock()
		}
	}
	workers := min(runtime.GOMAXPROCS(0), 4, max(len(todo)/1024, 1))
	var wg sync.WaitGroup
	per := (len(todo) + workers - 1) / workers
	for w := 1; w < workers; w++ {
		part := todo[min(w*per, len(todo)):min((w+1)*per, len(todo))]
		wg.Go(func() { statRange(part) })
	}
	statRange(todo[:min(per, len(todo))])
	wg.Wait()
	for _, i := range missing {
		m := &msgs[i]
		st, err := os.Stat(filepath.Join(f.path, m.Name))
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			// Renamed (flags) or expunged since the listing: look again.
			if n, lerr := f.locateLocked(m.Key); lerr == nil {
				names[m.Key] = n
				setName(m, n, km)
				st, err = os.Stat(filepath.Join(f.path, n))
			}
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				m.Size = -1
				delete(names, m.Key)
				continue
			}
			return fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		setStat(m, st.ModTime().Unix(), int64(st.ModTime().Nanosecond()), st.Size())
	}
	return nil
}

// setStat gives m the internal date of its file's modification time and
// its size: ",S=" from the key when present, else the file's.
func setStat(m *Message, sec, nsec int64, size int64) {
	m.InternalDate = time.Unix(sec, nsec)
	m.Size = size
	if s := sizeField(m.Key, 'S'); s >= 0 {
		m.Size = s
	}
}

type numberedKey struct {
	uid  uint32
	key  string
	name string // set by fullSnapshot only
}

// patchSnapshot builds the snapshot from the last one when that is
// cheaper than from scratch: same UIDVALIDITY and keyword letters, every
// message of the last snapshot still numbered alike, and every other
// numbered name new since (a UID at or above the last UIDNEXT). Messages
// whose file name did not change are copied as they were, without the
// sort, map look-ups and info parsing a full build does per message; on
// a 100,000-message folder after one delivery that halves the SELECT.
// nil when the conditions do not hold. Caller holds f.mu.
func (f *Folder) patchSnapshot(db *uidDB, names map[string]string, fromNew map[string]bool, km *keywordMap) (*Snapshot, error) {
	last := f.lastSnap
	if last == nil || last.UIDValidity != db.validity || f.kwStat != f.lastKwStat || db.next < last.UIDNext {
		return nil, nil
	}
	var fresh []numberedKey
	numbered, inNew := 0, 0
	for key, name := range names {
		if strings.HasPrefix(name, "new/") {
			inNew++
		}
		uid := db.uids[key]
		if uid == 0 {
			continue // appeared after the locked listing; the next Sync numbers it
		}
		numbered++
		if uid >= last.UIDNext {
			fresh = append(fresh, numberedKey{uid: uid, key: key})
		}
	}
	msgs := make([]Message, 0, withRoom(numbered))
	var gone []string
	// A database changed in place only gains and loses keys; a key it
	// numbered keeps its UID.
	sameDB := db == f.lastDB
	for i := range last.Messages {
		m := &last.Messages[i]
		name, ok := names[m.Key]
		if !ok {
			gone = append(gone, m.Key)
			continue
		}
		if !sameDB && db.uids[m.Key] != m.UID {
			return nil, nil // renumbered: start over
		}
		nm := *m
		if name != m.Name {
			setName(&nm, name, km)
		}
		msgs = append(msgs, nm)
	}
	if len(msgs)+len(fresh) != numbered {
		return nil, nil // a name with an old UID the last snapshot lacked
	}
	slices.SortFunc(fresh, func(a, b numberedKey) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	for _, o := range fresh {
		m, ok, err := f.newMessage(o.uid, o.key, names, fromNew, km)
		if err != nil {
			return nil, err
		}
		if ok {
			msgs = append(msgs, m)
		}
	}
	for _, key := range gone {
		delete(f.meta, key)
	}
	f.names, f.namesInNew = names, inNew
	f.arena = msgs
	return &Snapshot{UIDValidity: db.validity, UIDNext: db.next, Messages: msgs, NewUIDs: newUIDsIn(msgs, fromNew, db)}, nil
}

// newMessage describes one numbered name, stat'ing the file unless its
// date and size are known. ok is false when the file is gone. Caller
// holds f.mu.
func (f *Folder) newMessage(uid uint32, key string, names map[string]string, fromNew map[string]bool, km *keywordMap) (Message, bool, error) {
	name := names[key]
	meta, ok := f.meta[key]
	if !ok {
		st, err := os.Stat(filepath.Join(f.path, name))
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			// Renamed (flags) or expunged since the listing: look again.
			if n, lerr := f.locateLocked(key); lerr == nil {
				name = n
				names[key] = n
				st, err = os.Stat(filepath.Join(f.path, name))
			}
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return Message{}, false, nil
			}
			return Message{}, false, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		meta = fileMeta{mtime: st.ModTime(), size: st.Size()}
		f.meta[key] = meta
	}
	var info string
	if strings.HasPrefix(name, "cur/") {
		_, info = splitName(name[4:])
	}
	flags, kwIdx := parseInfo(info)
	size := sizeField(key, 'S')
	if size < 0 {
		size = meta.size
	}
	return Message{
		UID:          uid,
		Key:          key,
		Name:         name,
		Flags:        flags,
		Keywords:     keywordNames(km, kwIdx),
		Size:         size,
		VirtualSize:  max(sizeField(key, 'W'), 0),
		InternalDate: meta.mtime,
	}, true, nil
}

// locateLocked finds a key's current file name by listing cur/ then new/.
// Caller holds f.mu.
func (f *Folder) locateLocked(key string) (string, error) {
	for _, sub := range []string{"cur", "new"} {
		all, err := readNames(filepath.Join(f.path, sub))
		if err != nil {
			return "", fmt.Errorf("maildir %s: %w", f.path, err)
		}
		for _, n := range all {
			if k, _ := splitName(n); k == key {
				return sub + "/" + n, nil
			}
		}
	}
	return "", fmt.Errorf("maildir %s: %s: %w", f.path, key, ErrNoMessage)
}

// withFile runs op on the key's current file name, looking the name up
// again when another process renamed the file meanwhile (a flag change is
// a rename). ErrNoMessage when the key is gone.
func (f *Folder) withFile(key string, op func(name string) error) error {
	if key == "" || strings.ContainsAny(key, "/:\x00") {
		return fmt.Errorf("maildir %s: key %q: %w", f.path, key, ErrNoMessage)
	}
	f.mu.Lock()
	name, known := f.names[key]
	f.mu.Unlock()
	for attempt := 0; attempt < 5; attempt++ {
		if !known {
			f.mu.Lock()
			n, err := f.locateLocked(key)
			f.mu.Unlock()
			if err != nil {
				return err
			}
			name = n
		}
		err := op(name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				f.mu.Lock()
				if f.names != nil {
					if _, still := f.names[key]; still || !known {
						f.names[key] = name
					}
				}
				f.mu.Unlock()
			}
			return err
		}
		known = false
	}
	return fmt.Errorf("maildir %s: %s keeps moving: %w", f.path, key, ErrNoMessage)
}

// Open opens a message for reading, finding it even if another process
// renamed it since the last Sync. ErrNoMessage if it is gone.
func (f *Folder) Open(key string) (*os.File, error) {
	var file *os.File
	err := f.withFile(key, func(name string) error {
		fd, err := f.openMessageFile(name)
		if err != nil {
			return err
		}
		file = os.NewFile(uintptr(fd), filepath.Join(f.path, name))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return file, nil
}

// ReadMessage appends the content of the message key, at most limit
// bytes, to buf and returns it, for a caller that reads many messages in
// a row (a search index): no *os.File, no poller registration, no stat,
// just open, read until the end and close. A message renamed meanwhile
// is looked up again, as by Open.
func (f *Folder) ReadMessage(key string, buf []byte, limit int) ([]byte, error) {
	err := f.withFile(key, func(name string) error {
		fd, err := f.openMessageFile(name)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		start := len(buf)
		for len(buf)-start < limit {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, min(max(cap(buf), 4096), limit-(len(buf)-start)))
			}
			n, err := unix.Read(fd, buf[len(buf):min(cap(buf), start+limit)])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("maildir %s: read %s: %w", f.path, name, err)
			}
			if n == 0 {
				break
			}
			buf = buf[:len(buf)+n]
		}
		return nil
	})
	return buf, err
}

// SetFlags replaces a message's flags and keywords (nil clears them) by
// renaming it to cur/KEY:2,INFO with the letters sorted; a message still
// in new/ moves to cur/. Unknown keywords are added to dovecot-keywords.
// Setting or clearing T adjusts the quota, because Courier's quota
// recalculation does not count messages marked deleted.
func (f *Folder) SetFlags(key, flags string, keywords []string) error {
	flags, err := normalizeFlags(flags)
	if err != nil {
		return fmt.Errorf("maildir %s: set flags: %w", f.path, err)
	}
	letters, err := f.keywordLetters(keywords)
	if err != nil {
		return fmt.Errorf("maildir %s: set flags: %w", f.path, err)
	}
	newName := "cur/" + key + ":2," + flags + letters
	var oldTrashed bool
	err = f.withFile(key, func(name string) error {
		var oldInfo string
		if strings.HasPrefix(name, "cur/") {
			_, oldInfo = splitName(name[4:])
		}
		oldFlags, oldIdx := parseInfo(oldInfo)
		oldLetters := ""
		for _, i := range oldIdx {
			oldLetters += string(rune('a' + i))
		}
		oldTrashed = strings.IndexByte(oldFlags, FlagTrashed) >= 0
		if name == newName {
			return nil
		}
		if oldLetters != letters {
			// Courier's copy first: a Sync elsewhere that sees the new
			// set there before the rename applies the same set, while one
			// that saw the new letters before an old set there would put
			// the old set back.
			f.mirrorCourierKeywords(key, keywords)
		}
		return os.Rename(filepath.Join(f.path, name), filepath.Join(f.path, newName))
	})
	if err != nil {
		if errors.Is(err, ErrNoMessage) {
			return err
		}
		return fmt.Errorf("maildir %s: set flags: %w", f.path, err)
	}
	f.mu.Lock()
	if f.names != nil {
		f.names[key] = newName
	}
	f.mu.Unlock()
	newTrashed := strings.IndexByte(flags, FlagTrashed) >= 0
	if oldTrashed != newTrashed && f.name != trashFolder {
		size, _ := f.messageSize(key, newName)
		if newTrashed {
			f.md.addQuotaUsage(-size, -1)
		} else {
			f.md.addQuotaUsage(size, 1)
		}
	}
	return nil
}

// messageSize is the ",S=" size, else the file's size.
func (f *Folder) messageSize(key, name string) (int64, error) {
	if s := sizeField(key, 'S'); s >= 0 {
		return s, nil
	}
	st, err := os.Stat(filepath.Join(f.path, name))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Remove deletes a message (IMAP EXPUNGE, POP3 DELE at QUIT) and appends
// a negative line to maildirsize. ErrNoMessage if it is already gone.
func (f *Folder) Remove(key string) error {
	var size int64
	var trashed, inNew bool
	err := f.withFile(key, func(name string) error {
		s, err := f.messageSize(key, name)
		if err != nil {
			return err
		}
		size = s
		inNew = strings.HasPrefix(name, "new/")
		if strings.HasPrefix(name, "cur/") {
			_, info := splitName(name[4:])
			fl, _ := parseInfo(info)
			trashed = strings.IndexByte(fl, FlagTrashed) >= 0
		}
		return os.Remove(filepath.Join(f.path, name))
	})
	if err != nil {
		if errors.Is(err, ErrNoMessage) {
			return err
		}
		return fmt.Errorf("maildir %s: remove: %w", f.path, err)
	}
	f.mu.Lock()
	delete(f.names, key)
	delete(f.meta, key)
	if inNew {
		// The last snapshot has the message, and nothing else says it is
		// gone: unlinking in new/ leaves cur/'s time alone, so a Sync that
		// reuses cur/'s listing and finds new/ empty would return that
		// snapshot again (a STATUS after RENAME INBOX counted the moved
		// messages). The next Sync builds a new one.
		f.lastSnap, f.lastDB = nil, nil
	}
	f.mu.Unlock()
	if !trashed && f.name != trashFolder {
		f.md.addQuotaUsage(-size, -1)
	}
	return nil
}

// CopyTo copies a message into dst with its flags, keywords and internal
// date (IMAP COPY). A hard link is used when possible (messages never
// change, so sharing the inode is safe), else the bytes are copied. The
// destination's quota is checked. Returns the new key.
func (f *Folder) CopyTo(dst *Folder, key string) (string, error) {
	var srcName string
	var size int64
	var mtime time.Time
	err := f.withFile(key, func(name string) error {
		st, err := os.Stat(filepath.Join(f.path, name))
		if err != nil {
			return err
		}
		srcName, mtime = name, st.ModTime()
		size = sizeField(key, 'S')
		if size < 0 {
			size = st.Size()
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	var info string
	if strings.HasPrefix(srcName, "cur/") {
		_, info = splitName(srcName[4:])
	}
	flags, kwIdx := parseInfo(info)
	f.mu.Lock()
	km, err := f.cachedKeywords()
	f.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("maildir %s: copy: %w", f.path, err)
	}
	keywords := keywordNames(km, kwIdx)
	letters, err := dst.keywordLetters(keywords)
	if err != nil {
		return "", fmt.Errorf("maildir %s: copy: %w", dst.path, err)
	}
	trashed := strings.IndexByte(flags, FlagTrashed) >= 0
	counts := !trashed && dst.name != trashFolder
	if counts {
		if err := dst.md.checkQuota(size, 1); err != nil {
			return "", fmt.Errorf("maildir %s: copy: %w", dst.path, err)
		}
	}
	newKey := dst.md.uniqueBase() + fmt.Sprintf(",S=%d", size)
	if w := sizeField(key, 'W'); w >= 0 {
		newKey += fmt.Sprintf(",W=%d", w)
	}
	dest := filepath.Join(dst.path, "new", newKey)
	if flags+letters != "" {
		dest = filepath.Join(dst.path, "cur", newKey+":2,"+flags+letters)
	}
	linkErr := f.withFile(key, func(name string) error {
		if f.md.sharedFrom != "" {
			// A private view holds links: a hard link to one would put
			// a link to the sharable folder into dst. Copy the bytes.
			return errors.ErrUnsupported
		}
		return os.Link(filepath.Join(f.path, name), dest)
	})
	if linkErr != nil {
		if errors.Is(linkErr, ErrNoMessage) {
			return "", linkErr
		}
		// No hard links here (other filesystem, EPERM): copy the bytes.
		src, err := f.Open(key)
		if err != nil {
			return "", err
		}
		defer src.Close()
		k, err := dst.Deliver(src, DeliverOptions{Flags: flags, Keywords: keywords, InternalDate: mtime, IgnoreQuota: true})
		if err != nil {
			return "", err
		}
		return k, nil // Deliver added the usage line
	}
	if err := syncDir(filepath.Dir(dest)); err != nil {
		return "", fmt.Errorf("maildir %s: copy: %w", dst.path, err)
	}
	if counts {
		dst.md.addQuotaUsage(size, 1)
	}
	if len(keywords) > 0 {
		dst.mirrorCourierKeywords(newKey, keywords)
	}
	return newKey, nil
}

// Remember tells the folder what a caller's own index knows about a message
// (its internal date and its size on disk), so that Sync need not stat the
// file: a folder index loaded at startup turns the first Sync of a big
// folder into directory listings only. Wrong values are the caller's; keys
// that are not in the folder are forgotten at the next Sync.
func (f *Folder) Remember(key string, internalDate time.Time, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.meta == nil {
		f.meta = make(map[string]fileMeta)
	}
	if _, ok := f.meta[key]; !ok {
		f.meta[key] = fileMeta{mtime: internalDate, size: size}
	}
}

// maxDeltaChanges bounds the names deltaSync compares one by one; beyond
// it (or when cur/'s order is not stable) the full scan is as cheap.
const maxDeltaChanges = 4096

// deltaSync brings the last snapshot up to date from a listing of cur/
// compared, in directory order, with the previous listing: unchanged names
// are matched by a sequential walk instead of hashed into new maps, and
// only the names that changed (a delivery moved from new/, another
// process's flag changes) are looked at. On a 100,000-message folder after
// one delivery this replaces rebuilding and re-hashing every name. It
// returns nil (and touches nothing on disk) when it cannot decide alone:
// no previous listing, a UID database or keyword file that changed under
// it, files left in new/ (EXAMINE, POP3), Courier keywords to import, too
// many changes, or a name gone from cur/ (an expunge by another program,
// which Sync proves with two listings). Caller holds f.mu.
func (f *Folder) deltaSync(moveNew bool) (*Snapshot, error) {
	last := f.lastSnap
	if last == nil || f.names == nil || len(f.newKeys) != f.namesInNew || f.needsKeywordImport() {
		return nil, nil
	}
	// A folder resumed from a checkpoint has no listing of cur/ to compare
	// with (curList is nil); it is patched here only while cur/ keeps its
	// trusted time.
	listKnown := f.curList != nil
	if !listKnown && !f.curTrusted && !f.curSuspect {
		return nil, nil
	}
	db, err := f.uidDBForSync()
	if err != nil || db == nil || db != f.lastDB || db.gen != f.lastGen {
		return nil, nil
	}
	km, err := f.cachedKeywords()
	if err != nil || f.kwStat != f.lastKwStat {
		return nil, nil
	}
	newDir, curDir := filepath.Join(f.path, "new"), filepath.Join(f.path, "cur")
	newNames, err := readNames(newDir)
	if err != nil || len(newNames) > maxDeltaChanges {
		return nil, nil
	}
	statAt := time.Now()
	curBefore, err := os.Stat(curDir)
	if err != nil {
		return nil, nil
	}
	var curNames, ins, del []string
	if (f.curTrusted || f.curSuspect) && curBefore.ModTime().Equal(f.curMtime) {
		// cur/ has not changed since it was listed, apart from our own
		// moves into it: what new/ holds (and the moves to come) are the
		// only changes, and cur/ is not listed again (Dovecot trusts its
		// own renames too). What another program might change in the
		// instant of our moves is found by the verification that
		// follows them (verifyCur).
		curNames = f.curList
		if moveNew && len(newNames) > 0 {
			f.ownMoveSyncs++
		}
	} else {
		if !listKnown {
			return nil, nil
		}
		if curNames, err = readNames(curDir); err != nil {
			return nil, nil
		}
		var ok bool
		if ins, del, ok = diffListing(f.curList, curNames, maxDeltaChanges); !ok {
			return nil, nil
		}
	}
	// Per key: its name now ("cur/..." from the inserted names, "new/..."
	// for what new/ holds), and whether a name of it disappeared. A key
	// that lost its name and has no new one left the folder: Sync's full
	// scan proves that with a second listing.
	changed := make(map[string]string, len(ins)+len(newNames))
	for _, n := range ins {
		k, _ := splitName(n)
		changed[k] = "cur/" + n
	}
	fromNew := make(map[string]bool, len(newNames))
	for _, n := range newNames {
		k, _ := splitName(n)
		fromNew[k] = true
		if _, inCur := changed[k]; !inCur {
			changed[k] = "new/" + n
		}
	}
	for _, n := range del {
		k, _ := splitName(n)
		if _, ok := changed[k]; !ok {
			return nil, nil
		}
	}
	for _, k := range f.newKeys {
		if _, ok := changed[k]; !ok {
			return nil, nil // gone from new/ and not in cur/: removed
		}
	}
	if f.scanHook != nil {
		f.scanHook(scanNewListed)
	}
	// From here on the folder changes: move new/ into cur/.
	moved, lost := false, false
	var stillNew []string
	for _, n := range newNames {
		key, info := splitName(n)
		if changed[key] != "new/"+n {
			continue // in cur/ too (another process is moving it): cur/ wins
		}
		if !moveNew {
			stillNew = append(stillNew, key)
			continue
		}
		target := key + ":2," + info
		err := os.Rename(filepath.Join(newDir, n), filepath.Join(curDir, target))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir %s: move %s to cur: %w", f.path, n, err)
		}
		if err == nil {
			changed[key] = "cur/" + target
			if listKnown {
				curNames = append(curNames, target) // its place in the order is learnt next time
			}
			moved = true
		} else {
			delete(changed, key) // moved by someone else; the next Sync finds it in cur/
			lost = true
		}
	}
	f.curList = curNames
	f.newKeys, f.namesInNew = stillNew, len(stillNew)
	f.trustCur(curBefore, statAt, moved)
	if moved {
		// Exact but for what another program did to cur/ while we moved
		// (its time then no longer tells): trusted until verified.
		if st, err := os.Stat(curDir); err == nil {
			f.curMtime, f.curSuspect = st.ModTime(), true
			f.scheduleVerify()
		}
	}
	if lost {
		// Another program did move into cur/ meanwhile, a file we never
		// listed there: cur/'s time cannot stand for our listing, and the
		// next Sync lists it.
		f.curTrusted, f.curSuspect = false, false
	}
	names := f.names
	unchanged := true
	for k, n := range changed {
		if names[k] != n {
			unchanged = false
		}
	}
	if unchanged && len(changed) == len(fromNew) && !moved {
		// Nothing but what new/ already held: the last snapshot stands
		// if it said so.
		if slices.Equal(last.NewUIDs, newUIDsIn(last.Messages, fromNew, db)) {
			return last, nil
		}
	}
	// Keys the database does not know get UIDs (under the lock, appended).
	var fresh map[string]string
	for k, n := range changed {
		if db.uids[k] == 0 {
			if fresh == nil {
				fresh = make(map[string]string)
			}
			fresh[k] = n
		}
	}
	if fresh != nil {
		unlock, err := lockFile(filepath.Join(f.path, uidLockName))
		if err != nil {
			return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
		db, err = f.assignUIDs(fresh, nil)
		if werr := f.finishDBWrite(); werr != nil && err == nil {
			err = werr
		}
		f.numbered = nil // names here are not the ones numbered
		unlock()
		if err != nil {
			return nil, fmt.Errorf("maildir %s: sync: %w", f.path, err)
		}
	}
	for k, n := range changed {
		names[k] = n
	}
	if db != f.lastDB {
		// Another process numbered messages meanwhile: build it whole.
		return f.rebuildSnapshot(db, names, fromNew, km)
	}
	// Messages of the last snapshot whose name changed (another program's
	// flag change, our own move from new/) are patched into a copy of its
	// array; when there are none, which is the case after a delivery
	// moved by the Sync that first sees it, the new messages are written
	// past its end (see extendable), and the folder's size costs nothing.
	prev := last.Messages
	type rename struct {
		i    int // index in prev
		name string
	}
	var added []numberedKey
	var renamed []rename
	for k, n := range changed {
		uid := db.uids[k]
		if uid == 0 {
			continue
		}
		i, found := slices.BinarySearchFunc(prev, uid, cmpMessageUID)
		if !found {
			added = append(added, numberedKey{uid: uid, key: k})
		} else if n != prev[i].Name {
			renamed = append(renamed, rename{i, n})
		}
	}
	msgs := prev
	if len(renamed) > 0 || !f.extendable(prev) {
		msgs = make([]Message, len(prev), withRoom(len(prev)+len(added)))
		copy(msgs, prev)
		for _, r := range renamed {
			setName(&msgs[r.i], r.name, km)
		}
	}
	slices.SortFunc(added, func(a, b numberedKey) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	for _, o := range added {
		if len(msgs) > 0 && o.uid < msgs[len(msgs)-1].UID {
			// An old UID the last snapshot lacked: build it whole.
			return f.rebuildSnapshot(db, names, fromNew, km)
		}
		m, ok, err := f.newMessage(o.uid, o.key, names, fromNew, km)
		if err != nil {
			return nil, err
		}
		if ok {
			msgs = append(msgs, m)
		} else {
			delete(names, o.key)
		}
	}
	snap := &Snapshot{UIDValidity: db.validity, UIDNext: db.next, Messages: msgs, NewUIDs: newUIDsIn(msgs, fromNew, db)}
	f.lastSnap, f.lastDB, f.lastGen = snap, db, db.gen
	f.arena = msgs
	f.deltaSyncs++
	if len(msgs) > 0 && len(prev) > 0 && &msgs[0] == &prev[0] {
		f.inPlaceSyncs++
	}
	return snap, nil
}

// extendable says whether msgs, the last snapshot's messages, end where
// the longest slice this folder handed out of their array ends: then
// nothing anyone holds can see past len(msgs), and new messages may be
// appended to msgs in place. Every snapshot's Messages is read-only and
// nobody else appends to it (Snapshot's contract); a snapshot made
// earlier from the same array is shorter or as long, so it never sees
// the appended elements either, even if it became the last snapshot
// again. Caller holds f.mu.
func (f *Folder) extendable(msgs []Message) bool {
	return len(msgs) > 0 && len(msgs) == len(f.arena) && &msgs[0] == &f.arena[0]
}

// withRoom is the capacity to give an array of n messages: a little more,
// so that the next deliveries are appended in place (see extendable).
func withRoom(n int) int { return n + n/64 + 16 }

func cmpMessageUID(m Message, uid uint32) int { return int64cmp(int64(m.UID), int64(uid)) }

// newUIDsIn returns the UIDs, ascending, of the messages of msgs (in UID
// order) whose keys are in fromNew: Snapshot.NewUIDs.
func newUIDsIn(msgs []Message, fromNew map[string]bool, db *uidDB) []uint32 {
	var uids []uint32
	for k := range fromNew {
		uid := db.uids[k]
		if uid == 0 {
			continue
		}
		if i, found := slices.BinarySearchFunc(msgs, uid, cmpMessageUID); found && msgs[i].Key == k {
			uids = append(uids, uid)
		}
	}
	slices.Sort(uids)
	return uids
}

// setName gives m the file name name, with the flags and keywords its
// info part says.
func setName(m *Message, name string, km *keywordMap) {
	m.Name = name
	var info string
	if strings.HasPrefix(name, "cur/") {
		_, info = splitName(name[4:])
	}
	var kwIdx []int
	m.Flags, kwIdx = parseInfo(info)
	m.Keywords = keywordNames(km, kwIdx)
}

// rebuildSnapshot builds the snapshot from every name and makes it the
// last one. Caller holds f.mu.
func (f *Folder) rebuildSnapshot(db *uidDB, names map[string]string, fromNew map[string]bool, km *keywordMap) (*Snapshot, error) {
	snap, err := f.fullSnapshot(db, names, fromNew, km)
	if err == nil {
		f.lastSnap, f.lastDB, f.lastGen = snap, db, db.gen
	}
	return snap, err
}

// curVerifyDelay is how long after its own moves into cur/ a Folder
// lists cur/ again to check that nobody else changed it meanwhile.
const curVerifyDelay = 250 * time.Millisecond

// scheduleVerify arranges one verifyCur. Caller holds f.mu.
func (f *Folder) scheduleVerify() {
	if f.verifyPending {
		return
	}
	f.verifyPending = true
	time.AfterFunc(curVerifyDelay, f.verifyCur)
}

// verifyCur settles a suspect cur/ listing (our own moves were trusted
// without listing): once cur/'s time is old enough to be trusted, it lists
// cur/ outside the lock and compares. The same names make the listing
// trusted; anything else makes the next Sync list cur/ and find it. A
// change of cur/'s time meanwhile ends the suspicion the same way (the
// next Sync sees the new time).
func (f *Folder) verifyCur() {
	f.mu.Lock()
	f.verifyPending = false
	if !f.curSuspect || f.curList == nil && f.names == nil {
		f.mu.Unlock()
		return
	}
	mtime, prev := f.curMtime, f.curList
	if time.Since(mtime) <= trustAge(mtime) {
		f.scheduleVerify()
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	dir := filepath.Join(f.path, "cur")
	statAt := time.Now()
	st, serr := os.Stat(dir)
	names, lerr := readNames(dir)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.curSuspect || !f.curMtime.Equal(mtime) {
		if f.curSuspect {
			f.scheduleVerify() // our own moves since: verify those later
		}
		return
	}
	f.curSuspect = false
	if serr != nil || lerr != nil || !st.ModTime().Equal(mtime) {
		return // changed: the next Sync lists cur/
	}
	if prev == nil {
		// Resumed from a checkpoint: no earlier listing, so the names are
		// compared with what the folder holds in cur/.
		if !f.namesInCur(names) {
			return
		}
	} else if ins, del, ok := diffListing(prev, names, maxDeltaChanges); !ok || !sameNames(ins, del) {
		return // another program changed cur/: the next Sync lists it
	}
	f.curList = names
	f.trustListing(st, statAt)
}

// namesInCur says whether listing (of cur/) holds exactly the names
// f.names has in cur/. Caller holds f.mu.
func (f *Folder) namesInCur(listing []string) bool {
	if len(listing) != len(f.names)-f.namesInNew {
		return false
	}
	for _, n := range listing {
		k, _ := splitName(n)
		have := f.names[k]
		if len(have) != 4+len(n) || have[:4] != "cur/" || have[4:] != n {
			return false
		}
	}
	return true
}

// sameNames says whether two lists hold the same names (a name we
// appended after a move shows up elsewhere in the directory order).
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int, len(a))
	for _, n := range a {
		seen[n]++
	}
	for _, n := range b {
		if seen[n]--; seen[n] < 0 {
			return false
		}
	}
	return true
}

// trustCur records cur/'s time as seen before a listing that deltaSync
// took, trusted as scanFolder trusts it (old enough, and no rename of ours
// since). Caller holds f.mu.
func (f *Folder) trustCur(before os.FileInfo, statAt time.Time, moved bool) {
	if (f.curTrusted || f.curSuspect) && before.ModTime().Equal(f.curMtime) && !moved {
		return // not listed: as trusted as before
	}
	f.curTrusted = false
	if !moved && time.Since(before.ModTime()) > trustAge(before.ModTime()) {
		f.trustListing(before, statAt)
	}
}

// diffListing compares two listings of one directory in directory order
// and returns the names only in cur (inserted) and only in prev (deleted).
// Unchanged names are matched by walking both lists together; after a
// mismatch it looks a few names ahead in each to find its place again.
// ok is false when more than limit names differ.
func diffListing(prev, cur []string, limit int) (ins, del []string, ok bool) {
	const look = 8
	i, j := 0, 0
	for i < len(cur) && j < len(prev) {
		if cur[i] == prev[j] {
			i++
			j++
			continue
		}
		found := false
		for d := 1; d <= look && j+d < len(prev); d++ {
			if prev[j+d] == cur[i] {
				del = append(del, prev[j:j+d]...)
				j += d
				found = true
				break
			}
		}
		if !found {
			for d := 1; d <= look && i+d < len(cur); d++ {
				if cur[i+d] == prev[j] {
					ins = append(ins, cur[i:i+d]...)
					i += d
					found = true
					break
				}
			}
		}
		if !found {
			ins = append(ins, cur[i])
			del = append(del, prev[j])
			i++
			j++
		}
		if len(ins)+len(del) > limit {
			return nil, nil, false
		}
	}
	ins = append(ins, cur[i:]...)
	del = append(del, prev[j:]...)
	if len(ins)+len(del) > limit {
		return nil, nil, false
	}
	return ins, del, true
}

// InternalDate is a message's internal date, the modification time of its
// file, for a message whose snapshot left it zero (a first Sync does not
// stat the files whose names carry their size). ErrNoMessage when the
// message is gone.
func (f *Folder) InternalDate(key string) (time.Time, error) {
	var mtime time.Time
	err := f.withFile(key, func(name string) error {
		st, err := os.Stat(filepath.Join(f.path, name))
		if err == nil {
			mtime = st.ModTime()
		}
		return err
	})
	return mtime, err
}

// UIDs returns the folder's UIDVALIDITY and the UIDs of keys, messages
// this process has just delivered or copied into it (IMAP's APPENDUID and
// COPYUID, RFC 4315 3), in the order given (0 for a key a Sync, when one
// was needed, did not find). Keys not numbered yet get their UIDs as a
// Sync would give them
// (in delivery order, under the UID database's lock), but no snapshot is
// built: the next Sync adds the messages to the last snapshot, in place
// when nothing else changed, instead of a snapshot holding them in new/
// being patched again when a session moves them to cur/.
func (f *Folder) UIDs(keys []string) (uint32, []uint32, error) {
	validity, uids, ok, err := f.numberKeys(keys)
	if err != nil || ok {
		return validity, uids, err
	}
	// No UID database yet, or one to import: a whole Sync.
	snap, err := f.Sync(false)
	if err != nil {
		return 0, nil, err
	}
	uids = make([]uint32, len(keys))
	want := make(map[string]int, len(keys))
	for i, k := range keys {
		want[k] = i
	}
	// Messages just delivered are at the end, in UID order.
	for i := len(snap.Messages) - 1; i >= 0 && len(want) > 0; i-- {
		m := &snap.Messages[i]
		if j, ok := want[m.Key]; ok {
			uids[j] = m.UID
			delete(want, m.Key)
		}
	}
	return snap.UIDValidity, uids, nil
}

// numberKeys is UIDs with a UID database to number in; ok is false when
// there is none (or Courier keywords wait to be imported, which a Sync
// does under the same lock) and a Sync must do it.
func (f *Folder) numberKeys(keys []string) (validity uint32, uids []uint32, ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	db, err := f.uidDBForSync()
	if err != nil {
		return 0, nil, false, fmt.Errorf("maildir %s: uids: %w", f.path, err)
	}
	if db == nil || len(db.uids) == 0 || f.needsKeywordImport() {
		return 0, nil, false, nil
	}
	var fresh map[string]string
	for _, k := range keys {
		if db.uids[k] != 0 {
			continue
		}
		if k == "" || strings.ContainsAny(k, "/:\x00") {
			return 0, nil, false, fmt.Errorf("maildir %s: key %q: %w", f.path, k, ErrNoMessage)
		}
		if fresh == nil {
			fresh = make(map[string]string)
		}
		fresh[k] = "" // the name only matters to a first numbering
	}
	if fresh != nil {
		// Still the database the last snapshot was built from: numbering
		// keys it lacks leaves it so (the next Sync finds them in new/ or
		// cur/ and adds them), and deltaSync can go on patching.
		current := db == f.lastDB && db.gen == f.lastGen
		unlock, err := lockFile(filepath.Join(f.path, uidLockName))
		if err != nil {
			return 0, nil, false, fmt.Errorf("maildir %s: uids: %w", f.path, err)
		}
		db, err = f.assignUIDs(fresh, nil)
		if werr := f.finishDBWrite(); werr != nil && err == nil {
			err = werr
		}
		f.numbered = nil
		unlock()
		if err != nil {
			return 0, nil, false, fmt.Errorf("maildir %s: uids: %w", f.path, err)
		}
		if current && db == f.lastDB {
			f.lastGen = db.gen
		}
	}
	uids = make([]uint32, len(keys))
	for i, k := range keys {
		uids[i] = db.uids[k]
	}
	return db.validity, uids, true, nil
}
