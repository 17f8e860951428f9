package reformail

import "strings"

// fieldKey is how reformail names a header line when matching it against
// the header options: the line lower-cased up to and including its first
// colon (or the whole first physical line when it has no colon). An option
// argument matches when it starts with the key, so "-I 'Subject: new'"
// matches the line "SUBJECT: old" through the key "subject:".
func fieldKey(line string) string {
	end := len(line)
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		end = i
	}
	if i := strings.IndexByte(line[:end], ':'); i >= 0 {
		end = i + 1
	}
	return asciiLower(line[:end])
}

// asciiLower lower-cases ASCII letters only (C's tolower in the "C" locale),
// so that keys keep their byte lengths.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// findField returns the index of the first entry that starts with key,
// compared without regard to ASCII case, or -1.
func findField(list []string, key string) int {
	for i, e := range list {
		if len(e) >= len(key) && asciiLower(e[:len(key)]) == key {
			return i
		}
	}
	return -1
}

// headerEditor applies -a -A -i -I -u -U -R to the header, one logical line
// at a time, and produces the fields to append at its end. It mirrors
// Courier's order of checks so that combined options give the same result.
type headerEditor struct {
	addIfNew  []string // -a entries not yet seen in the message
	addAlways []string
	addOld    []string
	replace   []string
	rename    []string
	keepFirst []string
	keepLast  []string
	seenFirst []string // -u fields already written
	lastSeen  []string // -U fields held back, written at the end
}

func newHeaderEditor(o *options) *headerEditor {
	return &headerEditor{
		addIfNew:  append([]string(nil), o.addIfNew...),
		addAlways: o.addAlways,
		addOld:    o.addOld,
		replace:   append([]string(nil), o.replace...),
		rename:    o.rename,
		keepFirst: o.keepFirst,
		keepLast:  o.keepLast,
	}
}

// edit returns the line to write in place of line, or keep=false to drop it.
func (h *headerEditor) edit(line string) (out string, keep bool) {
	key := fieldKey(line)
	// -i: the old field stays, renamed Old-….
	if findField(h.addOld, key) >= 0 {
		line = "Old-" + line
		key = "old-" + key
	}
	// -R: the new name replaces the matched old name; the rest stays. The
	// first -R that matches wins: renames do not chain.
	if i := findField(h.rename, key); i >= 0 {
		line = h.rename[i][len(key):] + line[len(key):]
	}
	// -I (and the Return-Path: that -f0 makes) removes every old field.
	if findField(h.replace, key) >= 0 {
		return "", false
	}
	if findField(h.keepFirst, key) >= 0 {
		if findField(h.seenFirst, key) >= 0 {
			return "", false
		}
		h.seenFirst = append(h.seenFirst, line)
	} else if findField(h.keepLast, key) >= 0 {
		if i := findField(h.lastSeen, key); i >= 0 {
			h.lastSeen = append(h.lastSeen[:i], h.lastSeen[i+1:]...)
		}
		h.lastSeen = append(h.lastSeen, line)
		return "", false
	}
	// A field the message has already satisfies one -a for that name.
	if i := findField(h.addIfNew, key); i >= 0 {
		h.addIfNew = append(h.addIfNew[:i], h.addIfNew[i+1:]...)
	}
	return line, true
}

// trailer returns the fields appended at the end of the header, in Courier's
// order: -a (those not present), -A, -i, -I, then the last of each -U field.
// -i and -I arguments with an empty value ("X-Foo:") only remove.
func (h *headerEditor) trailer() []string {
	var out []string
	out = append(out, h.addIfNew...)
	out = append(out, h.addAlways...)
	out = append(out, dropEmptyValues(h.addOld)...)
	out = append(out, dropEmptyValues(h.replace)...)
	out = append(out, h.lastSeen...)
	return out
}

func dropEmptyValues(list []string) []string {
	var out []string
	for _, e := range list {
		if !strings.HasSuffix(e, ":") {
			out = append(out, e)
		}
	}
	return out
}

// catenate unfolds a header line as -c does: each line break and the white
// space after it become one space (none when only white space follows).
func catenate(line string) string {
	if !strings.Contains(line, "\n") {
		return line
	}
	var b strings.Builder
	b.Grow(len(line))
	for i := 0; i < len(line); i++ {
		if line[i] != '\n' {
			b.WriteByte(line[i])
			continue
		}
		j := i + 1
		for j < len(line) && isSpace(line[j]) {
			j++
		}
		if j < len(line) {
			b.WriteByte(' ')
		}
		i = j - 1
	}
	return b.String()
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
