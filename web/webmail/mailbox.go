package webmail

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// folderInfo is one folder in the lists.
type folderInfo struct {
	Name    string // Maildir++ name on disk ("INBOX", "Work.2024")
	Display string // UTF-8, levels separated by "."
	Leaf    string // the last level
	Depth   int
	Unread  int
	Total   int
	Special bool // cannot be renamed or deleted
}

// folderList lists the folders with their counts. A folder that cannot be
// read shows with no counts rather than failing the page.
func (h *Handler) folderList(md *maildir.Maildir) []folderInfo {
	names, err := md.Folders()
	if err != nil {
		h.log.Warn("webmail: list folders", "maildir", md.Root(), "err", err)
		names = []string{maildir.Inbox}
	}
	out := make([]folderInfo, 0, len(names))
	for _, n := range names {
		fi := folderInfo{Name: n, Display: displayName(n), Leaf: leafName(n), Depth: depth(n), Special: protectedFolders[n]}
		if f, err := md.Folder(n); err == nil {
			if snap, err := f.Sync(false); err == nil {
				fi.Total = len(snap.Messages)
				for i := range snap.Messages {
					if unread(&snap.Messages[i]) {
						fi.Unread++
					}
				}
			}
		}
		out = append(out, fi)
	}
	// A subfolder sits one level below its parent; one whose parent is not
	// a folder shows its whole name at the top, not only its last level
	// under someone else's.
	depthOf := make(map[string]int, len(out))
	for i, fi := range out {
		if j := strings.LastIndexByte(fi.Name, '.'); j > 0 && fi.Name != maildir.Inbox {
			if d, ok := depthOf[fi.Name[:j]]; ok {
				out[i].Depth = d + 1
			} else {
				out[i].Leaf, out[i].Depth = fi.Display, 0
			}
		}
		depthOf[fi.Name] = out[i].Depth
	}
	return out
}

func unread(m *maildir.Message) bool { return !strings.ContainsRune(m.Flags, maildir.FlagSeen) }

func hasFlag(m *maildir.Message, f rune) bool { return strings.ContainsRune(m.Flags, f) }

// withFlag returns flags with f set or cleared, sorted as maildir keeps them.
func withFlag(flags string, f rune, on bool) string {
	b := []byte(strings.ReplaceAll(flags, string(f), ""))
	if on {
		b = append(b, byte(f))
		slices.Sort(b)
	}
	return string(b)
}

// findUID returns the message with uid in snap, or nil.
func findUID(snap *maildir.Snapshot, uid uint32) *maildir.Message {
	i, ok := slices.BinarySearchFunc(snap.Messages, uid, func(m maildir.Message, uid uint32) int {
		switch {
		case m.UID < uid:
			return -1
		case m.UID > uid:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &snap.Messages[i]
}

// parseUID reads a message number from a request.
func parseUID(s string) (uint32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil && n > 0
}

type quotaInfo struct {
	Text    string
	Percent int
}

// quotaOf describes the Maildir's quota use, or nil when it has none.
func quotaOf(md *maildir.Maildir) *quotaInfo {
	limit, used, err := md.Quota()
	if err != nil || limit.IsZero() {
		return nil
	}
	var parts []string
	if limit.Bytes > 0 {
		parts = append(parts, fmt.Sprintf("%s of %s", humanSize(used.Bytes), humanSize(limit.Bytes)))
	}
	if limit.Messages > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d messages", used.Messages, limit.Messages))
	}
	return &quotaInfo{Text: strings.Join(parts, ", "), Percent: min(limit.Percent(used), 100)}
}

func humanSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.0f KB", float64(n)/1024)
	case n < 1024*1024*1024:
		return fmt.Sprintf("%.1f MB", float64(n)/(1024*1024))
	}
	return fmt.Sprintf("%.1f GB", float64(n)/(1024*1024*1024))
}

func itoa(n int) string     { return strconv.Itoa(n) }
func utoa(n uint32) string  { return strconv.FormatUint(uint64(n), 10) }
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// summary is what a message list shows of a message, from its header.
type summary struct {
	From     string // the sender's name, else address
	FromAddr string
	To       string
	Subject  string
	Date     time.Time // the Date field; zero when missing or unreadable
}

// summaryHeaderLimit is how much of a message is read for its summary:
// the header rarely runs longer, and what lies beyond is not needed.
const summaryHeaderLimit = 64 << 10

// summaryCache remembers summaries by folder and message key: a message's
// content never changes in a Maildir, so an entry never goes stale.
type summaryCache struct {
	mu sync.Mutex
	m  map[string]*summary
}

const maxSummaries = 200000

func (c *summaryCache) get(f *maildir.Folder, m *maildir.Message) *summary {
	k := f.Path() + "\x00" + m.Key
	c.mu.Lock()
	s := c.m[k]
	c.mu.Unlock()
	if s != nil {
		return s
	}
	s = readSummary(f, m.Key)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSummaries {
		c.m = make(map[string]*summary)
	}
	c.m[k] = s
	c.mu.Unlock()
	return s
}

func readSummary(f *maildir.Folder, key string) *summary {
	buf, err := f.ReadMessage(key, nil, summaryHeaderLimit)
	if err != nil {
		return &summary{}
	}
	return summaryOf(buf)
}

// summaryOf reads the header at the start of msg.
func summaryOf(msg []byte) *summary {
	end := headerEnd(msg)
	hd, err := mime.ParseHeader(bytes.NewReader(msg), 0, int64(end))
	if err != nil {
		return &summary{}
	}
	s := &summary{Subject: clean(mime.DecodeHeaderValue(hd.Get("Subject")))}
	if from := mime.ParseAddressList(hd.Get("From")); len(from) > 0 {
		for _, a := range from {
			if a.Group {
				continue
			}
			s.FromAddr = clean(addrSpec(a))
			s.From = clean(a.Name)
			if s.From == "" {
				s.From = s.FromAddr
			}
			break
		}
	}
	s.To = clean(mime.DecodeHeaderValue(hd.Get("To")))
	if d, ok := mime.ParseDate(hd.Get("Date")); ok {
		s.Date = d
	}
	return s
}

// headerEnd is the offset of the blank line that ends the header, or
// len(msg) when there is none.
func headerEnd(msg []byte) int {
	if bytes.HasPrefix(msg, []byte("\n")) || bytes.HasPrefix(msg, []byte("\r\n")) {
		return 0
	}
	i := bytes.Index(msg, []byte("\n\n"))
	j := bytes.Index(msg, []byte("\n\r\n"))
	switch {
	case i < 0 && j < 0:
		return len(msg)
	case i < 0 || (j >= 0 && j < i):
		return j + 1
	}
	return i + 1
}

func addrSpec(a mime.Address) string {
	if a.Host == "" || a.Host == mime.MissingDomain {
		return a.Mailbox
	}
	return a.Mailbox + "@" + a.Host
}

// formatAddress shows an address as "Name <box@host>".
func formatAddress(a mime.Address) string {
	spec := clean(addrSpec(a))
	if a.Name == "" {
		return spec
	}
	return clean(a.Name) + " <" + spec + ">"
}

// showDate writes a date for a list: the time today, else the day.
func showDate(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	lt := t.In(now.Location())
	if lt.Year() == now.Year() && lt.YearDay() == now.YearDay() {
		return lt.Format("15:04")
	}
	if lt.Year() == now.Year() {
		return lt.Format("Jan 2")
	}
	return lt.Format("2006-01-02")
}
