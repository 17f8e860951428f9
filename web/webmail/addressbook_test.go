package webmail

import (
	"bytes"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// sqwebmailFile is an address book as sqwebmail leaves it: entries added
// one by one (ab_add: a second address appended after ",\n    "), a list
// rewritten after an edit (dodel: the addresses wrapped at 70 columns,
// continuation lines indented), names in UTF-8 with \ before quotes, a
// nickname in Cyrillic, one typed in capitals (the older sqwebmail keeps
// its case, the newer reads it in lower case), an address without a name.
const sqwebmailFile = `bob: "Bob Smith" <bob@example.test>
team: "Bob Smith" <bob@example.test>,
    "Carol \"CJ\" Jones" <carol@example.org>
испытание: "Иван Петров" <ivan@example.org>
Dave: <dave@example.net>
courier: "courier-announce mailing list" <courier-announce@lists.sourceforge.net>, "courier-users mailing list"
  <courier-users@lists.sourceforge.net>
`

// readLikeSqwebmail reads a file the way sqwebmail does, independently of
// Postern's reader: a record runs on over the lines that begin with a
// blank; its name is what precedes the first colon (lower-cased, as the
// newer sqwebmail reads it), its value the rest, without the blanks it
// starts with; a blank line ends the book. The value is an RFC 5322
// address list, read here by Go's net/mail.
func readLikeSqwebmail(t *testing.T, data []byte) map[string][]*mail.Address {
	t.Helper()
	out := map[string][]*mail.Address{}
	var recs []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			break // the newer sqwebmail stops at a blank line
		}
		if (line[0] == ' ' || line[0] == '\t') && len(recs) > 0 {
			recs[len(recs)-1] += line // unfolded
			continue
		}
		recs = append(recs, line)
	}
	for _, rec := range recs {
		name, value, ok := strings.Cut(rec, ":")
		if !ok {
			t.Fatalf("record without a colon: %q", rec)
		}
		list, err := mail.ParseAddressList(strings.TrimLeft(value, " \t"))
		if err != nil {
			t.Fatalf("record %q: %v", rec, err)
		}
		out[strings.ToLower(name)] = list
	}
	return out
}

func TestAddressBookReadsSqwebmailFile(t *testing.T) {
	b := parseAddressBook([]byte(sqwebmailFile))
	if len(b.Problems) != 0 {
		t.Fatalf("problems: %v", b.Problems)
	}
	want := map[string][]bookAddress{
		"bob":       {{"Bob Smith", "bob@example.test"}},
		"team":      {{"Bob Smith", "bob@example.test"}, {`Carol "CJ" Jones`, "carol@example.org"}},
		"испытание": {{"Иван Петров", "ivan@example.org"}},
		"dave":      {{"", "dave@example.net"}},
		"courier":   {{"courier-announce mailing list", "courier-announce@lists.sourceforge.net"}, {"courier-users mailing list", "courier-users@lists.sourceforge.net"}},
	}
	if len(b.entries()) != len(want) {
		t.Fatalf("entries: %d", len(b.entries()))
	}
	for nick, addrs := range want {
		e := b.find(nick)
		if e == nil || !slices.Equal(e.Addrs, addrs) {
			t.Errorf("%s: %+v, want %+v", nick, e, addrs)
		}
	}
	if b.find("DAVE") == nil || b.find("Испытание") == nil {
		t.Error("nicknames are found in any case")
	}
	// Other ways a hand-edited file or another writer puts addresses.
	b = parseAddressBook([]byte("a: x@example.org (Ex Ample)\nb: Plain Name <p@example.org>,\nc: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nd: ann@example.org, ,team\n"))
	if len(b.Problems) != 0 {
		t.Fatalf("problems: %v", b.Problems)
	}
	for nick, a := range map[string]bookAddress{"a": {"Ex Ample", "x@example.org"}, "b": {"Plain Name", "p@example.org"}, "c": {"Jürgen", "j@example.org"}} {
		if e := b.find(nick); e == nil || len(e.Addrs) != 1 || e.Addrs[0] != a {
			t.Errorf("%s: %+v", nick, e)
		}
	}
	if e := b.find("d"); e == nil || len(e.Addrs) != 2 || e.Addrs[1].Addr != "team" {
		t.Errorf("d (an address and a nickname): %+v", e)
	}
}

