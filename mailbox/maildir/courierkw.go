package maildir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Courier's keyword store, courierimapkeywords/ in each folder, as Courier's
// IMAP server and maildirkw(1) keep it (learnt from courier-base 1.0.16's
// maildirkw by running it; no Courier source was read):
//
//   - ":list" holds the keyword names one per line, an empty line, then
//     one "KEY:N N ..." line per message with keywords (0-based indexes
//     into the names).
//   - An update file named after a message's KEY (the file name up to
//     ":2,") holds that message's whole keyword set, one name per line; it
//     replaces what :list says. A writer puts it in place by rename.
//   - A reader that merges updates into :list renames each update file to
//     ".N.KEY", N being the time in 300-second units plus one, and removes
//     ".N.KEY" files whose N is older than the previous unit. A ".N.KEY"
//     file still overrides :list (a reader may have missed the new :list).
//
// Postern keeps keywords as letters in the file names (keywords.go) and
// mirrors every change of a message's keywords into an update file, so
// Courier's tools and server see it; Sync applies the sets Courier's tools
// wrote (syncCourierKeywords).

// CourierKeywordsDir is the name of Courier's keyword directory in a folder.
const CourierKeywordsDir = courierKwDir

// courierUpdateUnit is the time unit of the ".N.KEY" names.
const courierUpdateUnit = 300

// maxCourierUpdate bounds one update file on read.
const maxCourierUpdate = 64 << 10

// maxCourierEntries bounds the files read from courierimapkeywords/.
const maxCourierEntries = 1 << 20

// CourierKeywords is a folder's courierimapkeywords/ as read: each
// message's keyword set with update files applied over :list.
type CourierKeywords struct {
	// Sets maps a message key to its keywords, sorted as Courier writes
	// them (byte order). A key whose update file is empty maps to an empty
	// set.
	Sets map[string][]string
	// Order is the keys in the order they were first seen (:list, then
	// the directory's order).
	Order []string

	dir    string
	plain  []string // update files not yet merged
	stale  []string // ".N.KEY" files old enough to remove
	merged bool     // :list is out of date (updates or stale files exist)
}

// courierUpdateNumber is N of ".N.KEY" names for the time t.
func courierUpdateNumber(t time.Time) int64 { return t.Unix()/courierUpdateUnit + 1 }

// ReadCourierKeywords reads the keyword store of the folder directory
// folderPath. A missing directory is an empty store. Names that are not
// valid IMAP keywords are skipped; when fold is set, names equal but for
// case count once (the first spelling is kept), as IMAP keywords do.
func ReadCourierKeywords(folderPath string, fold bool, now time.Time) (*CourierKeywords, error) {
	ck := &CourierKeywords{Sets: make(map[string][]string), dir: filepath.Join(folderPath, courierKwDir)}
	data, err := readBounded(filepath.Join(ck.dir, ":list"), maxKeywordsFile)
	switch {
	case err == nil:
		list, err := parseCourierKeywordList(data)
		if err != nil {
			return nil, err
		}
		for _, key := range list.order {
			var set []string
			for _, i := range list.messages[key] {
				set = append(set, list.names[i])
			}
			ck.put(key, set, fold)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("courier keywords: %w", err)
	}
	entries, err := os.ReadDir(ck.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ck, nil
		}
		return nil, fmt.Errorf("courier keywords: %w", err)
	}
	if len(entries) > maxCourierEntries {
		entries = entries[:maxCourierEntries]
	}
	current := courierUpdateNumber(now)
	type dotted struct {
		n    int64
		file string
	}
	best := make(map[string]dotted)
	var plain []string
	for _, e := range entries {
		name := e.Name()
		if name == ":list" || !e.Type().IsRegular() {
			continue
		}
		if !strings.HasPrefix(name, ".") {
			if validCourierKey(name) {
				plain = append(plain, name)
			}
			continue
		}
		num, key, ok := strings.Cut(name[1:], ".")
		n, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || n < 0 || !validCourierKey(key) {
			continue // ".tmp.*" of a writer, or not Courier's
		}
		if n < current-1 {
			ck.stale = append(ck.stale, name)
			ck.merged = true
		}
		if b, seen := best[key]; !seen || n > b.n {
			best[key] = dotted{n, name}
		}
	}
	// Sorted so that the result does not depend on directory order.
	keys := make([]string, 0, len(best))
	for k := range best {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		set, err := readCourierUpdate(filepath.Join(ck.dir, best[k].file))
		if err != nil {
			continue // renamed or removed meanwhile
		}
		ck.put(k, set, fold)
	}
	slices.Sort(plain)
	for _, k := range plain {
		set, err := readCourierUpdate(filepath.Join(ck.dir, k))
		if err != nil {
			continue
		}
		ck.put(k, set, fold)
		ck.plain = append(ck.plain, k)
		ck.merged = true
	}
	return ck, nil
}

