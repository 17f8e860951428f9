package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEmptyTrash(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want []TrashRule
	}{
		{"Trash:7", []TrashRule{{"Trash", 7 * day}}},
		{"Trash:7,Sent:30", []TrashRule{{"Trash", 7 * day}, {"Sent", 30 * day}}},
		{" INBOX.Trash : 1 , Lists.Old:365 ", []TrashRule{{"Trash", day}, {"Lists.Old", 365 * day}}},
		{"none", []TrashRule{}},
	} {
		got, err := ParseEmptyTrash(tc.in)
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParseEmptyTrash(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseEmptyTrash(%q)[%d] = %v, want %v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
	for _, bad := range []string{"", "Trash", "Trash:", ":7", "Trash:0", "Trash:-1", "Trash:1.5", "Trash:99999",
		"INBOX:7", "inbox:7", "../x:7", ".Trash:7", "a/b:7", "Trash:7,trash:3", "Tr\x01sh:7"} {
		if r, err := ParseEmptyTrash(bad); err == nil {
			t.Errorf("ParseEmptyTrash(%q) = %v, want an error", bad, r)
		}
	}
}

// The setting: Courier's Trash:7 when absent, none turns it off, rules
// may be spread over lines, and a bad line is refused with file:line.
func TestEmptyTrashSetting(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		os.WriteFile(filepath.Join(dir, "imapemptytrash"), []byte(content), 0o644)
	}
	c, err := Load(dir)
	if err != nil || len(c.EmptyTrash) != 1 || c.EmptyTrash[0] != DefaultEmptyTrash[0] {
		t.Fatalf("default: %v %v", c, err)
	}
	write("none\n")
	if c, err := Load(dir); err != nil || len(c.EmptyTrash) != 0 {
		t.Fatalf("none: %v %v", c.EmptyTrash, err)
	}
	write("Trash:3\n# sent copies\nSent:30,Drafts:60\n")
	if c, err := Load(dir); err != nil || len(c.EmptyTrash) != 3 || c.EmptyTrash[2].Folder != "Drafts" {
		t.Fatalf("three rules: %v %v", c.EmptyTrash, err)
	}
	for _, bad := range []string{"Trash:3\nINBOX:1\n", "Trash:3\ntrash:4\n", "Trash:3\nnone\n"} {
		write(bad)
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "imapemptytrash:2") {
			t.Errorf("%q: %v, want an error at imapemptytrash:2", bad, err)
		}
	}
}

func FuzzParseEmptyTrash(f *testing.F) {
	for _, s := range []string{"Trash:7", "Trash:7,Sent:30", "none", "INBOX.Trash:1", "../x:7", "a:b:c:9", ",,:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseEmptyTrash(s)
		if err != nil {
			return
		}
		for _, r := range rules {
			if r.Age < 24*time.Hour || checkTrashFolder(r.Folder) != nil {
				t.Fatalf("%q gave %+v", s, r)
			}
		}
	})
}
