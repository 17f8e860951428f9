// Package userdb is Postern's own account database in Courier's userdb
// format, and the auth.Module that reads it.
//
// It owns three things: the text source (Courier's makeuserdb(8) format, a
// file or a directory of files), its compiled form (a bbolt file written
// atomically by Compile), and DB, the module that answers lookups and logins
// from the compiled file and picks up a recompiled file without a restart.
//
// Source format, one account per line:
//
//	name<TAB>field=value|field=value|...
//
// Blank lines and lines starting with "#" are ignored, and so are Courier's
// "uid=<TAB>name" lines (a system uid mapped back to its account, as
// pw2userdb writes them) once checked. The name is matched
// exactly (no case folding, no domain defaulting): "alice@example.test" and
// "Alice@example.test" are two accounts. "|" separates fields and nothing is
// escaped, as in Courier, so a value cannot contain "|"; a value may contain
// "=" (only the first "=" of a field splits it).
package userdb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Limits on the source, so a damaged file cannot exhaust memory.
const (
	// MaxLineLen bounds one source line.
	MaxLineLen = 64 * 1024
	// MaxNameLen bounds an account name.
	MaxNameLen = 512
)

// Well-known field names (makeuserdb(8)).
const (
	FieldUID      = "uid"
	FieldGID      = "gid"
	FieldHome     = "home"
	FieldShell    = "shell"
	FieldMail     = "mail"     // the Maildir; relative paths are under home
	FieldSystemPW = "systempw" // crypt-style hash used for every service...
	FieldQuota    = "quota"    // Maildir++ quota, "10000000S,1000C"
	FieldGecos    = "gecos"
	FieldOptions  = "options" // comma-separated name=value account options
	// ...unless SERVICE + "pw" (imappw, pop3pw, smtppw, webmailpw; Courier's
	// esmtppw for smtp) is present: that one wins for its service.
	PasswordFieldSuffix = "pw"
)

// ErrSource is wrapped by every SourceError, for errors.Is.
var ErrSource = errors.New("userdb: bad source")