// What Postern writes, sqwebmail reads: the same entries, read by the
// independent reader above; no blank line; nicknames in lower case and
// without the characters sqwebmail would drop from them.
func TestAddressBookWritesWhatSqwebmailReads(t *testing.T) {
	b := parseAddressBook(nil)
	entries := []*bookEntry{
		{Nick: "bob", Addrs: []bookAddress{{"Bob Smith", "bob@example.test"}}},
		{Nick: "quotes", Addrs: []bookAddress{{`Carol "CJ" \ Jones`, "carol@example.org"}}},
		{Nick: "jürgen", Addrs: []bookAddress{{"Jürgen Müller, Köln", "j@example.org"}}},
		{Nick: "list", Addrs: []bookAddress{{"", "a@example.org"}, {"B", "b@example.org"}, {"Ce Ce", "c@example.org"}}},
	}
	for _, e := range entries {
		if err := b.put("", e); err != nil {
			t.Fatal(err)
		}
	}
	data := b.format()
	if bytes.Contains(data, []byte("\n\n")) || !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatalf("blank line or no final newline:\n%s", data)
	}
	got := readLikeSqwebmail(t, data)
	if len(got) != len(entries) {
		t.Fatalf("sqwebmail would read %d entries:\n%s", len(got), data)
	}
	for _, e := range entries {
		list := got[e.Nick]
		if len(list) != len(e.Addrs) {
			t.Fatalf("%s: %v", e.Nick, list)
		}
		for i, a := range list {
			if a.Name != e.Addrs[i].Name || a.Address != e.Addrs[i].Addr {
				t.Errorf("%s[%d]: %q <%s>, want %+v", e.Nick, i, a.Name, a.Address, e.Addrs[i])
			}
		}
		if strings.ContainsAny(e.Nick, " :;,<>@\\") {
			t.Errorf("nickname %q has characters sqwebmail drops", e.Nick)
		}
	}
	// And Postern reads back what it wrote.
	again := parseAddressBook(data)
	if len(again.Problems) != 0 || len(again.entries()) != len(entries) {
		t.Fatalf("re-read: %v %d", again.Problems, len(again.entries()))
	}
	for _, e := range entries {
		if f := again.find(e.Nick); f == nil || !slices.Equal(f.Addrs, e.Addrs) {
			t.Errorf("re-read %s: %+v", e.Nick, f)
		}
	}
	// sqwebmail's own file, rewritten by Postern after a change to one
	// entry, is still read by sqwebmail the same way for the others.
	b = parseAddressBook([]byte(sqwebmailFile))
	if err := b.put("bob", &bookEntry{Nick: "bob", Addrs: []bookAddress{{"Robert Smith", "bob@example.test"}}}); err != nil {
		t.Fatal(err)
	}
	before := readLikeSqwebmail(t, []byte(sqwebmailFile))
	after := readLikeSqwebmail(t, b.format())
	if len(after) != len(before) || after["bob"][0].Name != "Robert Smith" || after["team"][1].Name != `Carol "CJ" Jones` || after["испытание"][0].Name != "Иван Петров" {
		t.Fatalf("after a change:\n%s", b.format())
	}
}

// A record that cannot be read is skipped and reported with its line, the
// others are read, and the file written after a change keeps it as it was.
func TestAddressBookBrokenLines(t *testing.T) {
	file := "good: <good@example.org>\n" +
		"no colon here\n" +
		"bad: \"unterminated <x@example.org>\n" +
		"latin: \"J\xfcrgen\" <j@example.org>\n" +
		"  \n" +
		"sp ace: <s@example.org>\n" +
		"\n" +
		"good: <second@example.org>\n" +
		"evil: <a@b>, <c@d> <e@f>\n" +
		"empty:\n" +
		"last: x@example.org\n"
	b := parseAddressBook([]byte(file))
	var lines []int
	for _, p := range b.Problems {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int{2, 3, 4, 6, 8, 9, 10}) {
		t.Fatalf("problems at lines %v: %v", lines, b.Problems)
	}
	if len(b.entries()) != 2 || b.find("good").Addrs[0].Addr != "good@example.org" || b.find("last") == nil {
		t.Fatalf("entries: %+v", b.entries())
	}
	if err := b.put("", &bookEntry{Nick: "new", Addrs: []bookAddress{{"", "n@example.org"}}}); err != nil {
		t.Fatal(err)
	}
	out := string(b.format())
	for _, keep := range []string{"no colon here\n", "bad: \"unterminated <x@example.org>\n", "latin: \"J\xfcrgen\" <j@example.org>\n", "sp ace: <s@example.org>\n", "good: <second@example.org>\n", "evil: <a@b>, <c@d> <e@f>\n", "empty:\n", "new: <n@example.org>\n"} {
		if !strings.Contains(out, keep) {
			t.Errorf("written file lacks %q:\n%s", keep, out)
		}
	}
	if strings.Contains(out, "\n\n") {
		t.Errorf("blank line written:\n%s", out)
	}
	// Deleting "good" takes its unreadable duplicate too, which would
	// otherwise come back in its place.
	if err := b.remove("good"); err != nil {
		t.Fatal(err)
	}
	if out := string(b.format()); strings.Contains(out, "good") {
		t.Errorf("duplicate kept after delete:\n%s", out)
	}
}

