package maildir

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A message file name is KEY or KEY:2,INFO (maildir(5)). KEY is the unique
// name given at delivery and never changes; INFO holds the flags as
// upper-case letters and, in Dovecot's scheme we follow, keywords as the
// lower-case letters a-z that index the folder's dovecot-keywords file.

// splitName returns the key and the ":2," info of a file name. A name with
// another info version (":1,...") keeps its key; its info is ignored.
func splitName(name string) (key, info string) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, ""
	}
	key = name[:i]
	if strings.HasPrefix(name[i:], ":2,") {
		info = name[i+3:]
	}
	return key, info
}

// parseInfo splits a ":2," info into sorted, de-duplicated flag letters
// (A-Z) and keyword indexes (0-25 for a-z). Other characters are ignored,
// as other Maildir readers do.
func parseInfo(info string) (flags string, keywordIdx []int) {
	var seenFlag [26]bool
	var seenKw [26]bool
	for i := 0; i < len(info); i++ {
		c := info[i]
		switch {
		case c >= 'A' && c <= 'Z':
			seenFlag[c-'A'] = true
		case c >= 'a' && c <= 'z':
			seenKw[c-'a'] = true
		}
	}
	var b []byte
	for i, ok := range seenFlag {
		if ok {
			b = append(b, byte('A'+i))
		}
	}
	for i, ok := range seenKw {
		if ok {
			keywordIdx = append(keywordIdx, i)
		}
	}
	return string(b), keywordIdx
}

// normalizeFlags sorts and de-duplicates a flag string; anything but the
// letters A-Z is refused, because lower-case letters would be read back
// as keywords and other bytes have no meaning in the info.
func normalizeFlags(flags string) (string, error) {
	var seen [26]bool
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		if c < 'A' || c > 'Z' {
			return "", fmt.Errorf("flags %q: %w", flags, ErrBadFlags)
		}
		seen[c-'A'] = true
	}
	b := make([]byte, 0, len(flags))
	for i, ok := range seen {
		if ok {
			b = append(b, byte('A'+i))
		}
	}
	return string(b), nil
}

// sizeField returns the number after ",S=" or ",W=" (field 'S' or 'W') in
// a key, or -1 when absent or malformed.
func sizeField(key string, field byte) int64 {
	for i := 0; i+3 <= len(key); i++ {
		if key[i] != ',' || key[i+1] != field || key[i+2] != '=' {
			continue
		}
		j := i + 3
		for j < len(key) && key[j] >= '0' && key[j] <= '9' {
			j++
		}
		if j == i+3 || (j < len(key) && key[j] != ',') {
			return -1
		}
		n, err := strconv.ParseInt(key[i+3:j], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// deliveryTime extracts the seconds and microseconds a Courier/Dovecot
// style key starts with ("1700000000.M123P..."), for ordering new keys by
// delivery time; ok is false for other naming schemes.
func deliveryTime(key string) (t time.Time, ok bool) {
	dot := strings.IndexByte(key, '.')
	if dot <= 0 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(key[:dot], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var usec int64
	rest := key[dot+1:]
	if strings.HasPrefix(rest, "M") {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if v, err := strconv.ParseInt(rest[1:j], 10, 64); err == nil && v < 1000000 {
			usec = v
		}
	}
	return time.Unix(sec, usec*1000), true
}

// compareKeys orders keys by delivery time when both carry one, else by
// name: new messages get UIDs in the order they arrived.
func compareKeys(a, b string) int {
	ta, oka := deliveryTime(a)
	tb, okb := deliveryTime(b)
	switch {
	case oka && okb:
		if c := ta.Compare(tb); c != 0 {
			return c
		}
	case oka: // timed names first keeps the order total
		return -1
	case okb:
		return 1
	}
	return strings.Compare(a, b)
}

// sortKeys sorts keys as compareKeys orders them. Each key's delivery time
// is parsed once, not at every comparison: a first open numbers 100,000
// keys, and parsing them in the comparisons took half a second.
func sortKeys(keys []string) { sortKeysWith(keys, nil) }

// sortKeysWith sorts keys as sortKeys does and, when names is not nil,
// names (one per key) alongside. Small records (the delivery time as one
// number, the key's place) are sorted rather than the strings.
func sortKeysWith(keys, names []string) {
	type timedKey struct {
		usec int64 // delivery time in microseconds; timed keys first
		ok   bool
		i    int32 // index into keys
	}
	timed := make([]timedKey, len(keys))
	for i, k := range keys {
		t, ok := deliveryTime(k)
		timed[i] = timedKey{i: int32(i), ok: ok}
		if ok {
			timed[i].usec = t.UnixMicro()
		}
	}
	cmpTimed := func(a, b timedKey) int {
		switch {
		case a.ok && b.ok:
			if a.usec != b.usec {
				return cmp.Compare(a.usec, b.usec)
			}
		case a.ok:
			return -1
		case b.ok:
			return 1
		}
		return strings.Compare(keys[a.i], keys[b.i])
	}
	if n := len(timed); n < 8192 || runtime.GOMAXPROCS(0) < 2 {
		slices.SortFunc(timed, cmpTimed)
	} else {
		// A first open sorts every key: two halves side by side, then
		// merged.
		half := n / 2
		done := make(chan struct{})
		go func() {
			slices.SortFunc(timed[half:], cmpTimed)
			close(done)
		}()
		slices.SortFunc(timed[:half], cmpTimed)
		<-done
		merged := make([]timedKey, 0, n)
		a, b := timed[:half], timed[half:]
		for len(a) > 0 && len(b) > 0 {
			if cmpTimed(a[0], b[0]) <= 0 {
				merged, a = append(merged, a[0]), a[1:]
			} else {
				merged, b = append(merged, b[0]), b[1:]
			}
		}
		timed = append(append(merged, a...), b...)
	}
	sortedKeys := make([]string, len(keys))
	var sortedNames []string
	if names != nil {
		sortedNames = make([]string, len(names))
	}
	for j, t := range timed {
		sortedKeys[j] = keys[t.i]
		if names != nil {
			sortedNames[j] = names[t.i]
		}
	}
	copy(keys, sortedKeys)
	copy(names, sortedNames)
}
