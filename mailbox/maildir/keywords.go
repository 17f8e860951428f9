package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Keywords follow Dovecot's Maildir scheme: the lower-case letters a-z in
// a file's ":2," info are indexes 0-25 into the folder's dovecot-keywords
// file, whose lines read "INDEX NAME". Keeping keywords in the file name
// makes a flag+keyword change one atomic rename and needs no extra
// database. The price is the scheme's limit of 26 keywords per folder.
//
// A Courier folder keeps keywords in courierimapkeywords/ instead. Every
// keyword change is mirrored there, and Sync applies the changes Courier's
// tools make there (courierkw.go).

const maxKeywords = 26

// maxKeywordLen bounds one keyword name.
const maxKeywordLen = 200

// maxKeywordsFile bounds dovecot-keywords and Courier's :list on read.
const maxKeywordsFile = 1 << 20

type keywordMap struct {
	names [maxKeywords]string
}

// index finds a keyword, ignoring case as IMAP flag comparison does.
func (km *keywordMap) index(name string) int {
	for i, n := range km.names {
		if n != "" && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

func (km *keywordMap) add(name string) (int, error) {
	if i := km.index(name); i >= 0 {
		return i, nil
	}
	for i, n := range km.names {
		if n == "" {
			km.names[i] = name
			return i, nil
		}
	}
	return -1, fmt.Errorf("keyword %q: %w", name, ErrTooManyKeywords)
}

func (km *keywordMap) marshal() []byte {
	var b bytes.Buffer
	for i, n := range km.names {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	return b.Bytes()
}

// parseKeywords reads dovecot-keywords. Lines that do not parse, indexes
// out of range and invalid names are skipped: a damaged line costs that
// keyword, not the folder.
func parseKeywords(data []byte) *keywordMap {
	km := &keywordMap{}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		idxText, name, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(string(idxText))
		if err != nil || idx < 0 || idx >= maxKeywords {
			continue
		}
		if ValidKeyword(string(name)) != nil || km.index(string(name)) >= 0 {
			continue
		}
		km.names[idx] = string(name)
	}
	return km
}

// ValidKeyword reports whether name can be an IMAP keyword (RFC 3501
// flag-keyword = atom): not empty, not a system flag ("\Seen"), no space,
// control characters or atom-specials.
func ValidKeyword(name string) error {
	if name == "" || len(name) > maxKeywordLen {
		return fmt.Errorf("keyword %.40q: %w", name, ErrBadKeyword)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("keyword %.40q: %w", name, ErrBadKeyword)
		}
	}
	return nil
}

// cachedKeywords returns the folder's keyword map, re-read when the file
// changed. Caller holds f.mu.
func (f *Folder) cachedKeywords() (*keywordMap, error) {
	path := filepath.Join(f.path, keywordsName)
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			f.kwCache = &keywordMap{}
			f.kwStat = fileIdentity{}
			return f.kwCache, nil
		}
		return nil, err
	}
	if f.kwCache != nil && identityOf(st) == f.kwStat {
		return f.kwCache, nil
	}
	data, err := readBounded(path, maxKeywordsFile)
	if err != nil {
		return nil, err
	}
	f.kwCache, f.kwStat = parseKeywords(data), identityOf(st)
	return f.kwCache, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes is more than %d", path, st.Size(), limit)
	}
	data := make([]byte, st.Size())
	n, err := file.ReadAt(data, 0)
	if err != nil && n != len(data) {
		return nil, err
	}
	return data[:n], nil
}

// keywordNames turns indexes into sorted keyword names, skipping letters
// the map does not define.
func keywordNames(km *keywordMap, idx []int) []string {
	var out []string
	for _, i := range idx {
		if km.names[i] != "" {
			out = append(out, km.names[i])
		}
	}
	slices.Sort(out)
	return out
}