// validCourierKey is a message key that may name a file in the store.
func validCourierKey(key string) bool {
	return key != "" && !strings.HasPrefix(key, ".") && !strings.ContainsAny(key, "/:\x00")
}

func readCourierUpdate(path string) ([]string, error) {
	data, err := readBounded(path, maxCourierUpdate)
	if err != nil {
		return nil, err
	}
	var set []string
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(line) > 0 {
			set = append(set, string(line))
		}
	}
	return set, nil
}

// put records key's set: valid names only, without duplicates, sorted.
func (ck *CourierKeywords) put(key string, set []string, fold bool) {
	if _, seen := ck.Sets[key]; !seen {
		ck.Order = append(ck.Order, key)
	}
	ck.Sets[key] = NormalizeKeywords(set, fold)
}

// NormalizeKeywords drops invalid names and duplicates (by case when
// fold) and sorts the rest in byte order, as Courier writes a set.
func NormalizeKeywords(set []string, fold bool) []string {
	out := []string{}
	for _, n := range set {
		if ValidKeyword(n) != nil {
			continue
		}
		dup := false
		for _, o := range out {
			if o == n || fold && strings.EqualFold(o, n) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Merge writes what ck holds into a new :list, renames the update files
// to ".N.KEY" and removes the stale ".N.KEY" files, as Courier's readers
// do. Messages with no keywords are left out of :list. It does nothing
// when :list is current.
func (ck *CourierKeywords) Merge(now time.Time) error {
	if !ck.merged {
		return nil
	}
	var names []string
	index := make(map[string]int)
	var lines bytes.Buffer
	for _, key := range ck.Order {
		set := ck.Sets[key]
		if len(set) == 0 {
			continue
		}
		lines.WriteString(key)
		lines.WriteByte(':')
		for i, n := range set {
			j, ok := index[n]
			if !ok {
				j = len(names)
				index[n] = j
				names = append(names, n)
			}
			if i > 0 {
				lines.WriteByte(' ')
			}
			lines.WriteString(strconv.Itoa(j))
		}
		lines.WriteByte('\n')
	}
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(lines.Bytes())
	if err := writeFileAtomic(filepath.Join(ck.dir, ":list"), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("courier keywords: %w", err)
	}
	n := courierUpdateNumber(now)
	for _, k := range ck.plain {
		if err := os.Rename(filepath.Join(ck.dir, k), filepath.Join(ck.dir, fmt.Sprintf(".%d.%s", n, k))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("courier keywords: %w", err)
		}
	}
	for _, s := range ck.stale {
		if err := os.Remove(filepath.Join(ck.dir, s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("courier keywords: %w", err)
		}
	}
	ck.plain, ck.stale, ck.merged = nil, nil, false
	return nil
}

// WriteCourierKeywords puts an update file for key with the given set into
// the folder directory folderPath's courierimapkeywords/ (created mode
// 0700 if need be): written in the folder's tmp/, then renamed, as
// Courier's writers do. The set is written as given, one name a line.
func WriteCourierKeywords(folderPath, key string, set []string) error {
	if !validCourierKey(key) {
		return fmt.Errorf("courier keywords: message %q: %w", key, ErrNoMessage)
	}
	dir := filepath.Join(folderPath, courierKwDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("courier keywords: %w", err)
	}
	var b bytes.Buffer
	for _, n := range set {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(folderPath, "tmp", fmt.Sprintf("%d.kw%d.%x", time.Now().Unix(), os.Getpid(), rnd))
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("courier keywords: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, key)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("courier keywords: %w", err)
	}
	return nil
}

// courierSetKey is a set's identity for comparisons: IMAP keywords are
// compared without regard to case.
func courierSetKey(set []string) string {
	low := make([]string, len(set))
	for i, n := range set {
		low[i] = strings.ToLower(n)
	}
	slices.Sort(low)
	return strings.Join(low, " ")
}

// mirrorCourierKeywords writes key's new keyword set for Courier, and
// remembers it as seen so that Sync does not apply it back.
func (f *Folder) mirrorCourierKeywords(key string, set []string) {
	set = NormalizeKeywords(set, true)
	if err := WriteCourierKeywords(f.path, key, set); err != nil {
		f.md.log.Warn("maildir: courier keyword update not written", "folder", f.path, "key", key, "err", err)
		return
	}
	f.mu.Lock()
	if f.ckwSeen == nil {
		f.ckwSeen = make(map[string]string)
	}
	f.ckwSeen[key] = courierSetKey(set)
	f.mu.Unlock()
}

// courierMergeAt is how many unmerged or stale files in
// courierimapkeywords/ make Sync merge them into :list, as Courier's
// server does: the directory, read whole at every change, stays small.
const courierMergeAt = 32

// syncCourierKeywords applies the keyword sets Courier's tools or server
// wrote since the last look: when courierimapkeywords/ changed, each
// message whose set there differs from the set last seen (or, the first
// time, from its letters) is renamed to carry that set. Caller holds f.mu.
func (f *Folder) syncCourierKeywords() {
	st, err := os.Stat(filepath.Join(f.path, courierKwDir))
	if err != nil {
		return
	}
	id := identityOf(st)
	if f.ckwStatOK && id == f.ckwStat {
		return
	}
	now := time.Now()
	ck, err := ReadCourierKeywords(f.path, true, now)
	if err != nil {
		f.md.log.Warn("maildir: courier keywords not read", "folder", f.path, "err", err)
		return
	}
	if f.ckwSeen == nil {
		f.ckwSeen = make(map[string]string)
	}
	// Where each message is: the last Sync's names, else one listing.
	names := f.names
	listed := false
	list := func() {
		if listed {
			return
		}
		listed = true
		names = make(map[string]string)
		for _, sub := range []string{"new", "cur"} {
			all, err := readNames(filepath.Join(f.path, sub))
			if err != nil {
				continue
			}
			for _, n := range all {
				k, _ := splitName(n)
				names[k] = sub + "/" + n
			}
		}
	}
	if names == nil {
		list()
	}
	changed := false
	for _, key := range ck.Order {
		want := courierSetKey(ck.Sets[key])
		if seen, ok := f.ckwSeen[key]; ok && seen == want {
			continue
		}
		name, ok := names[key]
		if !ok && !listed {
			list() // arrived since the last Sync, or gone
			name, ok = names[key]
		}
		if ok {
			renamed, err := f.applyCourierSet(key, name, ck.Sets[key])
			if errors.Is(err, fs.ErrNotExist) && !listed {
				list() // renamed by someone else since the last Sync
				if name, ok = names[key]; ok {
					renamed, _ = f.applyCourierSet(key, name, ck.Sets[key])
				}
			}
			changed = changed || renamed
		}
		f.ckwSeen[key] = want
	}
	f.ckwStat, f.ckwStatOK = id, true
	if changed {
		f.lastSnap, f.lastDB = nil, nil
	}
	if len(ck.plain)+len(ck.stale) >= courierMergeAt {
		list()
		ck.Forget(func(key string) bool { _, ok := names[key]; return !ok })
		if err := ck.Merge(now); err != nil {
			f.md.log.Warn("maildir: courier keywords not merged", "folder", f.path, "err", err)
		}
	}
}

// Forget drops the messages gone reports gone (Courier's server leaves
// them out of :list too) and makes the next Merge write :list.
func (ck *CourierKeywords) Forget(gone func(key string) bool) {
	kept := ck.Order[:0]
	for _, k := range ck.Order {
		if gone(k) {
			delete(ck.Sets, k)
			ck.merged = true
			continue
		}
		kept = append(kept, k)
	}
	ck.Order = kept
}

// applyCourierSet renames key's file (now name) to carry exactly set as
// keywords. It reports whether the file was renamed, and the rename's
// error. Caller holds f.mu.
func (f *Folder) applyCourierSet(key, name string, set []string) (bool, error) {
	var info string
	if strings.HasPrefix(name, "cur/") {
		_, info = splitName(name[4:])
	}
	flags, idx := parseInfo(info)
	km, err := f.cachedKeywords()
	if err != nil {
		return false, err
	}
	if courierSetKey(keywordNames(km, idx)) == courierSetKey(set) {
		return false, nil
	}
	letters, err := f.keywordLettersLocked(set)
	if err != nil {
		f.md.log.Warn("maildir: courier keywords not applied", "folder", f.path, "key", key, "err", err)
		return false, err
	}
	newName := "cur/" + key + ":2," + flags + letters
	if err := os.Rename(filepath.Join(f.path, name), filepath.Join(f.path, newName)); err != nil {
		return false, err
	}
	if f.names != nil {
		f.names[key] = newName
	}
	return true, nil
}
