package pop3

import (
	"errors"
	"strings"
)

// Limits on what a client may send. RFC 2449 section 4 caps a command line at
// 255 octets and RFC 1939 section 3 at 40 per argument, but real clients send
// long SASL responses and passwords, so lines up to maxLineLength are
// accepted; anything longer is refused without being parsed.
const (
	maxLineLength    = 8 << 10 // a longer line is answered -ERR and skipped
	maxDiscardLength = 1 << 20 // a line this long without a newline closes the connection
	maxKeywordLength = 4       // RFC 1939 section 3: keywords are 3 or 4 characters
	maxBadCommands   = 10      // unknown or malformed commands before we hang up
)

// Errors of the command parser.
var (
	errEmptyCommand   = errors.New("empty command")
	errBadKeyword     = errors.New("command keyword is not 3-4 letters")
	errControlInInput = errors.New("command line contains control characters")
)

// command is one parsed client line.
type command struct {
	// Name is the keyword in upper case ("RETR").
	Name string
	// Rest is everything after the keyword and one separating space, with the
	// line ending removed. PASS takes it whole, so passwords may contain
	// spaces (as Courier and Dovecot allow).
	Rest string
	// Args are the space-separated arguments.
	Args []string
}

// parseCommand splits one line (with or without its CRLF) into a command.
// RFC 1939 section 3: a keyword of printable ASCII, case-insensitive,
// followed by arguments separated by single spaces. We accept runs of spaces
// and tabs between arguments, as deployed servers do.
func parseCommand(line string) (command, error) {
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	for i := 0; i < len(line); i++ {
		// NUL, CR, LF and other C0 controls never belong in a command; TAB
		// is tolerated as a separator.
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return command{}, errControlInInput
		}
	}
	line = strings.TrimLeft(line, " \t")
	if line == "" {
		return command{}, errEmptyCommand
	}
	name, rest, _ := strings.Cut(line, " ")
	if i := strings.IndexByte(name, '\t'); i >= 0 {
		name, rest = line[:i], line[i+1:]
	}
	if len(name) < 3 || len(name) > maxKeywordLength {
		return command{}, errBadKeyword
	}
	for i := 0; i < len(name); i++ {
		c := name[i] | 0x20
		if c < 'a' || c > 'z' {
			return command{}, errBadKeyword
		}
	}
	return command{
		Name: strings.ToUpper(name),
		Rest: rest,
		Args: strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == '\t' }),
	}, nil
}

// parseNumber reads a message number or line count: decimal digits only, no
// sign, at most nine digits so it always fits an int.
func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
