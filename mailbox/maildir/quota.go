package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Maildir++ quota (Courier's maildirquota(7) and README.maildirquota).
// maildirsize in the maildir root holds the limit on its first line
// ("10000000S,1000C") and then lines of "bytes count" deltas: every
// delivery appends "+size 1", every removal "-size -1". The sum is the
// usage. The file is a cache: it is rebuilt from the messages (sizes from
// ",S=" in the names) when it reaches 5120 bytes, when a total goes
// negative, and when a delivery would exceed the quota and the file has
// more than one usage line or is older than 15 minutes — so space freed
// behind its back (a shell rm, another client) is eventually noticed.
// Like Courier we leave out the Trash folder and messages flagged T.

const (
	trashFolder           = "Trash"
	maildirsizeRecalcSize = 5120
	maildirsizeStale      = 15 * time.Minute
)

// ParseQuota parses a Maildir++ quota: "5000000S", "1000C" or
// "5000000S,1000C" (in either order). Anything else — an empty string,
// unknown letters, signs, repeated parts, overflow — is ErrBadQuota.
func ParseQuota(s string) (Quota, error) {
	var q Quota
	s = strings.TrimSpace(s)
	if s == "" {
		return q, fmt.Errorf("quota %q: empty: %w", s, ErrBadQuota)
	}
	var haveS, haveC bool
	for _, part := range strings.Split(s, ",") {
		if len(part) < 2 {
			return Quota{}, fmt.Errorf("quota %q: part %q: %w", s, part, ErrBadQuota)
		}
		digits, kind := part[:len(part)-1], part[len(part)-1]
		for i := 0; i < len(digits); i++ {
			if digits[i] < '0' || digits[i] > '9' {
				return Quota{}, fmt.Errorf("quota %q: %q is not a number: %w", s, digits, ErrBadQuota)
			}
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return Quota{}, fmt.Errorf("quota %q: %q out of range: %w", s, digits, ErrBadQuota)
		}
		switch {
		case kind == 'S' && !haveS:
			q.Bytes, haveS = n, true
		case kind == 'C' && !haveC:
			q.Messages, haveC = n, true
		default:
			return Quota{}, fmt.Errorf("quota %q: part %q: want NNNS or NNNC, each once: %w", s, part, ErrBadQuota)
		}
	}
	return q, nil
}

// String formats the quota as maildirsize's first line: "10000000S,1000C",
// leaving out a zero (unlimited) part; the zero Quota is "".
func (q Quota) String() string {
	var parts []string
	if q.Bytes > 0 {
		parts = append(parts, strconv.FormatInt(q.Bytes, 10)+"S")
	}
	if q.Messages > 0 {
		parts = append(parts, strconv.FormatInt(q.Messages, 10)+"C")
	}
	return strings.Join(parts, ",")
}

// IsZero reports whether the quota sets no limit.
func (q Quota) IsZero() bool { return q.Bytes <= 0 && q.Messages <= 0 }

// exceeds reports whether usage is over the limit in either dimension.
func (q Quota) exceeds(used Quota) bool {
	return (q.Bytes > 0 && used.Bytes > q.Bytes) || (q.Messages > 0 && used.Messages > q.Messages)
}

// Percent is the larger of the two usage percentages (Courier's rule for
// deliverquota -w); 0 when there is no limit.
func (q Quota) Percent(used Quota) int {
	p := 0
	if q.Bytes > 0 {
		p = max(p, int(used.Bytes*100/q.Bytes))
	}
	if q.Messages > 0 {
		p = max(p, int(used.Messages*100/q.Messages))
	}
	return p
}

// maildirsize is what one read of the file found.
type maildirsize struct {
	limit      Quota
	used       Quota
	lines      int // usage lines after the first
	mtime      time.Time
	needRecalc bool
}

// parseMaildirsize parses the file's content. Usage lines that do not
// parse are skipped, as Courier does; only the first 5120 bytes are read
// and a file of that size or more asks for recalculation.
func parseMaildirsize(data []byte) maildirsize {
	var ms maildirsize
	if len(data) >= maildirsizeRecalcSize {
		data = data[:maildirsizeRecalcSize]
		ms.needRecalc = true
	}
	first, rest, _ := bytes.Cut(data, []byte("\n"))
	ms.limit = parseQuotaLenient(string(first))
	if ms.needRecalc {
		return ms
	}
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) != 2 {
			continue
		}
		b, err1 := strconv.ParseInt(fields[0], 10, 64)
		c, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ms.used.Bytes += b
		ms.used.Messages += c
		ms.lines++
	}
	if ms.used.Bytes < 0 || ms.used.Messages < 0 {
		ms.needRecalc = true
	}
	return ms
}

