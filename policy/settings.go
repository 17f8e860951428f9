// Package policy reads Postern's configuration the way Courier does: a
// configuration directory in which every setting is a plain-text file named
// after it ("me", "acceptmailfor", "listen", ...), and where any such file may
// instead be a directory of the same name (or NAME.d) whose files are read in
// lexical order and joined. From those files it builds one typed, validated
// Config; a bad file is refused with its name, line and reason, so a reload
// can keep the last good configuration running.
//
// The package owns no global state: Load returns a new *Config each time, and
// the caller decides when to swap it in.
package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// maxSettingLine bounds one line of a setting file; longer lines are refused
// rather than read into memory without limit.
const maxSettingLine = 64 * 1024

// maxSettingFiles bounds how many files one setting directory may hold.
const maxSettingFiles = 10000

// Line is one meaningful line of a setting: blank lines and lines whose first
// non-blank character is '#' are dropped, surrounding white space trimmed.
type Line struct {
	File string // the file it came from
	Num  int    // 1-based line number in File
	Text string
}

// Errorf returns an *Error pointing at this line.
func (l Line) Errorf(format string, args ...any) error {
	return &Error{File: l.File, Line: l.Num, Reason: fmt.Sprintf(format, args...)}
}

// Error is a configuration error: which file, which line (0 when the problem
// is the file as a whole), and why.
type Error struct {
	File   string
	Line   int
	Reason string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// ErrNotSet is returned (wrapped) by ReadSetting when neither a file nor a
// directory of that name exists.
var ErrNotSet = errors.New("setting not present")

// ReadSetting reads setting name from the configuration directory dir. It
// looks for a file "name", else a directory "name" or "name.d", whose regular
// files are read in lexical order (names starting with "." and ending in "~",
// ".bak", ".dpkg-*" or ".rpm*" are skipped, as packaging leaves them behind).
// The result holds only meaningful lines, each with its origin.
func ReadSetting(dir, name string) ([]Line, error) {
	if err := validSettingName(name); err != nil {
		return nil, err
	}
	files, err := settingFiles(dir, name)
	if err != nil {
		return nil, err
	}
	var lines []Line
	for _, f := range files {
		fl, err := readLines(f)
		if err != nil {
			return nil, err
		}
		lines = append(lines, fl...)
	}
	return lines, nil
}

// SettingExists reports whether setting name is present in dir as a file or
// a directory.
func SettingExists(dir, name string) bool {
	_, err := settingFiles(dir, name)
	return err == nil
}

// SettingFiles returns the files that make setting name in dir, in the
// order ReadSetting reads them: the file itself, or a directory's files
// (skipped names left out). The error wraps ErrNotSet when neither exists.
func SettingFiles(dir, name string) ([]string, error) {
	if err := validSettingName(name); err != nil {
		return nil, err
	}
	return settingFiles(dir, name)
}

// SkippedSettingFile reports whether a file of this name in a setting
// directory is left out (dot files, editor and package manager leftovers),
// so that tools never create a piece the server would not read.
func SkippedSettingFile(name string) bool { return skipSettingFile(name) }

func validSettingName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("policy: invalid setting name %q", name)
	}
	return nil
}

// settingFiles resolves a setting to the ordered list of files that make it.
func settingFiles(dir, name string) ([]string, error) {
	for _, candidate := range []string{name, name + ".d"} {
		p := filepath.Join(dir, candidate)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &Error{File: p, Reason: err.Error()}
		}
		if !st.IsDir() {
			if candidate != name {
				continue // "name.d" that is a file means nothing
			}
			return []string{p}, nil
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, &Error{File: p, Reason: err.Error()}
		}
		if len(entries) > maxSettingFiles {
			return nil, &Error{File: p, Reason: fmt.Sprintf("more than %d files", maxSettingFiles)}
		}
		var files []string
		for _, e := range entries {
			if skipSettingFile(e.Name()) {
				continue
			}
			fp := filepath.Join(p, e.Name())
			st, err := os.Stat(fp) // follows links, as admins expect of drop-in files
			if err != nil {
				return nil, &Error{File: fp, Reason: err.Error()}
			}
			if st.Mode().IsRegular() {
				files = append(files, fp)
			}
		}
		sort.Strings(files) // ReadDir sorts already; keep the promise explicit
		return files, nil
	}
	return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), ErrNotSet)
}

func skipSettingFile(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
		strings.HasSuffix(name, ".bak") || strings.Contains(name, ".dpkg-") ||
		strings.Contains(name, ".rpmnew") || strings.Contains(name, ".rpmsave") ||
		strings.Contains(name, ".rpmorig")
}

func readLines(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Reason: err.Error()}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxSettingLine)
	var lines []Line
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if i := strings.IndexFunc(text, isBadConfigRune); i >= 0 {
			return nil, &Error{File: path, Line: n, Reason: fmt.Sprintf("control character %q in line", text[i])}
		}
		lines = append(lines, Line{File: path, Num: n, Text: text})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &Error{File: path, Line: n + 1, Reason: fmt.Sprintf("line longer than %d bytes", maxSettingLine)}
		}
		return nil, &Error{File: path, Reason: err.Error()}
	}
	return lines, nil
}

// isBadConfigRune refuses NUL and other control characters other than tab,
// which are never meaningful in a setting and usually mean a binary file was
// dropped into a setting directory.
func isBadConfigRune(r rune) bool {
	return (r < 0x20 && r != '\t') || r == 0x7f
}
