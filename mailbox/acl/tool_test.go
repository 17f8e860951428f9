package acl

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"postern/internal/couriertest"
	"slices"
	"strings"
	"testing"
)

// TestMaildiraclAgainstCourier runs Courier's maildiracl (courier-base
// 1.0.16; skipped when not installed) and MaildiraclMain with the same
// arguments on two copies of a Maildir and compares output, exit status
// and every ACL file, byte for byte.
func TestMaildiraclAgainstCourier(t *testing.T) {
	bin, err := exec.LookPath("maildiracl")
	if err != nil {
		t.Skip("Courier's maildiracl is not installed")
	}
	base := t.TempDir()
	courier, ours := filepath.Join(base, "courier"), filepath.Join(base, "ours")
	for _, d := range []string{courier, ours} {
		for _, sub := range []string{"", ".A", ".A.B", ".C"} {
			for _, x := range []string{"tmp", "new", "cur"} {
				if err := os.MkdirAll(filepath.Join(d, sub, x), 0o700); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	steps := [][]string{
		{"-list", "MD", "INBOX"},
		{"-set", "MD", "INBOX.A", "user=bob", "lr"},
		{"-list", "MD", "INBOX.A.B"},
		{"-set", "MD", "INBOX", "user=i", "r"},
		{"-list", "MD", "INBOX.C"},
		{"-set", "MD", "INBOX.A", "user=bob", "+w"},
		{"-set", "MD", "INBOX.A", "user=bob", "-l"},
		{"-set", "MD", "INBOX.A", "-user=carol", "+r"},
		{"-set", "MD", "INBOX.A", "anyone", "rrl"},
		{"-set", "MD", "INBOX.A", "user=t", "xte"},
		{"-set", "MD", "INBOX.A", "user=t", "+d"},
		{"-set", "MD", "INBOX.A", "user=z", ""},
		{"-compute", "MD", "INBOX.A", "user=bob", "anyone"},
		{"-compute", "MD", "INBOX.A", "user=carol", "anyone"},
		{"-compute", "MD", "INBOX.A", "owner"},
		{"-compute", "MD", "INBOX.A", "user=nobody"},
		{"-delete", "MD", "INBOX.A", "anyone"},
		{"-delete", "MD", "INBOX.A", "user=nobody"},
		{"-list", "MD", "INBOX.A"},
		{"-set", "MD", "INBOX.A", "owner", "-a"},
		{"-set", "MD", "INBOX.A", "-owner", "l"},
		{"-delete", "MD", "INBOX.A", "owner"},
		{"-set", "MD", "INBOX.A", "administrators", "lr"},
		{"-set", "MD", "INBOX.Nope", "user=x", "l"},
		{"-list", "MD", "INBOX.Nope.Sub"},
		{"-list", "MD", "Work"},
		{"-list", "MD", "inbox"},
		{"-compute", "MD", "INBOX.A"},
		{"-list", "MD"},
		{"-bogus", "MD"},
		{},
		{"-reset", "MD"},
	}
	for _, step := range steps {
		args := func(md string) []string { return couriertest.Fill(step, "MD", md) }
		wo, we, code := couriertest.Run(t, bin, args(courier)...)
		want := fmt.Sprintf("%d\n%s--\n%s", code, wo, strings.ReplaceAll(we, courier, "MD"))
		var go_, ge bytes.Buffer
		gcode := MaildiraclMain(args(ours), &go_, &ge)
		got := fmt.Sprintf("%d\n%s--\n%s", gcode, go_.String(), strings.ReplaceAll(ge.String(), ours, "MD"))
		if want != got {
			t.Errorf("maildiracl %q:\n courier %q\n postern %q", step, want, got)
		}
		if w, g := aclFiles(t, courier), aclFiles(t, ours); w != g {
			t.Errorf("after maildiracl %q, files differ:\n courier:\n%s postern:\n%s", step, w, g)
		}
	}
}

// aclFiles lists every ACL file under root with its mode and contents.
func aclFiles(t *testing.T, root string) string {
	var b strings.Builder
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.Name() != FileName && !strings.HasPrefix(rel, HierFileDir+"/") {
			return nil
		}
		st, _ := os.Stat(path)
		data, _ := os.ReadFile(path)
		fmt.Fprintf(&b, "%s %v %q\n", rel, st.Mode(), data)
		return nil
	})
	return b.String()
}

// FuzzParseRaw: any courierimapacl reads without a crash, into valid
// identifiers with sorted rights, and writing then reading gives it back.
func FuzzParseRaw(f *testing.F) {
	f.Add([]byte("owner aceilrstwx\nadministrators aceilrstwx\nuser=bob lr\n"))
	f.Add([]byte("user=z \n-user=c   rrl\n\x00 x\nbogus qz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := parseRaw(data)
		var b strings.Builder
		for _, e := range l {
			if !ValidID(e.id) || sortRights(e.rights) != e.rights {
				t.Fatalf("entry %q", e)
			}
			fmt.Fprintf(&b, "%s %s\n", e.id, e.rights)
		}
		again := parseRaw([]byte(b.String()))
		if !slices.Equal(again, l) {
			t.Fatalf("%q read back as %q", l, again)
		}
	})
}
