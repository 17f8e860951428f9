package imap

import (
	"slices"
	"strings"

	"postern/mailbox/maildir"
)

// System flags and their Maildir info letters (RFC 3501 2.3.2, maildir(5)).
// "P" (passed) has no IMAP system flag; it is kept untouched.
var systemFlags = [...]struct {
	name   string
	letter byte
}{
	{`\Answered`, maildir.FlagReplied},
	{`\Flagged`, maildir.FlagFlagged},
	{`\Deleted`, maildir.FlagTrashed},
	{`\Seen`, maildir.FlagSeen},
	{`\Draft`, maildir.FlagDraft},
}

const maxKeywordsPerCommand = 64

// flagSet is a parsed flag list: info letters and keywords.
type flagSet struct {
	letters  string
	keywords []string
}

// parseFlagNames splits flag names from a command into letters and
// keywords. \Recent is accepted and ignored (clients may not set it);
// unknown system flags are a syntax error (RFC 3501 9, flag-extension is
// reserved).
func parseFlagNames(names []string) (flagSet, error) {
	var fs flagSet
	var letters []byte
	for _, n := range names {
		if strings.HasPrefix(n, `\`) {
			if strings.EqualFold(n, `\Recent`) {
				continue
			}
			found := false
			for _, f := range systemFlags {
				if strings.EqualFold(n, f.name) {
					letters = append(letters, f.letter)
					found = true
					break
				}
			}
			if !found {
				return fs, syntaxErr("unknown system flag %s", truncate(n, 40))
			}
			continue
		}
		if !slices.Contains(fs.keywords, n) {
			fs.keywords = append(fs.keywords, n)
		}
	}
	if len(fs.keywords) > maxKeywordsPerCommand {
		return fs, syntaxErr("too many keywords")
	}
	fs.letters = sortLetters(letters)
	slices.Sort(fs.keywords)
	return fs, nil
}

func sortLetters(b []byte) string {
	slices.Sort(b)
	return string(slices.Compact(b))
}

// unionLetters, minusLetters: flag letter set arithmetic.
func unionLetters(a, b string) string { return sortLetters([]byte(a + b)) }

func minusLetters(a, b string) string {
	var out []byte
	for i := 0; i < len(a); i++ {
		if strings.IndexByte(b, a[i]) < 0 {
			out = append(out, a[i])
		}
	}
	return string(out)
}

func unionKeywords(a, b []string) []string {
	out := slices.Clone(a)
	for _, k := range b {
		if !containsFold(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func minusKeywords(a, b []string) []string {
	var out []string
	for _, k := range a {
		if !containsFold(b, k) {
			out = append(out, k)
		}
	}
	return out
}

// containsFold: keywords compare case-insensitively (RFC 3501 2.3.2 makes
// flag names case-insensitive).
func containsFold(list []string, k string) bool {
	for _, x := range list {
		if strings.EqualFold(x, k) {
			return true
		}
	}
	return false
}

// appendFlags writes "(\Seen \Deleted kw ...)" for a message.
func appendFlags(b []byte, letters string, keywords []string, recent bool) []byte {
	b = append(b, '(')
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ' ')
		}
		n++
	}
	for _, f := range systemFlags {
		if strings.IndexByte(letters, f.letter) >= 0 {
			sep()
			b = append(b, f.name...)
		}
	}
	if recent {
		sep()
		b = append(b, `\Recent`...)
	}
	for _, k := range keywords {
		sep()
		b = append(b, k...)
	}
	return append(b, ')')
}

// imapLetters keeps only the letters IMAP shows, for change detection.
func sameFlags(aLetters string, aKw []string, bLetters string, bKw []string) bool {
	return aLetters == bLetters && slices.Equal(aKw, bKw)
}
