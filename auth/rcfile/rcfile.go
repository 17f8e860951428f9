// Package rcfile reads the settings files of Courier authlib's modules
// (authmysqlrc, authpgsqlrc, authldaprc): one setting per line, its name,
// blanks, then its value; a value continued on the next line when a line
// ends with a backslash; every name starting with the module's prefix
// (MYSQL_, PGSQL_, LDAP_).
package rcfile

import (
	"strings"

	"postern/policy"
)

// Entry is one setting: its name without the prefix, its value, and the
// line it starts on.
type Entry struct {
	Key, Value string
	Line       policy.Line
}

// Parse splits the lines of a settings file (comments and blank lines
// already left out, as policy.ReadSetting does) into entries. A name
// without the prefix, or given twice, is an error with its file and line;
// what the values mean is the caller's.
func Parse(lines []policy.Line, prefix, setting string) ([]Entry, error) {
	var out []Entry
	seen := map[string]policy.Line{}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		text := l.Text
		for strings.HasSuffix(text, `\`) && i+1 < len(lines) && lines[i+1].File == l.File {
			i++
			text = strings.TrimSpace(strings.TrimSuffix(text, `\`)) + " " + lines[i].Text
		}
		text = strings.TrimSpace(strings.TrimSuffix(text, `\`))
		name, value := text, ""
		if j := strings.IndexAny(text, " \t"); j >= 0 {
			name, value = text[:j], strings.TrimSpace(text[j:])
		}
		key, ok := strings.CutPrefix(name, prefix)
		if !ok {
			return nil, l.Errorf("%q is not a %s setting (they start with %s)", name, setting, prefix)
		}
		if prev, dup := seen[key]; dup {
			return nil, l.Errorf("%s set twice (first at line %d)", name, prev.Num)
		}
		seen[key] = l
		out = append(out, Entry{Key: key, Value: value, Line: l})
	}
	return out, nil
}
