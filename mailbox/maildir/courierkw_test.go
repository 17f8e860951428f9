package maildir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// restoreCourierStore writes testdata/courier-kw/store.txt (a keyword
// store made by Courier's maildirkw, courier-base 1.0.16; see the file's
// header) into dir/courierimapkeywords.
func restoreCourierStore(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "courier-kw", "store.txt"))
	if err != nil {
		t.Fatal(err)
	}
	kw := filepath.Join(dir, courierKwDir)
	if err := os.MkdirAll(kw, 0o700); err != nil {
		t.Fatal(err)
	}
	var name string
	var lines []string
	flush := func() {
		if name == "" {
			return
		}
		content := ""
		if len(lines) > 0 {
			content = strings.Join(lines, "\n") + "\n"
		}
		if err := os.WriteFile(filepath.Join(kw, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, "#") && name == "" {
			continue
		}
		if n, ok := strings.CutPrefix(line, "== "); ok {
			flush()
			name, lines = n, nil
			continue
		}
		lines = append(lines, line)
	}
	flush()
}

// TestMaildirkwListsCourierStore: -L of a store Courier's maildirkw wrote
// prints what Courier's -L printed (testdata/courier-kw/listing.txt; line
// order is Courier's hash order, so lines are compared sorted).
func TestMaildirkwListsCourierStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "M")
	if err := Make(dir); err != nil {
		t.Fatal(err)
	}
	restoreCourierStore(t, dir)
	want, err := os.ReadFile(filepath.Join("testdata", "courier-kw", "listing.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := MaildirkwMain([]string{"-L", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if got := sortedLines(out.String()); got != sortedLines(string(want)) {
		t.Fatalf("-L:\n%s\nwant (Courier's):\n%s", got, want)
	}
	// The merge left a :list with every set and no plain update files.
	entries, _ := os.ReadDir(filepath.Join(dir, courierKwDir))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && e.Name() != ":list" {
			t.Errorf("update %s not merged", e.Name())
		}
	}
	out.Reset()
	MaildirkwMain([]string{"-L", dir}, &out, &errb)
	if got := sortedLines(out.String()); got != sortedLines(string(want)) {
		t.Fatalf("-L after merge:\n%s", got)
	}
}

// TestCourierKeywordsKeptInStep: a Maildir coming with Courier's keyword
// store shows its keywords at the first Sync; keyword changes are written
// back as Courier's update files; an update written later (as Courier's
// maildirkw writes one) is applied at the next Sync.
func TestCourierKeywordsKeptInStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "M")
	if err := Make(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"cur/1000.M1P1.host,S=20:2,S", "new/1001.M2P1.host,S=30", "cur/1003.M4P1.host,S=50:2,"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("Subject: x\n\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	restoreCourierStore(t, dir)
	md, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := md.Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	keywordsOf := func() map[string][]string {
		snap, err := f.Sync(false)
		if err != nil {
			t.Fatal(err)
		}
		got := make(map[string][]string)
		for _, m := range snap.Messages {
			kw := slices.Clone(m.Keywords)
			slices.Sort(kw)
			got[m.Key] = kw
		}
		return got
	}
	got := keywordsOf()
	want := map[string][]string{
		"1000.M1P1.host,S=20": {"$Label1", "Work"},
		"1001.M2P1.host,S=30": {"Alpha", "Later", "zed"},
		"1003.M4P1.host,S=50": {"solo"},
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("first Sync: %s has %q, want %q", k, got[k], w)
		}
	}
	// A change here is an update file there.
	if err := f.SetFlags("1000.M1P1.host,S=20", "S", []string{"Work", "Urgent"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, courierKwDir, "1000.M1P1.host,S=20"))
	if err != nil || string(data) != "Urgent\nWork\n" {
		t.Fatalf("update file %q, %v; want Courier's form %q", data, err, "Urgent\nWork\n")
	}
	if got := keywordsOf()["1000.M1P1.host,S=20"]; !slices.Equal(got, []string{"Urgent", "Work"}) {
		t.Fatalf("after SetFlags: %q", got)
	}
	// A flag-only change writes nothing.
	os.Remove(filepath.Join(dir, courierKwDir, "1003.M4P1.host,S=50"))
	if err := f.SetFlags("1003.M4P1.host,S=50", "F", []string{"solo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, courierKwDir, "1003.M4P1.host,S=50")); err == nil {
		t.Fatal("a flag change wrote a keyword update")
	}
	// Courier's side changes a set; the next Sync applies it, flags kept.
	time.Sleep(10 * time.Millisecond) // a new directory time on coarse clocks
	if err := WriteCourierKeywords(dir, "1000.M1P1.host,S=20", []string{"Done"}); err != nil {
		t.Fatal(err)
	}
	if got := keywordsOf()["1000.M1P1.host,S=20"]; !slices.Equal(got, []string{"Done"}) {
		t.Fatalf("after Courier's update: %q", got)
	}
	names, _ := readNames(filepath.Join(dir, "cur"))
	found := false
	for _, n := range names {
		if k, info := splitName(n); k == "1000.M1P1.host,S=20" {
			fl, _ := parseInfo(info)
			found = fl == "S"
		}
	}
	if !found {
		t.Fatalf("flags lost: %q", names)
	}
}

// TestCourierKeywordsMerged: once courierimapkeywords/ holds many update
// files, Sync merges them into :list as Courier's server does, leaving
// out messages that are gone; the sets read back the same.
func TestCourierKeywordsMerged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "M")
	if err := Make(dir); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < courierMergeAt+8; i++ {
		key := fmt.Sprintf("%d.M%dP1.host,S=12", 1000+i, i)
		if i%2 == 0 { // odd keys are messages that are gone
			if err := os.WriteFile(filepath.Join(dir, "cur", key+":2,S"), []byte("Subject: x\n\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := WriteCourierKeywords(dir, key, []string{fmt.Sprintf("kw%d", i%3)}); err != nil {
			t.Fatal(err)
		}
	}
	md, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := md.Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		var i int
		fmt.Sscanf(m.Key, "%d", &i)
		if want := fmt.Sprintf("kw%d", (i-1000)%3); !slices.Equal(m.Keywords, []string{want}) {
			t.Errorf("%s: %q, want [%s]", m.Key, m.Keywords, want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, courierKwDir))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && e.Name() != ":list" {
			t.Fatalf("update %s not merged", e.Name())
		}
	}
	list, err := os.ReadFile(filepath.Join(dir, courierKwDir, ":list"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(list), ":"); n != (courierMergeAt+8)/2 {
		t.Errorf(":list has %d messages, want the %d present:\n%s", n, (courierMergeAt+8)/2, list)
	}
	ck, err := ReadCourierKeywords(dir, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		if !slices.Equal(ck.Sets[m.Key], m.Keywords) {
			t.Errorf("%s: store says %q, message %q", m.Key, ck.Sets[m.Key], m.Keywords)
		}
	}
}
