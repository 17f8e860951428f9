package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TrashRule is one FOLDER:DAYS of imapemptytrash.
type TrashRule struct {
	Folder string        // a folder name as IMAP shows it without "INBOX.": "Trash", "Sent", "Lists.Old"
	Age    time.Duration // messages whose status changed longer ago are deleted
}

// DefaultEmptyTrash is Courier's shipped IMAP_EMPTYTRASH=Trash:7.
var DefaultEmptyTrash = []TrashRule{{Folder: "Trash", Age: 7 * 24 * time.Hour}}

// maxTrashDays bounds a rule (ten years): a larger number is a typo.
const maxTrashDays = 3650

// ParseEmptyTrash reads Courier's IMAP_EMPTYTRASH value: FOLDER:DAYS
// entries separated by commas (a setting file may also put them on lines
// of their own); "none" (or "no", "off") turns the purge off. A folder is
// named as IMAP shows it without Courier's "INBOX." prefix (which is
// accepted and dropped); INBOX itself is refused, as are names a Maildir++
// folder cannot have.
func ParseEmptyTrash(text string) ([]TrashRule, error) {
	text = strings.TrimSpace(text)
	switch strings.ToLower(text) {
	case "none", "no", "off":
		return []TrashRule{}, nil
	}
	var rules []TrashRule
	seen := map[string]bool{}
	for _, entry := range strings.Split(text, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		i := strings.LastIndexByte(entry, ':')
		if i <= 0 {
			return nil, fmt.Errorf("%q: want FOLDER:DAYS", entry)
		}
		folder, daysText := strings.TrimSpace(entry[:i]), strings.TrimSpace(entry[i+1:])
		if len(folder) > 6 && strings.EqualFold(folder[:6], "INBOX.") {
			folder = folder[6:]
		}
		if err := checkTrashFolder(folder); err != nil {
			return nil, fmt.Errorf("%q: %v", entry, err)
		}
		days, err := strconv.Atoi(daysText)
		if err != nil || days < 1 || days > maxTrashDays {
			return nil, fmt.Errorf("%q: days must be a whole number from 1 to %d", entry, maxTrashDays)
		}
		if seen[strings.ToLower(folder)] {
			return nil, fmt.Errorf("%q: %s is named twice", entry, folder)
		}
		seen[strings.ToLower(folder)] = true
		rules = append(rules, TrashRule{Folder: folder, Age: time.Duration(days) * 24 * time.Hour})
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("no FOLDER:DAYS given (none turns the purge off)")
	}
	return rules, nil
}

func checkTrashFolder(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("no folder")
	case strings.EqualFold(name, "INBOX"):
		return fmt.Errorf("INBOX is never purged")
	case strings.ContainsAny(name, "/\\\x00\r\n\t"), strings.HasPrefix(name, "."), strings.HasSuffix(name, "."),
		strings.Contains(name, ".."):
		return fmt.Errorf("%q is not a folder name", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q is not a folder name", name)
		}
	}
	return nil
}

// emptyTrash reads imapemptytrash: Courier's default when absent.
func (l *loader) emptyTrash(name string) []TrashRule {
	lines := l.lines(name)
	if len(lines) == 0 {
		return DefaultEmptyTrash
	}
	var rules []TrashRule
	seen := map[string]bool{}
	for _, line := range lines {
		r, err := ParseEmptyTrash(line.Text)
		if err == nil && len(r) == 0 && len(lines) > 1 {
			err = fmt.Errorf("none turns the purge off: it cannot stand beside rules")
		}
		for _, rule := range r {
			if err == nil && seen[strings.ToLower(rule.Folder)] {
				err = fmt.Errorf("%s is named twice", rule.Folder)
			}
			seen[strings.ToLower(rule.Folder)] = true
		}
		if err != nil {
			l.fail(line.Errorf("%s: %v", name, err))
			return DefaultEmptyTrash
		}
		rules = append(rules, r...)
	}
	return rules
}
