package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func bccLines(text string) []Line {
	var lines []Line
	for i, s := range strings.Split(text, "\n") {
		s = strings.TrimSpace(s)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		lines = append(lines, Line{File: "bcc", Num: i + 1, Text: s})
	}
	return lines
}

func TestBCCArchives(t *testing.T) {
	b, err := ParseBCC(bccLines(`
always archive@example.test
sender Boss@Example.TEST boss-archive@archive.test
sender @sales.test sales-archive@archive.test
sender hr.test hr-archive@archive.test
recipient .corp.test corp-archive@archive.test
recipient legal@example.test legal-archive@archive.test
# the same archive twice: one copy
recipient @example.test ARCHIVE@example.test
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from  string
		rcpts []string
		want  string
	}{
		{"someone@else.test", []string{"x@else.test"}, "archive@example.test"},
		{"boss@example.test", []string{"x@else.test"}, "archive@example.test,boss-archive@archive.test"},
		{"BOSS@example.test.", nil, "archive@example.test,boss-archive@archive.test"},
		{"a@SALES.test", nil, "archive@example.test,sales-archive@archive.test"},
		{"a@x.sales.test", nil, "archive@example.test"}, // @domain is that domain only
		{"a@hr.test", nil, "archive@example.test,hr-archive@archive.test"},
		{"", []string{"a@corp.test"}, "archive@example.test"}, // .domain: subdomains only
		{"", []string{"a@x.corp.test", "b@y.z.corp.test"}, "archive@example.test,corp-archive@archive.test"},
		{"a@corp.test", []string{"Legal@example.test"}, "archive@example.test,legal-archive@archive.test"},
		{"", []string{"<legal@example.test>"}, "archive@example.test,legal-archive@archive.test"},
	} {
		if got := strings.Join(b.Archives(c.from, c.rcpts), ","); got != c.want {
			t.Errorf("Archives(%q, %q) = %q, want %q", c.from, c.rcpts, got, c.want)
		}
	}
	var none *BCC
	if got := none.Archives("a@b.test", []string{"c@d.test"}); got != nil {
		t.Errorf("nil BCC archives %q", got)
	}
}

func TestBCCEmptyIsNil(t *testing.T) {
	b, err := ParseBCC(bccLines("# nothing yet\n"))
	if err != nil || b != nil {
		t.Fatalf("empty bcc: %v %v", b, err)
	}
}

// Bad lines are refused at load with the file and line, all of them.
func TestBCCBadLinesNameFileAndLine(t *testing.T) {
	for _, bad := range []string{
		"always",
		"always a@b.test extra",
		"always nodomain",
		"always @b.test",
		"always a@bad_domain!.test",
		"sender a@b.test",
		"sender a@b.test archive@x.test more",
		"recipient .. archive@x.test",
		"recipient a@ archive@x.test",
		"recipient x.test not-an-address",
		"copy a@b.test archive@x.test",
		"sender a,b@x.test archive@x.test",
	} {
		dir := validDir(t)
		write(t, filepath.Join(dir, "bcc.d", "10-ok"), "always ok@example.test\n")
		write(t, filepath.Join(dir, "bcc.d", "20-bad"), "# comment\n"+bad+"\n")
		_, err := Load(dir)
		want := filepath.Join(dir, "bcc.d", "20-bad") + ":2: bcc:"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bcc line %q: got %v, want an error with %q", bad, err, want)
		}
	}
	dir := validDir(t)
	write(t, filepath.Join(dir, "bcc"), "always ok@example.test\nrecipient @example.test Keep@Archive.Test.\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.BCC.Archives("", []string{"u@example.test"}), ","); got != "ok@example.test,Keep@archive.test" {
		t.Fatalf("loaded bcc archives %q", got)
	}
	if c2, err := Load(validDir(t)); err != nil || c2.BCC != nil {
		t.Fatalf("without bcc: %v %v", c2.BCC, err)
	}
}

func FuzzParseBCC(f *testing.F) {
	for _, s := range []string{
		"always a@b.test\n",
		"sender @x.test a@b.test\nrecipient .y.test c@d.test\n",
		"recipient u@z.test <e@f.test>\n",
		"sender x.test. a@b.test.\n",
		"always\n", "bogus line here\n", "recipient @ a@b\n", "\xff@\xfe a@b\n",
	} {
		f.Add(s, "u@x.test", "v@a.y.test")
	}
	f.Fuzz(func(t *testing.T, text, from, rcpt string) {
		b, err := ParseBCC(bccLines(text))
		if err != nil {
			if b != nil {
				t.Fatal("a refused setting gave a BCC")
			}
			return
		}
		got := b.Archives(from, []string{rcpt, from})
		if len(got) > maxBCCArchives {
			t.Fatalf("%d archives", len(got))
		}
		for i, a := range got {
			if !strings.Contains(a, "@") || strings.ContainsAny(a, " \t<>") {
				t.Fatalf("archive address %q", a)
			}
			for _, o := range got[:i] {
				if strings.EqualFold(o, a) {
					t.Fatalf("archive %q twice in %q", a, got)
				}
			}
		}
		if b != nil && len(b.always) > 0 && len(got) == 0 {
			t.Fatal("always lines gave no archive")
		}
	})
}
