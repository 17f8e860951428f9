package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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

func TestCourierUIDDBImportKeepsUIDs(t *testing.T) {
	m := newTestMaildir(t)
	root := m.Root()
	// A folder as Courier left it: three messages with UIDs 7, 9, 12.
	keys := []string{"1600000000.M1P1.old,S=5", "1600000001.M1P1.old,S=5", "1600000002.M1P1.old,S=5"}
	writeFile(t, filepath.Join(root, "cur", keys[0]+":2,S"), "aaaaa")
	writeFile(t, filepath.Join(root, "cur", keys[1]+":2,"), "bbbbb")
	writeFile(t, filepath.Join(root, "new", keys[2]), "ccccc")
	writeFile(t, filepath.Join(root, uidDBName), fmt.Sprintf("1 1234567 13\n7 %s\n9 %s\n12 %s\n", keys[0], keys[1], keys[2]))
	before, _ := os.Stat(filepath.Join(root, uidDBName))

	inbox, _ := m.Folder(Inbox)
	snap, err := inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if snap.UIDValidity != 1234567 || snap.UIDNext != 13 {
		t.Errorf("validity %d next %d, want 1234567 13", snap.UIDValidity, snap.UIDNext)
	}
	var got []uint32
	for _, msg := range snap.Messages {
		got = append(got, msg.UID)
	}
	if !slices.Equal(got, []uint32{7, 9, 12}) {
		t.Errorf("UIDs %v, want [7 9 12]", got)
	}
	if snap.Messages[0].Flags != "S" {
		t.Errorf("flags %q", snap.Messages[0].Flags)
	}
	after, _ := os.Stat(filepath.Join(root, uidDBName))
	if identityOf(before) != identityOf(after) {
		t.Errorf("courierimapuiddb rewritten although nothing changed")
	}
	// A new message continues from NEXTUID.
	deliverString(t, inbox, "new", DeliverOptions{})
	snap, err = inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if last := snap.Messages[len(snap.Messages)-1]; last.UID != 13 || snap.UIDNext != 14 {
		t.Errorf("new message UID %d next %d, want 13 14", last.UID, snap.UIDNext)
	}
}

func TestCorruptUIDDBStartsNewValidity(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	deliverString(t, inbox, "a", DeliverOptions{})
	writeFile(t, filepath.Join(m.Root(), uidDBName), "1 55 3\n1 dup\n1 dup2\n")
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.UIDValidity == 55 || snap.UIDValidity == 0 {
		t.Errorf("validity %d: want a new one", snap.UIDValidity)
	}
	if len(snap.Messages) != 1 || snap.Messages[0].UID != 1 {
		t.Errorf("messages %+v", snap.Messages)
	}
	// Garbage header too.
	writeFile(t, filepath.Join(m.Root(), uidDBName), "\x00\x01garbage")
	old := snap.UIDValidity
	snap, err = inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.UIDValidity == old && snap.Messages[0].UID == 1 {
		// Same second is possible; the validity must still differ from
		// what clients cached unless the header was unreadable — then a
		// fresh time-based one is all we can do. Check the file is sane.
		data, _ := os.ReadFile(filepath.Join(m.Root(), uidDBName))
		if _, _, err := parseUIDDB(data); err != nil {
			t.Errorf("rewritten db does not parse: %v", err)
		}
	}
}

