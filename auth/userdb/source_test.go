package userdb

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseSourceReadsCourierLines(t *testing.T) {
	src := "# accounts\n" +
		"\n" +
		"alice@example.test\tuid=1000|gid=1001|home=/srv/mail/alice|mail=/srv/mail/alice/Maildir|systempw=$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80|quota=10000000S,1000C|options=disablepop3=1,wbnochangepass=1|gecos=Alice A. = Admin|mailhost=mx2.example.test\r\n" +
		"   \n" +
		"bob\tuid=1002|gid=1002|home=/home/bob|\n"
	entries, err := ParseSource(strings.NewReader(src), "userdb")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(entries))
	}
	a := entries[0]
	if a.Name != "alice@example.test" || a.File != "userdb" || a.Line != 3 {
		t.Errorf("entry = %q at %s", a.Name, a.Location())
	}
	want := map[string]string{
		"uid": "1000", "gid": "1001", "home": "/srv/mail/alice", "mail": "/srv/mail/alice/Maildir",
		"systempw": "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", "quota": "10000000S,1000C",
		"options": "disablepop3=1,wbnochangepass=1", "gecos": "Alice A. = Admin", "mailhost": "mx2.example.test",
	}
	for k, v := range want {
		if a.Fields[k] != v {
			t.Errorf("field %s = %q, want %q", k, a.Fields[k], v)
		}
	}
	if len(a.Fields) != len(want) {
		t.Errorf("got %d fields, want %d: %v", len(a.Fields), len(want), a.Fields)
	}
	if entries[1].Name != "bob" || entries[1].Line != 5 {
		t.Errorf("second entry = %q at %s", entries[1].Name, entries[1].Location())
	}
}

// Courier's "uid=<TAB>name" lines, which pw2userdb writes after each
// account, are read and skipped; a broken one is refused like any line.
func TestParseSourceSkipsUIDLines(t *testing.T) {
	src := "alice\tuid=1000|gid=1000|home=/home/alice\n1000=\talice\n0=\troot\n"
	entries, err := ParseSource(strings.NewReader(src), "userdb")
	if err != nil || len(entries) != 1 || entries[0].Name != "alice" {
		t.Fatalf("entries %+v, err %v; want alice alone", entries, err)
	}
	for _, bad := range []string{"1000=\t", "1000=\tal ice", "=\talice", "10a0=\talice"} {
		if _, err := ParseSource(strings.NewReader(bad+"\n"), "userdb"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseSourceRefusesBadLinesWithFileAndLine(t *testing.T) {
	const ok = "ok\tuid=1|gid=1|home=/h\n"
	cases := []struct{ line, reason string }{
		{"alice uid=1|gid=1|home=/h", "missing TAB"},
		{"alice\tgid=1|home=/h", "required field uid"},
		{"alice\tuid=1|home=/h", "required field gid"},
		{"alice\tuid=1|gid=1", "required field home"},
		{"alice\tuid=x|gid=1|home=/h", "field uid"},
		{"alice\tuid=-1|gid=1|home=/h", "field uid"},
		{"alice\tuid=99999999999|gid=1|home=/h", "field uid"},
		{"alice\tuid=1|gid=1|home=/h|shell", "has no '='"},
		{"alice\tuid=1|gid=1|home=/h|uid=2", "given twice"},
		{"alice\tuid=1|gid=1|home=relative", "not an absolute path"},
		{"alice\tuid=1|gid=1|home=/h|quota=lots", "field quota"},
		{"alice\tuid=1|gid=1|home=/h|options=disableimap", "not name=value"},
		{"\tuid=1|gid=1|home=/h", "empty account name"},
		{"al ice\tuid=1|gid=1|home=/h", "contains a space"},
		{"alice\tuid=1|gid=1|home=/h|=x", "empty field name"},
		{"alice\tuid=1|gid=1|home=/h|a b=x", "field name"},
		{"alice\tuid=1|gid=1|home=/h|gecos=a\tb", "TAB"},
	}
	for _, c := range cases {
		_, err := ParseSource(strings.NewReader(ok+"# c\n"+c.line+"\n"), "/etc/postern/userdb")
		var se *SourceError
		if !errors.As(err, &se) || !errors.Is(err, ErrSource) {
			t.Errorf("%q: err = %v, want a SourceError", c.line, err)
			continue
		}
		if se.File != "/etc/postern/userdb" || se.Line != 3 {
			t.Errorf("%q: at %s:%d, want /etc/postern/userdb:3", c.line, se.File, se.Line)
		}
		if !strings.HasPrefix(err.Error(), "/etc/postern/userdb:3: ") || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%q: err = %q, want FILE:LINE: ...%s...", c.line, err, c.reason)
		}
	}
}

func TestParseSourceRefusesOverlongLine(t *testing.T) {
	src := "ok\tuid=1|gid=1|home=/h\nbig\tuid=1|gid=1|home=/h|gecos=" + strings.Repeat("x", MaxLineLen) + "\n"
	_, err := ParseSource(strings.NewReader(src), "f")
	var se *SourceError
	if !errors.As(err, &se) || se.Line != 2 || !strings.Contains(se.Reason, "longer than") {
		t.Fatalf("err = %v, want f:2: line longer than ...", err)
	}
}

func TestLoadSourceJoinsDirectoryInLexicalOrder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "userdb")
	writeFile(t, filepath.Join(dir, "20-b"), "bob\tuid=2|gid=2|home=/b\n")
	writeFile(t, filepath.Join(dir, "10-a"), "alice\tuid=1|gid=1|home=/a\n")
	writeFile(t, filepath.Join(dir, "30-sub", "x"), "carol\tuid=3|gid=3|home=/c\n")
	writeFile(t, filepath.Join(dir, ".hidden"), "broken line\n")
	writeFile(t, filepath.Join(dir, "20-b~"), "broken line\n")
	entries, err := LoadSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "alice,bob,carol" {
		t.Fatalf("names = %s, want alice,bob,carol", got)
	}
	if entries[1].File != filepath.Join(dir, "20-b") || entries[1].Line != 1 {
		t.Errorf("bob at %s", entries[1].Location())
	}
}