// SourceError is a refused source line: it prints as "FILE:LINE: reason".
type SourceError struct {
	File   string
	Line   int
	Reason string
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Unwrap lets errors.Is(err, ErrSource) work.
func (e *SourceError) Unwrap() error { return ErrSource }

// Entry is one account line of the source.
type Entry struct {
	Name   string
	Fields map[string]string
	// File and Line say where the entry was read (empty/0 when built in code).
	File string
	Line int
}

// Location is "FILE:LINE" of the entry.
func (e *Entry) Location() string { return fmt.Sprintf("%s:%d", e.File, e.Line) }

// canonicalOrder is the order Format writes fields in; the rest follow sorted.
var canonicalOrder = []string{FieldUID, FieldGID, FieldHome, FieldShell, FieldMail, FieldQuota, FieldGecos, FieldOptions, FieldSystemPW}

// Format renders the entry as one source line without the newline, fields in
// a stable order. It fails if a value cannot be written in the format (it
// holds "|", a newline or a TAB) or the entry is invalid.
func (e *Entry) Format() (string, error) {
	if err := checkName(e.Name); err != nil {
		return "", err
	}
	if err := validateFields(e.Fields); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteByte('\t')
	first := true
	for _, k := range sortedFieldNames(e.Fields) {
		v := e.Fields[k]
		if err := checkFieldName(k); err != nil {
			return "", err
		}
		if strings.ContainsAny(v, "|\n\r\t") || strings.ContainsRune(v, 0) {
			return "", fmt.Errorf("field %s: value may not contain '|', TAB, CR, LF or NUL", k)
		}
		if !first {
			b.WriteByte('|')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	return b.String(), nil
}

func sortedFieldNames(fields map[string]string) []string {
	names := make([]string, 0, len(fields))
	for _, k := range canonicalOrder {
		if _, ok := fields[k]; ok {
			names = append(names, k)
		}
	}
	rest := make([]string, 0, len(fields))
	for k := range fields {
		if !isCanonical(k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

func isCanonical(k string) bool {
	for _, c := range canonicalOrder {
		if c == k {
			return true
		}
	}
	return false
}

// ParseLine parses one source line. It returns ok=false, err=nil for blank
// and comment lines. Errors carry the reason only; ParseSource adds FILE:LINE.
func ParseLine(line string) (e Entry, ok bool, err error) {
	line = strings.TrimSuffix(line, "\r")
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
		return Entry{}, false, nil
	}
	name, rest, found := strings.Cut(line, "\t")
	if !found {
		return Entry{}, false, errors.New("missing TAB between name and fields")
	}
	if isUIDMap(name) {
		// Courier's "uid=<TAB>name" line (pw2userdb writes one per
		// account) maps a system uid back to its account. Postern looks
		// accounts up by name only: the line is checked and skipped.
		if err := checkName(rest); err != nil {
			return Entry{}, false, fmt.Errorf("uid line %s: %w", name, err)
		}
		return Entry{}, false, nil
	}
	if err := checkName(name); err != nil {
		return Entry{}, false, err
	}
	fields := make(map[string]string)
	for _, item := range strings.Split(rest, "|") {
		if item == "" {
			continue // tolerate "a=1||b=2" and a trailing "|"
		}
		k, v, found := strings.Cut(item, "=")
		if !found {
			return Entry{}, false, fmt.Errorf("field %q has no '='", truncate(item))
		}
		if err := checkFieldName(k); err != nil {
			return Entry{}, false, err
		}
		if _, dup := fields[k]; dup {
			return Entry{}, false, fmt.Errorf("field %s given twice", k)
		}
		if strings.ContainsAny(v, "\t\n\r") || strings.ContainsRune(v, 0) {
			return Entry{}, false, fmt.Errorf("field %s: value contains a TAB, CR, LF or NUL", k)
		}
		fields[k] = v
	}
	if err := validateFields(fields); err != nil {
		return Entry{}, false, err
	}
	return Entry{Name: name, Fields: fields}, true, nil
}

// isUIDMap reports whether name is the key of Courier's uid-to-account
// line: decimal digits and "=", as "1000=".
func isUIDMap(name string) bool {
	digits, ok := strings.CutSuffix(name, "=")
	_, err := strconv.ParseUint(digits, 10, 32)
	return ok && err == nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty account name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("account name longer than %d bytes", MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("account name %q contains a space, control character or invalid UTF-8", truncate(name))
		}
	}
	return nil
}

func checkFieldName(k string) error {
	if k == "" {
		return errors.New("empty field name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("field name %q: only letters, digits, '-', '_' and '.' are allowed", truncate(k))
		}
	}
	return nil
}

// validateFields checks what every account needs and what must parse.
func validateFields(f map[string]string) error {
	for _, req := range []string{FieldUID, FieldGID, FieldHome} {
		if _, ok := f[req]; !ok {
			return fmt.Errorf("required field %s is missing", req)
		}
	}
	for _, k := range []string{FieldUID, FieldGID} {
		if _, err := parseID(f[k]); err != nil {
			return fmt.Errorf("field %s: %w", k, err)
		}
	}
	if !filepath.IsAbs(f[FieldHome]) {
		return fmt.Errorf("field home: %q is not an absolute path", truncate(f[FieldHome]))
	}
	if q, ok := f[FieldQuota]; ok && q != "" {
		if err := checkQuota(q); err != nil {
			return err
		}
	}
	if o, ok := f[FieldOptions]; ok {
		if _, err := ParseOptions(o); err != nil {
			return err
		}
	}
	return nil
}

// parseID reads a uid or gid: a decimal number that fits a 32-bit uid_t.
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number from 0 to 4294967295", truncate(s))
	}
	return int(n), nil
}

// checkQuota accepts Courier's Maildir++ quota: comma-separated NUMBER
// followed by S (bytes) or C (messages).
func checkQuota(q string) error {
	for _, part := range strings.Split(q, ",") {
		if len(part) < 2 || (part[len(part)-1] != 'S' && part[len(part)-1] != 'C') {
			return fmt.Errorf("field quota: %q is not like 10000000S,1000C", truncate(q))
		}
		if _, err := strconv.ParseUint(part[:len(part)-1], 10, 63); err != nil {
			return fmt.Errorf("field quota: %q is not like 10000000S,1000C", truncate(q))
		}
	}
	return nil
}

// ParseOptions splits an options field: "disableimap=1,wbnochangepass=1".
func ParseOptions(s string) (map[string]string, error) {
	opts := make(map[string]string)
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, found := strings.Cut(item, "=")
		if !found || k == "" {
			return nil, fmt.Errorf("field options: %q is not name=value", truncate(item))
		}
		opts[k] = v
	}
	return opts, nil
}

// ParseSource reads a source stream; file names it in errors. Blank and
// comment lines are skipped; the first bad line stops the parse.
func ParseSource(r io.Reader, file string) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLen)
	var entries []Entry
	lineNo := 0
	for sc.Scan() {
		lineNo++
		e, ok, err := ParseLine(sc.Text())
		if err != nil {
			return nil, &SourceError{File: file, Line: lineNo, Reason: err.Error()}
		}
		if ok {
			e.File, e.Line = file, lineNo
			entries = append(entries, e)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &SourceError{File: file, Line: lineNo + 1, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineLen)}
		}
		return nil, fmt.Errorf("userdb %s: read: %w", file, err)
	}
	return entries, nil
}

// SourceFiles lists the files that make up the source at path: path itself
// when it is a file, or every regular file below it in lexical order
// (Courier's makeuserdb joins a userdb directory the same way). Names
// starting with "." and editor backups ending in "~" are skipped.
func SourceFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("userdb %s: %w", path, err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != path && (strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("userdb %s: %w", path, err)
	}
	return files, nil
}

// LoadSource reads the source at path (a file or a directory, see
// SourceFiles) and refuses a duplicate name with both locations.
func LoadSource(path string) ([]Entry, error) {
	files, err := SourceFiles(path)
	if err != nil {
		return nil, err
	}
	var all []Entry
	seen := make(map[string]string)
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("userdb %s: %w", file, err)
		}
		entries, err := ParseSource(f, file)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if first, dup := seen[e.Name]; dup {
				return nil, &SourceError{File: e.File, Line: e.Line, Reason: fmt.Sprintf("duplicate name %q (first defined at %s)", e.Name, first)}
			}
			seen[e.Name] = e.Location()
		}
		all = append(all, entries...)
	}
	return all, nil
}