func TestParseUIDDB(t *testing.T) {
	db, _, err := parseUIDDB([]byte("1 100 5\n1 a\n3 b c\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if db.validity != 100 || db.next != 5 || db.uids["a"] != 1 || db.uids["b c"] != 3 {
		t.Errorf("parsed %+v", db)
	}
	db, _, err = parseUIDDB([]byte("1 100 2\n9 a\n"))
	if err != nil || db.next != 10 {
		t.Errorf("UID above NEXTUID must raise it: %+v %v", db, err)
	}
	for _, bad := range []string{"", "2 1 1\n", "1 0 1\n", "1 x 1\n", "1 1 1\n0 a\n", "1 1 5\n1 a\n1 b\n", "1 1 5\n1 a\n2 a\n", "1 1 5\nfoo\n", "1 1 5\n1 a/b\n"} {
		if _, _, err := parseUIDDB([]byte(bad)); !errors.Is(err, errCorruptUIDDB) {
			t.Errorf("%q: err %v, want corrupt", bad, err)
		}
	}
	round, _, err := parseUIDDB(db.marshal())
	if err != nil || round.next != db.next || round.uids["a"] != 9 {
		t.Errorf("round trip: %+v %v", round, err)
	}
}

func TestCourierKeywordImport(t *testing.T) {
	m := newTestMaildir(t)
	root := m.Root()
	k1, k2 := "1600000000.M1P1.old,S=1", "1600000001.M1P1.old,S=1"
	writeFile(t, filepath.Join(root, "cur", k1+":2,S"), "a")
	writeFile(t, filepath.Join(root, "cur", k2+":2,"), "b")
	writeFile(t, filepath.Join(root, courierKwDir, ":list"), "$Junk\nwork\n\n"+k1+":0 1\n"+k2+":1\n")
	inbox, _ := m.Folder(Inbox)
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, msg := range snap.Messages {
		got[msg.Key] = msg.Keywords
	}
	if !slices.Equal(got[k1], []string{"$Junk", "work"}) || !slices.Equal(got[k2], []string{"work"}) {
		t.Errorf("keywords after import: %v", got)
	}
	if _, err := os.Stat(filepath.Join(root, "cur", k1+":2,Sab")); err != nil {
		t.Errorf("file not renamed with keyword letters: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(root, keywordsName))
	if string(data) != "0 $Junk\n1 work\n" {
		t.Errorf("dovecot-keywords = %q", data)
	}
}

func TestKeywordLimit(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	key := deliverString(t, inbox, "x", DeliverOptions{})
	var kws []string
	for i := 0; i < 26; i++ {
		kws = append(kws, fmt.Sprintf("kw%d", i))
	}
	if err := inbox.SetFlags(key, "", kws); err != nil {
		t.Fatalf("26 keywords: %v", err)
	}
	if err := inbox.SetFlags(key, "", []string{"one-too-many"}); !errors.Is(err, ErrTooManyKeywords) {
		t.Errorf("27th keyword: err %v, want ErrTooManyKeywords", err)
	}
	for _, bad := range []string{"", `\Seen`, "a b", "x(", "\x01"} {
		if err := inbox.SetFlags(key, "", []string{bad}); !errors.Is(err, ErrBadKeyword) {
			t.Errorf("keyword %q: err %v, want ErrBadKeyword", bad, err)
		}
	}
	// Case-insensitive reuse.
	if err := inbox.SetFlags(key, "S", []string{"KW3"}); err != nil {
		t.Fatal(err)
	}
	snap, _ := inbox.Sync(true)
	if !slices.Equal(snap.Messages[0].Keywords, []string{"kw3"}) {
		t.Errorf("keywords %v", snap.Messages[0].Keywords)
	}
}

func TestHostileFolderNames(t *testing.T) {
	m := newTestMaildir(t)
	bad := []string{"", ".", "..", "...", "A..B", ".A", "A.", "a/b", "../x", "/etc", "x\x00y", "x\ny", "tab\there", "del\x7f", "INBOX", "inbox", "Inbox.sub", strings.Repeat("a", 300)}
	for _, name := range bad {
		if err := ValidFolderName(name); !errors.Is(err, ErrBadFolderName) {
			t.Errorf("ValidFolderName(%q) = %v, want ErrBadFolderName", name, err)
		}
		if name == "" || strings.EqualFold(name, Inbox) {
			continue
		}
		if err := m.CreateFolder(name); !errors.Is(err, ErrBadFolderName) {
			t.Errorf("CreateFolder(%q) = %v", name, err)
		}
		if _, err := m.Folder(name); !errors.Is(err, ErrBadFolderName) {
			t.Errorf("Folder(%q) = %v", name, err)
		}
	}
	for _, good := range []string{"Sent", "A.B.C", "&AOQ-rger", "with space", "x-y_z"} {
		if err := ValidFolderName(good); err != nil {
			t.Errorf("ValidFolderName(%q) = %v", good, err)
		}
	}
	// Nothing escaped the root.
	parent := filepath.Dir(m.Root())
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Errorf("entries outside the maildir: %v", entries)
	}
}

func TestFolderLifecycle(t *testing.T) {
	m := newTestMaildir(t)
	for _, n := range []string{"Sent", "A", "A.x", "A.x.y", "Ab"} {
		if err := m.CreateFolder(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.CreateFolder("Sent"); !errors.Is(err, ErrFolderExists) {
		t.Errorf("create twice: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.Root(), ".A.x", maildirfolderName)); err != nil {
		t.Errorf("maildirfolder missing: %v", err)
	}
	list, err := m.Folders()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(list, []string{"INBOX", "A", "A.x", "A.x.y", "Ab", "Sent"}) {
		t.Errorf("Folders() = %v", list)
	}
	a, _ := m.Folder("A.x")
	deliverString(t, a, "in A.x", DeliverOptions{})
	if err := m.RenameFolder("A", "C"); err != nil {
		t.Fatal(err)
	}
	list, _ = m.Folders()
	if !slices.Equal(list, []string{"INBOX", "Ab", "C", "C.x", "C.x.y", "Sent"}) {
		t.Errorf("after rename: %v", list)
	}
	cx, err := m.Folder("C.x")
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := cx.Sync(false)
	if len(snap.Messages) != 1 {
		t.Errorf("message did not move with the folder")
	}
	if err := m.RenameFolder("Sent", "Ab"); !errors.Is(err, ErrFolderExists) {
		t.Errorf("rename onto existing: %v", err)
	}
	if err := m.RenameFolder("Nope", "Z"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("rename missing: %v", err)
	}
	if err := m.RenameFolder("INBOX", "Z"); !errors.Is(err, ErrInboxProtected) {
		t.Errorf("rename INBOX: %v", err)
	}
	if err := m.DeleteFolder("inbox"); !errors.Is(err, ErrInboxProtected) {
		t.Errorf("delete INBOX: %v", err)
	}
	if err := m.DeleteFolder("C"); err != nil {
		t.Fatal(err)
	}
	list, _ = m.Folders()
	if !slices.Equal(list, []string{"INBOX", "Ab", "C.x", "C.x.y", "Sent"}) {
		t.Errorf("after delete: %v", list)
	}
	if err := m.DeleteFolder("C"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := m.Folder("Missing"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("Folder(Missing) = %v", err)
	}
}

func TestCopyTo(t *testing.T) {
	m := newTestMaildir(t)
	if err := m.CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := m.Folder(Inbox)
	archive, _ := m.Folder("Archive")
	date := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	key := deliverString(t, inbox, "copy me", DeliverOptions{Flags: "S", Keywords: []string{"work"}, InternalDate: date})
	if err := archive.SetFlags(deliverString(t, archive, "other", DeliverOptions{}), "", []string{"zzz"}); err != nil {
		t.Fatal(err)
	}
	newKey, err := inbox.CopyTo(archive, key)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := archive.Sync(true)
	var found *Message
	for i := range snap.Messages {
		if snap.Messages[i].Key == newKey {
			found = &snap.Messages[i]
		}
	}
	if found == nil {
		t.Fatalf("copy %s not in Archive", newKey)
	}
	if found.Flags != "S" || !slices.Equal(found.Keywords, []string{"work"}) || found.Size != 7 {
		t.Errorf("copy: %+v", *found)
	}
	// A full build of Archive (its first Sync) leaves the date to be asked for.
	if got, err := archive.InternalDate(newKey); err != nil || !got.Equal(date) || !found.InternalDate.IsZero() && !found.InternalDate.Equal(date) {
		t.Errorf("copy's internal date %v (snapshot %v), %v; want %v", got, found.InternalDate, err, date)
	}
	if !strings.HasSuffix(found.Name, ":2,Sb") {
		t.Errorf("keyword letter not remapped for Archive: %s", found.Name)
	}
	if err := inbox.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.CopyTo(archive, key); !errors.Is(err, ErrNoMessage) {
		t.Errorf("copy of removed: %v", err)
	}
}

func TestSubscriptions(t *testing.T) {
	m := newTestMaildir(t)
	for _, n := range []string{"INBOX.Sent", "INBOX.Drafts", "INBOX.Sent"} {
		if err := m.Subscribe(n, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Subscribe("INBOX.Drafts", false); err != nil {
		t.Fatal(err)
	}
	got, err := m.Subscriptions()
	if err != nil || !slices.Equal(got, []string{"INBOX.Sent"}) {
		t.Errorf("subscriptions %v %v", got, err)
	}
	data, _ := os.ReadFile(filepath.Join(m.Root(), subscribedName))
	if string(data) != "INBOX.Sent\n" {
		t.Errorf("file %q", data)
	}
	if err := m.Subscribe("a\nb", true); !errors.Is(err, ErrBadSubscription) {
		t.Errorf("newline name: %v", err)
	}
}

func TestVanishedFilesAreNotErrors(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	k := deliverString(t, inbox, "x", DeliverOptions{})
	if _, err := inbox.Sync(false); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(inbox.Path(), "new", k))
	snap, err := inbox.Sync(true)
	if err != nil || len(snap.Messages) != 0 {
		t.Errorf("after foreign delete: %v %v", snap, err)
	}
	if err := inbox.Remove(k); !errors.Is(err, ErrNoMessage) {
		t.Errorf("remove vanished: %v", err)
	}
}

func TestSizeFromNames(t *testing.T) {
	m := newTestMaildir(t)
	root := m.Root()
	writeFile(t, filepath.Join(root, "cur", "1.M1P1.h,S=100,W=104:2,S"), "short")
	writeFile(t, filepath.Join(root, "cur", "2.M1P1.h,W=9:2,"), "1234567")
	writeFile(t, filepath.Join(root, "cur", "3.M1P1.h:2,"), "abc")
	inbox, _ := m.Folder(Inbox)
	snap, err := inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	var sizes [][2]int64
	for _, msg := range snap.Messages {
		sizes = append(sizes, [2]int64{msg.Size, msg.VirtualSize})
	}
	want := [][2]int64{{100, 104}, {7, 9}, {3, 0}}
	if !slices.Equal(sizes, want) {
		t.Errorf("sizes %v, want %v", sizes, want)
	}
}

func TestDeliverFailureLeavesNothing(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	_, err := inbox.Deliver(failingReader{}, DeliverOptions{})
	if err == nil {
		t.Fatal("delivery from a failing reader succeeded")
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(m.Root(), sub))
		if len(entries) != 0 {
			t.Errorf("%s/ not empty: %v", sub, entries)
		}
	}
}

type failingReader struct{}

func (failingReader) Read(p []byte) (int, error) {
	copy(p, "partial")
	return len("partial"), errors.New("connection reset")
}

// Changes to courierimapuiddb are made in place once the header has the
// padded form: a new UID rewrites the header and appends a line (same
// inode, the old lines untouched), a message that left gets a "UID" line,
// and the file still reads as Courier's format.
func TestUIDDBAppendsInPlace(t *testing.T) {
	m := newTestMaildir(t)
	root := m.Root()
	keys := []string{"1600000000.M1P1.old,S=5", "1600000001.M1P1.old,S=5"}
	writeFile(t, filepath.Join(root, "cur", keys[0]+":2,S"), "aaaaa")
	writeFile(t, filepath.Join(root, "cur", keys[1]+":2,"), "bbbbb")
	// As Courier writes it: unpadded header.
	writeFile(t, filepath.Join(root, uidDBName), fmt.Sprintf("1 1234567 3\n1 %s\n2 %s\n", keys[0], keys[1]))
	inbox, _ := m.Folder(Inbox)
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, uidDBName)
	// The first change rewrites the file with a padded header.
	deliverString(t, inbox, "one", DeliverOptions{})
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "1 0001234567 0000000004\n") {
		t.Fatalf("after the first change:\n%s", data)
	}
	st1, _ := os.Stat(path)
	// The next ones append.
	k4 := deliverString(t, inbox, "two", DeliverOptions{})
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Remove(keys[0]); err != nil {
		t.Fatal(err)
	}
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if identityOf(st1).ino != identityOf(st2).ino {
		t.Errorf("file replaced, want changes in place")
	}
	data, _ = os.ReadFile(path)
	if !strings.HasPrefix(string(data), "1 0001234567 0000000005\n") || !strings.HasSuffix(string(data), "\n4 "+k4+"\n1\n") {
		t.Errorf("in-place changes:\n%s", data)
	}
	var uids []uint32
	for _, msg := range snap.Messages {
		uids = append(uids, msg.UID)
	}
	if !slices.Equal(uids, []uint32{2, 3, 4}) || snap.UIDNext != 5 {
		t.Errorf("UIDs %v next %d, want [2 3 4] 5", uids, snap.UIDNext)
	}
	// Another process's view of the same file: a fresh Maildir object.
	m2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	inbox2, _ := m2.Folder(Inbox)
	snap2, err := inbox2.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap2.Messages) != 3 || snap2.Messages[0].UID != 2 || snap2.UIDNext != 5 {
		t.Errorf("second reader: %+v", snap2)
	}
	// Courier's reader skips a line without a space; every other line is
	// "UID KEY" and the header parses as three decimal numbers.
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.Fields(line)
		if i == 0 && len(f) != 3 || i > 0 && len(f) != 1 && len(f) != 2 {
			t.Errorf("line %d %q", i, line)
		}
	}
}

// A message that left and comes back under the same name (a restore) gets
// a new UID: the gone marker keeps the old UID used.
func TestUIDDBGoneMarker(t *testing.T) {
	db, _, err := parseUIDDB([]byte("1 0000000100 0000000004\n1 a\n2 b\n1\n3 c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if db.uids["a"] != 0 || db.uids["b"] != 2 || db.uids["c"] != 3 || db.next != 4 || !db.padded || db.lines != 4 {
		t.Errorf("parsed %+v", db)
	}
	// A UID that left may not come back.
	if _, _, err := parseUIDDB([]byte("1 0000000100 0000000004\n1 a\n1\n1 a\n")); !errors.Is(err, errCorruptUIDDB) {
		t.Errorf("UID reused after its gone marker: err %v", err)
	}
	// Lines above NEXTUID (a crash between header and append) raise it.
	db, _, err = parseUIDDB([]byte("1 0000000100 0000000002\n1 a\n2 b\n3 c\n"))
	if err != nil || db.next != 4 {
		t.Errorf("next %d err %v", db.next, err)
	}
}

// A message missing from both listings of a Sync is dropped from
// courierimapuiddb only when it was numbered before the earlier listing
// began: one numbered since may have arrived after that listing, and the
// listing under the lock alone (readdir can miss a file being renamed)
// does not prove it gone. A mark from another UIDVALIDITY proves nothing.
func TestAssignUIDsDropsOnlyWhatTheEarlierListingCouldSee(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	path := filepath.Join(m.Root(), uidDBName)
	writeFile(t, path, "1 0000000100 0000000004\n1 a\n2 b\n3 c\n")
	// a and c are in neither listing; c was numbered after the earlier one began.
	listing := map[string]string{"b": "cur/b:2,"}
	db, err := inbox.assignUIDs(listing, &earlierListing{names: listing, numbered: uidMark{100, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(db.uids) != 2 || db.uids["b"] != 2 || db.uids["c"] != 3 {
		t.Errorf("database after the drop: %v", db.uids)
	}
	if data, _ := os.ReadFile(path); !strings.HasSuffix(string(data), "\n3 c\n1\n") {
		t.Errorf("file after the drop:\n%s", data)
	}
	db, err = inbox.assignUIDs(listing, &earlierListing{names: listing, numbered: uidMark{99, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if len(db.uids) != 2 {
		t.Errorf("dropped with a mark of another UIDVALIDITY: %v", db.uids)
	}
}

// Many expunges make the file compact itself: gone markers never outgrow
// the live lines for long.
func TestUIDDBCompacts(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	var keys []string
	for i := 0; i < 1200; i++ {
		keys = append(keys, deliverString(t, inbox, fmt.Sprint("m", i), DeliverOptions{}))
	}
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[:1190] {
		if err := inbox.Remove(k); err != nil {
			t.Fatal(err)
		}
		if _, err := inbox.Sync(true); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(m.Root(), uidDBName))
	db, _, err := parseUIDDB(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(db.uids) != 10 || db.lines > 2*10+1024+1 {
		t.Errorf("%d live, %d lines after compaction", len(db.uids), db.lines)
	}
}