func TestLoadSourceRefusesDuplicateNamesAcrossFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "userdb")
	writeFile(t, filepath.Join(dir, "a"), "alice\tuid=1|gid=1|home=/a\n")
	writeFile(t, filepath.Join(dir, "b"), "# x\nalice\tuid=2|gid=2|home=/b\n")
	_, err := LoadSource(dir)
	var se *SourceError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want SourceError", err)
	}
	want := filepath.Join(dir, "b") + ":2: duplicate name \"alice\" (first defined at " + filepath.Join(dir, "a") + ":1)"
	if err.Error() != want {
		t.Fatalf("err = %q\nwant  %q", err, want)
	}
}

func TestLoadSourceMissingPath(t *testing.T) {
	_, err := LoadSource(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestFormatRoundTripsAndRefusesUnwritableValues(t *testing.T) {
	e := Entry{Name: "a@b", Fields: map[string]string{"zz": "1", "systempw": "$1$x$y", "home": "/h", "uid": "5", "gid": "6", "gecos": "a=b"}}
	line, err := e.Format()
	if err != nil {
		t.Fatal(err)
	}
	if want := "a@b\tuid=5|gid=6|home=/h|gecos=a=b|systempw=$1$x$y|zz=1"; line != want {
		t.Fatalf("Format = %q, want %q", line, want)
	}
	back, ok, err := ParseLine(line)
	if err != nil || !ok || back.Name != e.Name || len(back.Fields) != len(e.Fields) {
		t.Fatalf("ParseLine(Format) = %v, %v, %v", back, ok, err)
	}
	e.Fields["gecos"] = "a|b"
	if _, err := e.Format(); err == nil {
		t.Fatal("Format accepted a value with '|'")
	}
}

// FuzzParseLine: any line either parses into an entry that formats and
// parses back to the same thing, or is refused; it never panics.
func FuzzParseLine(f *testing.F) {
	f.Add("alice@example.test\tuid=1000|gid=1000|home=/srv/a|systempw=$6$x$y|options=disableimap=1")
	f.Add("# comment")
	f.Add("bob\tuid=1|gid=1|home=/h||quota=100S,5C|")
	f.Add("x\t=|=|")
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := ParseLine(line)
		if err != nil || !ok {
			return
		}
		out, err := e.Format()
		if err != nil {
			t.Fatalf("parsed %q but cannot format it: %v", line, err)
		}
		back, ok, err := ParseLine(out)
		if err != nil || !ok || back.Name != e.Name || len(back.Fields) != len(e.Fields) {
			t.Fatalf("round trip of %q via %q: %v %v %v", line, out, back, ok, err)
		}
		for k, v := range e.Fields {
			if back.Fields[k] != v {
				t.Fatalf("round trip changed %s: %q -> %q", k, v, back.Fields[k])
			}
		}
	})
}