func TestAddressBookLimits(t *testing.T) {
	// Thousands of entries: read up to the bound, the rest reported.
	var f strings.Builder
	for i := 0; i < maxBookEntries+10; i++ {
		fmt.Fprintf(&f, "n%d: <n%d@example.org>\n", i, i)
	}
	b := parseAddressBook([]byte(f.String()))
	if b.count() != maxBookEntries || len(b.Problems) != 10 {
		t.Fatalf("%d entries, %d problems", b.count(), len(b.Problems))
	}
	if err := b.put("", &bookEntry{Nick: "more", Addrs: []bookAddress{{"", "m@example.org"}}}); err != errBookFull {
		t.Fatalf("adding to a full book: %v", err)
	}
	// An entry with too many addresses is not read.
	long := "big: " + strings.Repeat("<a@example.org>, ", maxRecipients+1) + "\n"
	if b := parseAddressBook([]byte(long)); b.count() != 0 || len(b.Problems) != 1 {
		t.Fatalf("oversized entry: %d %v", b.count(), b.Problems)
	}
	for _, e := range []*bookEntry{
		{Nick: strings.Repeat("n", maxNickLen+1), Addrs: []bookAddress{{"", "a@b"}}},
		{Nick: "a\r\nb", Addrs: []bookAddress{{"", "a@b"}}},
		{Nick: "x", Addrs: []bookAddress{{"a\r\nBcc: x@y", "a@b"}}},
		{Nick: "x", Addrs: []bookAddress{{"", "a@b>\r\nBcc: x@y"}}},
		{Nick: "x", Addrs: []bookAddress{{strings.Repeat("n", maxBookName+1), "a@b"}}},
		{Nick: "x", Addrs: []bookAddress{{"", strings.Repeat("a", maxBookAddr) + "@b"}}},
		{Nick: "x", Addrs: []bookAddress{{"\xff", "a@b"}}},
		{Nick: "x"},
	} {
		if err := parseAddressBook(nil).put("", e); err == nil {
			t.Errorf("accepted %+v", e)
		}
	}
}

// The file is read without following a symbolic link, only when it is a
// regular file (a FIFO would hang the page), and only up to its bound.
func TestAddressBookFileSafety(t *testing.T) {
	root := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("stolen: <s@example.org>\n"), 0o600)
	path := filepath.Join(root, addressBookFile)
	if err := os.Symlink(secret, path); err != nil {
		t.Fatal(err)
	}
	if _, err := readAddressBook(root); err == nil {
		t.Fatal("followed a symbolic link")
	}
	os.Remove(path)
	if err := mkfifo(path); err != nil {
		t.Skip("no FIFO:", err)
	}
	if _, err := readAddressBook(root); err == nil {
		t.Fatal("read a FIFO")
	}
	os.Remove(path)
	os.WriteFile(path, bytes.Repeat([]byte("x: <x@example.org>\n"), maxBookFile/19+1), 0o600)
	if _, err := readAddressBook(root); err != errBookTooBig {
		t.Fatalf("oversized file: %v", err)
	}
	os.Remove(path)
	if b, err := readAddressBook(root); err != nil || b.count() != 0 {
		t.Fatalf("missing file: %v", err)
	}
}

// A line that continues no record (after a blank line) is reported and
// left out when the book is written: written back, it would join the
// record above.
func TestAddressBookOrphanContinuation(t *testing.T) {
	b := parseAddressBook([]byte("a: <a@example.org>\n\n  orphan: <x@example.org>\nb: <b@example.org>\n"))
	if len(b.Problems) != 1 || b.Problems[0].Line != 3 || !strings.Contains(b.Problems[0].Reason, "left out") {
		t.Fatalf("problems: %v", b.Problems)
	}
	if got := string(b.format()); got != "a: <a@example.org>\nb: <b@example.org>\n" {
		t.Fatalf("written: %q", got)
	}
}

// A change that would make the file larger than its bound is refused and
// the file stays as it was.
func TestAddressBookWriteBound(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, addressBookFile)
	// Unreadable records, kept as they are, fill the file up to its bound.
	orig := bytes.Repeat([]byte("unreadable record\n"), maxBookFile/18)
	os.WriteFile(path, orig, 0o600)
	b, err := readAddressBook(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.put("", &bookEntry{Nick: "new", Addrs: []bookAddress{{strings.Repeat("n", maxBookName), "a@example.org"}}}); err != nil {
		t.Fatal(err)
	}
	if err := writeAddressBook(root, b); err != errBookTooBig {
		t.Fatalf("write past the bound: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Fatal("file changed")
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}