// keywordLetters returns the sorted info letters for the given keywords,
// adding unknown ones to dovecot-keywords under the folder lock.
func (f *Folder) keywordLetters(names []string) (string, error) {
	if len(names) == 0 {
		return "", nil
	}
	for _, n := range names {
		if err := ValidKeyword(n); err != nil {
			return "", err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keywordLettersLocked(names)
}

// keywordLettersLocked is keywordLetters for a caller holding f.mu.
func (f *Folder) keywordLettersLocked(names []string) (string, error) {
	if len(names) == 0 {
		return "", nil
	}
	for _, n := range names {
		if err := ValidKeyword(n); err != nil {
			return "", err
		}
	}
	km, err := f.cachedKeywords()
	if err != nil {
		return "", fmt.Errorf("keywords: %w", err)
	}
	missing := false
	for _, n := range names {
		if km.index(n) < 0 {
			missing = true
		}
	}
	if missing {
		unlock, err := lockFile(filepath.Join(f.path, uidLockName))
		if err != nil {
			return "", err
		}
		defer unlock()
		f.kwCache = nil // re-read under the lock: another process may have added some
		km, err = f.cachedKeywords()
		if err != nil {
			return "", fmt.Errorf("keywords: %w", err)
		}
		updated := *km
		for _, n := range names {
			if _, err := updated.add(n); err != nil {
				return "", err
			}
		}
		if err := f.writeKeywords(&updated); err != nil {
			return "", err
		}
		km = f.kwCache
	}
	var seen [maxKeywords]bool
	for _, n := range names {
		seen[km.index(n)] = true
	}
	var b []byte
	for i, ok := range seen {
		if ok {
			b = append(b, byte('a'+i))
		}
	}
	return string(b), nil
}

// writeKeywords replaces dovecot-keywords; caller holds the folder lock
// and f.mu.
func (f *Folder) writeKeywords(km *keywordMap) error {
	path := filepath.Join(f.path, keywordsName)
	if err := writeFileAtomic(path, km.marshal(), 0o600); err != nil {
		return fmt.Errorf("keywords: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keywords: %w", err)
	}
	f.kwCache, f.kwStat = km, identityOf(st)
	return nil
}

// courierKeywordList is Courier's courierimapkeywords/:list: the keyword
// names one per line, an empty line, then "KEY:N N ..." lines giving each
// message's keywords as 0-based indexes into the name list.
type courierKeywordList struct {
	names    []string
	messages map[string][]int
	order    []string // keys in file order
}

func parseCourierKeywordList(data []byte) (*courierKeywordList, error) {
	list := &courierKeywordList{messages: make(map[string][]int)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	inNames := true
	for sc.Scan() {
		line := sc.Text()
		if inNames {
			if line == "" {
				inNames = false
				continue
			}
			list.names = append(list.names, line)
			continue
		}
		key, idxText, ok := strings.Cut(line, ":")
		if !ok || key == "" {
			continue
		}
		var idx []int
		for _, field := range strings.Fields(idxText) {
			n, err := strconv.Atoi(field)
			if err != nil || n < 0 || n >= len(list.names) {
				continue
			}
			idx = append(idx, n)
		}
		if _, dup := list.messages[key]; !dup {
			list.order = append(list.order, key)
		}
		list.messages[key] = idx
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("courierimapkeywords/:list: %w", err)
	}
	return list, nil
}

// importCourierKeywords converts a Courier keyword store once: it writes
// dovecot-keywords and renames each listed message to carry its keyword
// letters. Keywords beyond the 26th are dropped with a log line. Caller
// holds f.mu and the folder lock; names maps key → current file name.
func (f *Folder) importCourierKeywords(names map[string]string) error {
	if _, err := os.Stat(filepath.Join(f.path, keywordsName)); err == nil {
		return nil
	}
	data, err := readBounded(filepath.Join(f.path, courierKwDir, ":list"), maxKeywordsFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("import courier keywords: %w", err)
	}
	list, err := parseCourierKeywordList(data)
	if err != nil {
		return err
	}
	km := &keywordMap{}
	letterOf := make(map[int]int) // Courier index → our index
	for ci, n := range list.names {
		if ValidKeyword(n) != nil {
			continue
		}
		i, err := km.add(n)
		if err != nil {
			f.md.log.Warn("maildir: courier keyword dropped (more than 26)", "folder", f.path, "keyword", n)
			continue
		}
		letterOf[ci] = i
	}
	if err := f.writeKeywords(km); err != nil {
		return err
	}
	for key, idx := range list.messages {
		name, ok := names[key]
		if !ok || !strings.HasPrefix(name, "cur/") {
			continue
		}
		_, info := splitName(name[4:])
		flags, old := parseInfo(info)
		var set [maxKeywords]bool
		for _, i := range old {
			set[i] = true
		}
		for _, ci := range idx {
			if i, ok := letterOf[ci]; ok {
				set[i] = true
			}
		}
		letters := []byte(flags)
		for i, ok := range set {
			if ok {
				letters = append(letters, byte('a'+i))
			}
		}
		newName := "cur/" + key + ":2," + string(letters)
		if newName == name {
			continue
		}
		if err := os.Rename(filepath.Join(f.path, name), filepath.Join(f.path, newName)); err == nil {
			names[key] = newName
		}
	}
	return nil
}
