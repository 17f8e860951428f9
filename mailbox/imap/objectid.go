package imap

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/mailbox/maildir"
)

// OBJECTID (RFC 8474) and SAVEDATE (RFC 8514): identifiers and a date
// that the server derives for mailboxes and messages.
//
//   - MAILBOXID is random, kept in a small file in the folder's directory
//     (mailboxIDFileName). A RENAME moves the directory and so keeps it;
//     DELETE takes it away and a new CREATE of the same name gets a new
//     one, as RFC 8474 4.1 requires. Courier keeps nothing similar and
//     leaves the file alone, as it does the other servers' state files.
//   - EMAILID is a digest of the message file: the same for a message
//     and its copies (COPY links or copies the file unchanged; RFC 8474
//     5.1 lets identical messages share one), different for different
//     content, and the same in every process that reads the Maildir.
//   - THREADID names the first message of the thread: the first
//     Message-ID of References, else In-Reply-To, else the message's own
//     Message-ID (the root of a thread is its own root), else the message
//     alone. Messages whose parent chain is broken get separate threads.
//   - SAVEDATE is when the file was delivered or copied into the folder:
//     the time its unique name starts with (Maildir names begin with the
//     delivery's Unix time, COPY gives the copy a new name), else the
//     file's inode change time.

// mailboxIDFileName holds a folder's MAILBOXID, one line.
const mailboxIDFileName = maildir.MailboxIDFile

// maxObjectID is the longest objectid RFC 8474 allows (section 7).
const maxObjectID = 255

// validObjectID reports whether s is an objectid: 1*255(ALPHA / DIGIT /
// "_" / "-") (RFC 8474 7).
func validObjectID(s string) bool {
	if s == "" || len(s) > maxObjectID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// mailboxID returns the MAILBOXID of the folder in dir, creating it at the
// first use. Two processes creating it at once agree: the new id is linked
// into place, and the loser reads the winner's.
func mailboxID(dir string) (string, error) {
	path := filepath.Join(dir, mailboxIDFileName)
	id, err := readMailboxID(path)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on Linux
	id = "F" + hex.EncodeToString(rnd[:])
	tmp, err := os.CreateTemp(dir, ".postern-mailboxid-*")
	if err != nil {
		return "", fmt.Errorf("imap: mailbox id in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(id + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("imap: mailbox id in %s: %w", dir, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMailboxID(path)
		}
		return "", fmt.Errorf("imap: mailbox id in %s: %w", dir, err)
	}
	return id, nil
}

// readMailboxID reads and checks a MAILBOXID file.
func readMailboxID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !validObjectID(id) {
		return "", fmt.Errorf("imap: mailbox id %s: not an objectid", path)
	}
	return id, nil
}

// derivedValues are computed once per message file (see folderIndex.derived).
type derivedValues struct {
	emailID string
	preview *string // nil: not computed yet
}

// maxDerived bounds folderIndex.derived; past it the cache starts over.
const maxDerived = 100_000

// cachedDerived returns what is cached for key.
func (ix *folderIndex) cachedDerived(key string) derivedValues {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.derived[key]
}

// updateDerived changes the cached values of key.
func (ix *folderIndex) updateDerived(key string, change func(*derivedValues)) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.derived == nil || len(ix.derived) >= maxDerived {
		ix.derived = map[string]derivedValues{}
	}
	v := ix.derived[key]
	change(&v)
	ix.derived[key] = v
}

// emailID is m's EMAILID: "M" and 24 hex digits of the SHA-256 of the
// message file. ErrNoMessage when the message is gone.
func (s *session) emailID(m *viewMessage) (string, error) {
	ix := s.sel.index
	if id := ix.cachedDerived(m.key).emailID; id != "" {
		return id, nil
	}
	f, err := s.sel.folder.Open(m.key)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("imap: email id of message %d: %w", m.uid, err)
	}
	id := "M" + hex.EncodeToString(h.Sum(nil)[:12])
	ix.updateDerived(m.key, func(v *derivedValues) { v.emailID = id })
	return id, nil
}

// threadID is m's THREADID ("T" and a digest of the thread's root
// Message-ID), from the header fields the folder index keeps.
func (s *session) threadID(m *viewMessage) (string, error) {
	hdrs := s.sel.index.headers([]uint32{m.uid}, s.sel.folder.Open)
	var root string
	if h := hdrs[m.uid]; h != nil {
		root = threadRoot(h)
	}
	if root == "" {
		// No Message-ID anywhere: a thread of its own, named by content.
		id, err := s.emailID(m)
		if err != nil {
			return "", err
		}
		root = id
	}
	sum := sha256.Sum256([]byte(root))
	return "T" + hex.EncodeToString(sum[:12]), nil
}

// threadRoot is the Message-ID that names h's thread, or "".
func threadRoot(h *indexHeaders) string {
	for _, v := range []string{h.references, h.inReplyTo, h.messageID} {
		if id := firstMessageID(v); id != "" {
			return id
		}
	}
	return ""
}

// firstMessageID returns the first "<...>" of a header value.
func firstMessageID(v string) string {
	start := strings.IndexByte(v, '<')
	if start < 0 {
		return ""
	}
	end := strings.IndexByte(v[start:], '>')
	if end < 2 {
		return ""
	}
	return v[start : start+end+1]
}

// saveDate is m's SAVEDATE (RFC 8514): the delivery time in its unique
// name, else the inode change time of its file (a link or a copy into the
// folder sets it); the zero time when the message is gone.
func (s *session) saveDate(m *viewMessage) time.Time {
	if t, ok := nameTime(m.key); ok {
		return t
	}
	file, err := s.sel.folder.Open(m.key)
	if err != nil {
		return time.Time{}
	}
	defer file.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(file.Fd()), &st); err != nil {
		return time.Time{}
	}
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
}

// nameTime reads the Unix time a Maildir unique name starts with
// ("1700000000.M..."); names from other schemes give false.
func nameTime(key string) (time.Time, bool) {
	dot := strings.IndexByte(key, '.')
	if dot < 9 || dot > 11 {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(key[:dot], 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}

// mailboxIDOf is mailboxID for responses: the folder's MAILBOXID, or "" (and a log line) when it cannot be had.
func (s *session) mailboxIDOf(f *maildir.Folder) string {
	id, err := mailboxID(f.Path())
	if err != nil {
		s.log.Warn("imap: no mailbox id", "folder", f.Path(), "err", err)
		return ""
	}
	return id
}

// objectID is the EMAILID or THREADID (by FETCH item name) of m.
func (s *session) objectID(name string, m *viewMessage) (string, error) {
	if name == "EMAILID" {
		return s.emailID(m)
	}
	return s.threadID(m)
}
