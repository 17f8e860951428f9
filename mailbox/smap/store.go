package smap

import (
	"errors"
	"os"
	"slices"
	"strings"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// sortedFlags sorts maildir flag letters and drops duplicates.
func sortedFlags(s string) string {
	b := []byte(s)
	slices.Sort(b)
	return string(slices.Compact(b))
}

// parseFlagWords maps "SEEN,REPLIED,..." (upper case) to maildir letters;
// unknown words are ignored, as Courier does.
func parseFlagWords(list string) string {
	var letters []byte
	for _, f := range strings.Split(list, ",") {
		for _, fn := range flagNames {
			if f == fn.name {
				letters = append(letters, byte(fn.letter))
			}
		}
	}
	return sortedFlags(string(letters))
}

// parseKeywordWords splits "a,b,c"; keywords the maildir cannot keep
// (IMAP atoms only) are dropped, as Courier drops the ones it refuses.
func parseKeywordWords(list string) []string {
	var kws []string
	for _, k := range strings.Split(list, ",") {
		if k == "" || maildir.ValidKeyword(k) != nil || slices.Contains(kws, k) {
			continue
		}
		kws = append(kws, k)
	}
	slices.Sort(kws)
	return kws
}

// smapLetters are the flags SMAP can set; others (P) are kept as they are.
const smapLetters = "DFRST"

// cmdStore: STORE msgset item... with FLAGS=, +FLAGS=, -FLAGS=,
// KEYWORDS=, +KEYWORDS=, -KEYWORDS=, INTERNALDATE= (smapstore). Each item
// is applied to the whole set in turn and reported with a "* FETCH" line
// per message, flags or keywords as the item changed them.
func (sess *session) cmdStore(_ string, w *words) {
	set, p, _, ok := parseMsgSet(w)
	var err error
	if !ok {
		err = errInvalid
	}
	of := sess.cur
	if ok && of.readOnly() {
		// The flags live in the user's own view, but a folder they
		// may not write is read-only, whatever is asked (as IMAP
		// opens it).
		err, ok = errReadOnly, false
	}
	for ; ok && p != ""; p = w.next() {
		eq := strings.IndexByte(p, '=')
		if eq < 0 {
			continue
		}
		item, value := upper(p[:eq]), p[eq+1:]
		switch item {
		case "FLAGS", "+FLAGS", "-FLAGS":
			letters := parseFlagWords(upper(value))
			err = of.each(set, func(i int) error {
				m := &of.msgs[i]
				var nf string
				switch item[0] {
				case '+':
					nf = sortedFlags(m.flags + letters)
				case '-':
					nf = strings.Map(func(r rune) rune {
						if strings.ContainsRune(letters, r) {
							return -1
						}
						return r
					}, m.flags)
				default:
					keep := strings.Map(func(r rune) rune {
						if strings.ContainsRune(smapLetters, r) {
							return -1
						}
						return r
					}, m.flags)
					nf = sortedFlags(keep + letters)
				}
				if err := sess.setFlags(m, nf, m.keywords); err != nil {
					return err
				}
				sess.writeString(fetchFlagsLine(i, m, true, false))
				return nil
			})
		case "KEYWORDS", "+KEYWORDS", "-KEYWORDS":
			kws := parseKeywordWords(value)
			err = of.each(set, func(i int) error {
				m := &of.msgs[i]
				var nk []string
				switch item[0] {
				case '+':
					nk = parseKeywordWords(strings.Join(append(slices.Clone(m.keywords), kws...), ","))
				case '-':
					nk = slices.DeleteFunc(slices.Clone(m.keywords), func(k string) bool { return slices.Contains(kws, k) })
				default:
					nk = kws
				}
				if err := sess.setFlags(m, m.flags, nk); err != nil {
					return err
				}
				sess.writeString(fetchFlagsLine(i, m, false, true))
				return nil
			})
		case "INTERNALDATE":
			t, valid := mime.ParseDate(value)
			if !valid {
				continue // Courier ignores a date it cannot read
			}
			err = of.each(set, func(i int) error { return sess.setDate(&of.msgs[i], t) })
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		sess.writeString("-ERR Cannot update folder status: " + errText2(err) + "\n")
		return
	}
	sess.writeString("+OK Folder status updated\n")
}

// setFlags stores a message's flags and keywords and updates the view, so
// the next NOOP does not report the change back.
func (sess *session) setFlags(m *viewMsg, flags string, keywords []string) error {
	if flags == m.flags && slices.Equal(keywords, m.keywords) {
		return nil
	}
	if err := sess.cur.f.SetFlags(m.key, flags, keywords); err != nil {
		if isGone(err) {
			return nil // expunged elsewhere: the next NOOP says so
		}
		return err
	}
	m.flags, m.keywords = flags, keywords
	sess.cur.dirty = true
	return nil
}

// setDate sets a message's internal date (its file's modification time).
func (sess *session) setDate(m *viewMsg, t time.Time) error {
	f, err := sess.cur.f.Open(m.key)
	if err != nil {
		if isGone(err) {
			return nil
		}
		return err
	}
	name := f.Name()
	f.Close()
	if err := os.Chtimes(name, t, t); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	sess.cur.f.Remember(m.key, t, m.size)
	return nil
}

// cmdCopy: COPY msgset "" folder-path, and MOVE (which also removes the
// originals). Each copy is reported with its new UID:
// "* COPY n "NEWUID=..."".
func (sess *session) cmdCopy(cmd string, w *words) {
	set, next, has, ok := parseMsgSet(w)
	if !ok || !has || next != "" {
		sess.writeString("-ERR Syntax error.\n")
		return
	}
	path := w.path()
	dst, toShared, err := sess.insertTarget(path)
	if err == nil && cmd == "MOVE" && sess.cur.readOnly() {
		err = errReadOnly // the originals could not be removed
	}
	if err != nil {
		sess.writeString("-ERR Cannot copy messages: " + errText(err) + "\n")
		return
	}
	name := dst.Path()
	of := sess.cur
	// Courier checks the quota for the whole set before copying any.
	if err := sess.checkCopyQuota(set, dst, toShared); err != nil {
		sess.writeString("-ERR Cannot copy messages: " + errText(err) + "\n")
		return
	}
	var moved []string
	err = of.each(set, func(i int) error {
		m := &of.msgs[i]
		newKey, err := of.f.CopyTo(dst, m.key)
		if err != nil {
			if isGone(err) {
				return nil
			}
			return err
		}
		if toShared {
			dst.AdoptShared([]string{newKey}, sess.identity())
		}
		// In a shared folder too: each reader's view names its link
		// after the message (KEY:2,), so the key is its UID there.
		sess.writeString("* COPY " + itoa(i+1) + ` "NEWUID=` + quoteInner(newKey) + `"` + "\n")
		moved = append(moved, m.key)
		return nil
	})
	if err != nil {
		sess.log.Warn("smap: copy", "to", name, "err", err)
		sess.writeString("-ERR Cannot copy messages: " + errText(err) + "\n")
		return
	}
	if cmd == "MOVE" {
		for _, key := range moved {
			if err := sess.removeMessage(key); err != nil && !isGone(err) {
				sess.log.Warn("smap: move: remove original", "key", key, "err", err)
			}
		}
		sess.noop()
	}
	sess.writeString("+OK Messages copied.\n")
}

// checkCopyQuota refuses a copy that would take the Maildir over its
// quota (messages marked deleted and the Trash do not count, as in
// maildir's own accounting).
func (sess *session) checkCopyQuota(set []msgRange, dst *maildir.Folder, toShared bool) error {
	if toShared {
		// The sharable maildir's own quota, if any, applies as each
		// message is copied; the user's does not (Courier's README).
		return nil
	}
	limit, used, err := sess.md.Quota()
	if err != nil || limit.Bytes == 0 && limit.Messages == 0 || dst.Name() == "Trash" {
		return nil
	}
	var bytes, count int64
	sess.cur.each(set, func(i int) error {
		m := &sess.cur.msgs[i]
		if !strings.ContainsRune(m.flags, maildir.FlagTrashed) {
			bytes += m.size
			count++
		}
		return nil
	})
	if count == 0 {
		return nil
	}
	if limit.Bytes > 0 && used.Bytes+bytes > limit.Bytes || limit.Messages > 0 && used.Messages+count > limit.Messages {
		return maildir.ErrOverQuota
	}
	return nil
}
