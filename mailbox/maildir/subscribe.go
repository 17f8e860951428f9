package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// Subscriptions live in courierimapsubscribed in the maildir root, one
// folder name per line, as Courier-IMAP keeps them. Names are stored as the
// caller gives them; Courier itself writes the IMAP names ("INBOX.Sent"),
// so an IMAP layer sharing a Courier installation should pass those.

// maxSubscribedFile bounds the file on read.
const maxSubscribedFile = 4 << 20

// Subscriptions returns the subscribed names in file order, without
// duplicates. A missing file means no subscriptions.
func (m *Maildir) Subscriptions() ([]string, error) {
	data, err := readBounded(filepath.Join(m.root, subscribedName), maxSubscribedFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("maildir %s: subscriptions: %w", m.root, err)
	}
	var out []string
	seen := make(map[string]bool)
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	return out, nil
}

// Subscribe adds (on) or removes (!on) a name. The file is rewritten
// atomically under an flock, so concurrent sessions do not lose each
// other's changes. Subscribing a folder that does not exist is allowed
// (RFC 3501 6.3.6).
func (m *Maildir) Subscribe(name string, on bool) error {
	if name == "" || len(name) > 1024 || strings.ContainsAny(name, "\r\n\x00") {
		return fmt.Errorf("maildir %s: subscribe %.40q: %w", m.root, name, ErrBadSubscription)
	}
	unlock, err := lockFile(filepath.Join(m.root, subscribedLock))
	if err != nil {
		return fmt.Errorf("maildir %s: subscribe: %w", m.root, err)
	}
	defer unlock()
	names, err := m.Subscriptions()
	if err != nil {
		return err
	}
	has := slices.Contains(names, name)
	switch {
	case on && has, !on && !has:
		return nil
	case on:
		names = append(names, name)
	default:
		names = slices.DeleteFunc(names, func(n string) bool { return n == name })
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	if err := writeFileAtomic(filepath.Join(m.root, subscribedName), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("maildir %s: subscribe: %w", m.root, err)
	}
	return nil
}
