package acl

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseRights(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"", "", false},
		{"lr", "lr", false},
		{"rl", "lr", false},
		{"lrswipkxtea", "lrswipkxtea", false},
		{"c", "k", false},   // RFC 4314 2.1.1: obsolete create
		{"d", "xte", false}, // obsolete delete: e, t and x
		{"lrz", "", true},
		{"0", "", true},
		{"L", "", true},
		{"l r", "", true},
		{"l\x00", "", true},
	} {
		r, err := ParseRights(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseRights(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && r.String() != tc.want {
			t.Errorf("ParseRights(%q) = %q, want %q", tc.in, r, tc.want)
		}
	}
	if got := All.WithObsolete(); got != "lrswipkxteacd" {
		t.Errorf("All.WithObsolete() = %q", got)
	}
	if got := (Lookup | Read).WithObsolete(); got != "lr" {
		t.Errorf("lr WithObsolete = %q", got)
	}
}

// courierSample is an ACL file as Courier's maildiracl writes it: "c" for
// the create right, negative rights, groups, a junk line Courier would
// skip, and spaces between identifier and rights.
const courierSample = "owner aceilrstwx\n" +
	"anyone lr\n" +
	"user=john   w\n" +
	"-user=mary r\n" +
	"administrators aceilrstwx\n" +
	" bad line\n" +
	"group=staff lrsi\n"

func TestParseCourierSample(t *testing.T) {
	l := Parse([]byte(courierSample))
	want := []struct{ id, rights string }{
		{"owner", "lrswikxtea"},
		{"anyone", "lr"},
		{"user=john", "w"},
		{"-user=mary", "r"},
		{"administrators", "lrswikxtea"},
		{"group=staff", "lrsi"},
	}
	if len(l) != len(want) {
		t.Fatalf("parsed %d entries: %+v", len(l), l)
	}
	for i, w := range want {
		if l[i].ID != w.id || l[i].Rights.String() != w.rights {
			t.Errorf("entry %d = %s %s, want %s %s", i, l[i].ID, l[i].Rights, w.id, w.rights)
		}
	}
	if got := l.Rights("john", false).String(); got != "lrw" {
		t.Errorf("john's rights = %q, want lrw", got)
	}
	if got := l.Rights("mary", false).String(); got != "l" {
		t.Errorf("mary's rights = %q, want l (anyone lr minus -user=mary r)", got)
	}
	if got := l.Rights("mary", true); got != All {
		t.Errorf("owner's rights = %q, want all", got)
	}
	// Group members: group=staff adds "si" to anyone's "lr"; mary's
	// negative entry still takes "r" away; an administrator has all.
	if got := l.RightsOf("john", []string{"staff"}, false).String(); got != "lrswi" {
		t.Errorf("john in staff = %q, want lrswi", got)
	}
	if got := l.RightsOf("mary", []string{"staff"}, false).String(); got != "lsi" {
		t.Errorf("mary in staff = %q, want lsi", got)
	}
	if got := l.RightsOf("john", []string{"other"}, false).String(); got != "lrw" {
		t.Errorf("john in another group = %q, want lrw", got)
	}
	if got := l.RightsOf("nobody", []string{Administrators}, false); got != All {
		t.Errorf("administrator = %q, want all", got)
	}
	// Written back in Courier's letters: create is "c".
	out := string(l[:1].Marshal())
	if out != "owner aceilrstwx\n" { // as Courier writes it
		t.Errorf("Marshal = %q", out)
	}
	if !l.Grants() {
		t.Error("Grants() false for a list granting anyone lr")
	}
	if Default().Grants() {
		t.Error("Grants() true for the default list")
	}
}

func TestReadFolderInherits(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{".Work", ".Work.Sub", ".Other"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := ReadFolder(root, "Work.Sub")
	if err != nil || len(l) != 1 || l[0].ID != "owner" || l[0].Rights != All {
		t.Fatalf("no files: %+v %v, want the default", l, err)
	}
	if err := WriteFolder(root, "Work", List{{"owner", All}, {"user=bob", Lookup | Read}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, ".Work", FileName))
	if err != nil || string(data) != "owner aceilprstwx\nuser=bob lr\n" {
		t.Fatalf("file = %q %v", data, err)
	}
	l, err = ReadFolder(root, "Work.Sub")
	if err != nil || l.Rights("bob", false) != Lookup|Read {
		t.Fatalf("Work.Sub inherits from Work: %+v %v", l, err)
	}
	l, err = ReadFolder(root, "Other")
	if err != nil || l.Rights("bob", false) != 0 {
		t.Fatalf("Other: %+v %v", l, err)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"user=bob": true, "-user=bob": true, "anyone": true,
		"": false, "-": false, "a b": false, "a\tb": false, "a\nb": false, "x\x7f": false,
	} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v", id, !want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(courierSample))
	f.Add([]byte("owner \n\n-\x00 lr\nuser=a@b.c lrswipkxteacd09\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Parse(data)
		// What is written reads back the same.
		again := Parse(l.Marshal())
		if len(again) != len(l) {
			t.Fatalf("round trip: %d entries, then %d", len(l), len(again))
		}
		for i := range l {
			if again[i] != l[i] {
				t.Fatalf("round trip entry %d: %+v, then %+v", i, l[i], again[i])
			}
			if !ValidID(l[i].ID) {
				t.Fatalf("invalid identifier kept: %q", l[i].ID)
			}
		}
	})
}

func FuzzParseRights(f *testing.F) {
	for _, s := range []string{"", "lr", "lrswipkxtea", "cd", "lrz", "\xff", "0123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRights(s)
		if err != nil {
			return
		}
		if r&^All != 0 {
			t.Fatalf("rights outside All: %b", r)
		}
		again, err := ParseRights(r.WithObsolete())
		if err != nil || again != r {
			t.Fatalf("%q: %q does not read back (%v, %q)", s, r.WithObsolete(), err, again)
		}
	})
}