// parseQuotaLenient reads a first line another program wrote: strict
// parsing first, else every "NNNS"/"NNNC" found, else no limit.
func parseQuotaLenient(s string) Quota {
	if q, err := ParseQuota(s); err == nil {
		return q
	}
	var q Quota
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if p, err := ParseQuota(part); err == nil {
			if p.Bytes > 0 {
				q.Bytes = p.Bytes
			}
			if p.Messages > 0 {
				q.Messages = p.Messages
			}
		}
	}
	return q
}

func (m *Maildir) maildirsizePath() string { return filepath.Join(m.root, maildirsizeName) }

// readMaildirsize returns nil when the maildir has no quota file.
func (m *Maildir) readMaildirsize() (*maildirsize, error) {
	file, err := os.Open(m.maildirsizePath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	buf := make([]byte, maildirsizeRecalcSize)
	n, err := file.ReadAt(buf, 0)
	if err != nil && n == 0 && st.Size() > 0 {
		return nil, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	ms := parseMaildirsize(buf[:n])
	if st.Size() >= maildirsizeRecalcSize {
		ms.needRecalc = true
	}
	ms.mtime = st.ModTime()
	return &ms, nil
}

// countUsage adds up the messages of INBOX and every folder except Trash,
// leaving out messages flagged T, sizes from ",S=" else stat.
func (m *Maildir) countUsage() (Quota, error) {
	var used Quota
	dirs := []string{m.root}
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return used, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	for _, e := range entries {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || n == ".." || n == "."+trashFolder || !e.IsDir() {
			continue // symlinks are not followed, as Courier skips DT_LNK
		}
		dirs = append(dirs, filepath.Join(m.root, n))
	}
	for _, d := range dirs {
		b, c := sumMessages(d)
		used.Bytes += b
		used.Messages += c
	}
	return used, nil
}

// sumMessages adds up one folder's new/ and cur/.
func sumMessages(dir string) (bytes, count int64) {
	for _, sub := range []string{"new", "cur"} {
		names, err := readNames(filepath.Join(dir, sub))
		if err != nil {
			continue
		}
		for _, n := range names {
			key, info := splitName(n)
			if flags, _ := parseInfo(info); strings.IndexByte(flags, FlagTrashed) >= 0 {
				continue
			}
			size := sizeField(key, 'S')
			if size < 0 {
				st, err := os.Stat(filepath.Join(dir, sub, n))
				if err != nil {
					continue
				}
				size = st.Size()
			}
			bytes += size
			count++
		}
	}
	return bytes, count
}

// recalculate rebuilds maildirsize with the given limit from the messages
// on disk: written under tmp/, fsync'd, renamed over the old file.
func (m *Maildir) recalculate(limit Quota) (Quota, error) {
	used, err := m.countUsage()
	if err != nil {
		return used, err
	}
	content := fmt.Sprintf("%s\n%12d %12d\n", limit.String(), used.Bytes, used.Messages)
	tmp := filepath.Join(m.root, "tmp", fmt.Sprintf("%d.%d_NeWmAiLdIrSiZe.%s", time.Now().Unix(), m.pid, m.hostname))
	// fsync before the rename: a crash must not leave an empty
	// maildirsize, which would silently lift the limit.
	if _, err := writeSynced(tmp, strings.NewReader(content)); err != nil {
		return used, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	// Mode 0644, as Courier's maildirmake -q and deliverquota leave it.
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return used, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	// Root writing for an account (OpenAs): the account's own deliveries
	// (maildrop, deliverquota run as the user) must still update it.
	if m.reader != nil {
		if err := os.Chown(tmp, m.reader.UID, m.reader.GID); err != nil {
			os.Remove(tmp)
			return used, fmt.Errorf("maildir %s: quota: %w", m.root, err)
		}
	}
	if err := os.Rename(tmp, m.maildirsizePath()); err != nil {
		os.Remove(tmp)
		return used, fmt.Errorf("maildir %s: quota: %w", m.root, err)
	}
	m.log.Debug("maildir: quota recalculated", "maildir", m.root, "bytes", used.Bytes, "messages", used.Messages)
	return used, nil
}

// checkQuota refuses with ErrOverQuota when adding size bytes and count
// messages would exceed the quota, recalculating per Courier's rules first.
func (m *Maildir) checkQuota(size, count int64) error {
	_, err := m.checkQuotaFile(size, count)
	return err
}

// checkQuotaFile is checkQuota that also says when the maildir has no
// quota at all (no maildirsize, no default): then there is no usage to add.
func (m *Maildir) checkQuotaFile(size, count int64) (noQuota bool, err error) {
	ms, err := m.readMaildirsize()
	if err != nil {
		return false, err
	}
	if ms == nil {
		if m.defaultQuota.IsZero() {
			return true, nil // no quota on this maildir
		}
		used, err := m.recalculate(m.defaultQuota)
		if err != nil {
			return false, err
		}
		ms = &maildirsize{limit: m.defaultQuota, used: used, lines: 1, mtime: time.Now()}
	}
	if ms.limit.IsZero() {
		return false, nil
	}
	recalculated := false
	if ms.needRecalc {
		used, err := m.recalculate(ms.limit)
		if err != nil {
			return false, err
		}
		ms.used, recalculated = used, true
	}
	after := Quota{Bytes: ms.used.Bytes + size, Messages: ms.used.Messages + count}
	if !ms.limit.exceeds(after) {
		return false, nil
	}
	fresh := ms.lines <= 1 && time.Since(ms.mtime) < maildirsizeStale
	if !recalculated && !fresh {
		used, err := m.recalculate(ms.limit)
		if err != nil {
			return false, err
		}
		after = Quota{Bytes: used.Bytes + size, Messages: used.Messages + count}
		if !ms.limit.exceeds(after) {
			return false, nil
		}
	}
	return false, ErrOverQuota
}

// addQuotaUsage appends a "bytes count" line when the maildir has a
// maildirsize. One write(2) with O_APPEND keeps concurrent lines whole.
// Failure only makes the cache stale, which recalculation repairs, so it
// is logged rather than returned.
func (m *Maildir) addQuotaUsage(bytes, count int64) {
	file, err := os.OpenFile(m.maildirsizePath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("maildir: cannot update maildirsize", "maildir", m.root, "err", err)
		}
		return
	}
	defer file.Close()
	if _, err := fmt.Fprintf(file, "%12d %12d\n", bytes, count); err != nil {
		m.log.Warn("maildir: cannot update maildirsize", "maildir", m.root, "err", err)
	}
}

// SetQuota installs a quota (maildirmake -q): maildirsize is rebuilt with
// q on the first line and the usage recalculated. The zero Quota removes
// maildirsize, leaving the maildir without a quota.
func (m *Maildir) SetQuota(q Quota) error {
	if q.Bytes < 0 || q.Messages < 0 {
		return fmt.Errorf("maildir %s: set quota: %w", m.root, ErrBadQuota)
	}
	if q.IsZero() {
		err := os.Remove(m.maildirsizePath())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir %s: set quota: %w", m.root, err)
		}
		return nil
	}
	_, err := m.recalculate(q)
	return err
}

// RecalculateQuota counts the usage again from the messages and, when the
// Maildir has a quota (maildirsize, or Options.DefaultQuota), rebuilds
// maildirsize with it, whatever Courier's staleness rules would say
// (doveadm quota recalc). Without a quota it only counts.
func (m *Maildir) RecalculateQuota() (limit, used Quota, err error) {
	limit, err = m.QuotaLimit()
	if err != nil {
		return Quota{}, Quota{}, err
	}
	if limit.IsZero() {
		used, err = m.countUsage()
		return limit, used, err
	}
	used, err = m.recalculate(limit)
	return limit, used, err
}

// QuotaLimit returns the Maildir's quota without counting its usage (an
// empty Quota when there is none), so that a caller with nothing to
// check does not list every folder.
func (m *Maildir) QuotaLimit() (Quota, error) {
	ms, err := m.readMaildirsize()
	if err != nil {
		return Quota{}, err
	}
	if ms == nil {
		return m.defaultQuota, nil
	}
	return ms.limit, nil
}

// Quota returns the limit and the usage. Without maildirsize the limit is
// zero (or Options.DefaultQuota) and the usage is counted from the
// messages. The usage is recalculated under the same rules as delivery.
func (m *Maildir) Quota() (limit Quota, used Quota, err error) {
	ms, err := m.readMaildirsize()
	if err != nil {
		return Quota{}, Quota{}, err
	}
	if ms == nil {
		used, err := m.countUsage()
		return m.defaultQuota, used, err
	}
	if ms.needRecalc || (ms.limit.exceeds(ms.used) && (ms.lines > 1 || time.Since(ms.mtime) >= maildirsizeStale)) {
		used, err := m.recalculate(ms.limit)
		return ms.limit, used, err
	}
	return ms.limit, ms.used, nil
}
