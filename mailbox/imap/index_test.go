package imap

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// indexFixture is a folder with n delivered messages and its index.
func indexFixture(t *testing.T, n int) (*maildir.Folder, *folderIndex) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "Maildir")
	if err := maildir.Make(root); err != nil {
		t.Fatal(err)
	}
	m, err := maildir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := m.Folder("INBOX")
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("From: a%d@example.org\r\nSubject: message %d\r\nMessage-ID: <%d@x>\r\n\r\nbody %d\r\n", i, i, i, i)
		if _, err := f.Deliver(strings.NewReader(msg), maildir.DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ix := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	t.Cleanup(ix.close)
	snap, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	ix.merge(snap)
	return f, ix
}

func reopenIndex(t *testing.T, ix *folderIndex) *folderIndex {
	t.Helper()
	ix.close()
	again := openIndex(filepath.Dir(ix.path), slog.New(slog.DiscardHandler))
	t.Cleanup(again.close)
	return again
}

func TestIndexSurvivesReopen(t *testing.T) {
	f, ix := indexFixture(t, 5)
	first := ix.entries[0]
	ms := ix.storeFlags([]flagChange{{uid: first.uid, letters: "FS", keywords: []string{"work"}}})
	if err := f.SetFlags(first.key, "FS", []string{"work"}); err != nil {
		t.Fatal(err)
	}
	ix.headers([]uint32{1, 2}, f.Open)
	ix.setCRLFSize(3, 1234)
	highest := ix.highest()

	again := reopenIndex(t, ix)
	if len(again.entries) != 5 || again.highest() != highest || again.uidValidity != ix.uidValidity {
		t.Fatalf("reopened: %d entries, highest %d (want %d)", len(again.entries), again.highest(), highest)
	}
	e := again.byUID[first.uid]
	if e.letters != "FS" || len(e.keywords) != 1 || e.modseq != ms {
		t.Errorf("entry after reopen: %+v, want FS [work] modseq %d", e, ms)
	}
	if h := again.byUID[2].hdr; h == nil || h.subject != "message 1" || h.messageID != "<1@x>" {
		t.Errorf("headers after reopen: %+v", h)
	}
	if again.crlfSize(3) != 1234 {
		t.Errorf("CRLF size after reopen: %d", again.crlfSize(3))
	}
	// Nothing changed on disk: merging the same state changes nothing.
	snap, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if again.merge(snap) {
		t.Errorf("merge of an unchanged folder reported changes")
	}
}

func TestIndexMergeAssignsModSeqsAndRecordsExpunges(t *testing.T) {
	f, ix := indexFixture(t, 3)
	before := ix.highest()
	// Another program flags message 2 and deletes message 3.
	e2, e3 := ix.byUID[2], ix.byUID[3]
	if err := f.SetFlags(e2.key, "S", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(e3.key); err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.merge(snap) {
		t.Fatal("merge saw no change")
	}
	if ix.byUID[2].modseq <= before || ix.byUID[1].modseq > before {
		t.Errorf("modseqs: uid1 %d uid2 %d, before %d", ix.byUID[1].modseq, ix.byUID[2].modseq, before)
	}
	gone, complete := ix.vanishedSince(before)
	if len(gone) != 1 || gone[0] != 3 || !complete {
		t.Errorf("vanished since %d: %v complete=%v", before, gone, complete)
	}
	if gone, _ := ix.vanishedSince(ix.highest()); len(gone) != 0 {
		t.Errorf("vanished since highest: %v", gone)
	}
	again := reopenIndex(t, ix)
	if gone, _ := again.vanishedSince(before); len(gone) != 1 || gone[0] != 3 {
		t.Errorf("vanished after reopen: %v", gone)
	}
}

func TestIndexDamagedTailIsCutAndDamagedHeadRebuilt(t *testing.T) {
	f, ix := indexFixture(t, 4)
	path := ix.path
	ix.close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash mid-append: half a record at the end.
	if err := os.WriteFile(path, append(data, 0x20, 0xff, 0xff), 0o600); err != nil {
		t.Fatal(err)
	}
	again := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	if len(again.entries) != 4 {
		t.Errorf("after a torn tail: %d entries, want 4", len(again.entries))
	}
	again.close()
	if st, _ := os.Stat(path); st.Size() != int64(len(data)) {
		t.Errorf("torn tail not cut: %d bytes, want %d", st.Size(), len(data))
	}
	// Garbage from the start: rebuilt empty, then filled by a merge.
	if err := os.WriteFile(path, []byte("garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	rebuilt := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	defer rebuilt.close()
	if len(rebuilt.entries) != 0 {
		t.Fatalf("corrupt index kept %d entries", len(rebuilt.entries))
	}
	snap, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt.merge(snap)
	if len(rebuilt.entries) != 4 {
		t.Errorf("rebuilt: %d entries", len(rebuilt.entries))
	}
	// Mod-sequences drawn after a rebuild still exceed the old ones.
	if rebuilt.highest() <= ix.highest() {
		t.Errorf("highest modseq went back: %d after rebuild, %d before", rebuilt.highest(), ix.highest())
	}
}

func TestIndexIsCompacted(t *testing.T) {
	f, ix := indexFixture(t, 2)
	for i := 0; i < 3000; i++ {
		letters := "S"
		if i%2 == 0 {
			letters = ""
		}
		ix.storeFlags([]flagChange{{uid: 1, letters: letters}})
	}
	st, err := os.Stat(ix.path)
	if err != nil {
		t.Fatal(err)
	}
	if ix.records > indexCompactRatio*3+1024+2 {
		t.Errorf("%d records in the file after 3000 changes to 2 messages: not compacted", ix.records)
	}
	again := reopenIndex(t, ix)
	if again.byUID[1].letters != "S" || len(again.entries) != 2 {
		t.Errorf("after compaction: %+v (%d bytes)", again.byUID[1], st.Size())
	}
	_ = f
}

func TestIndexSecondOpenerKeepsMemoryOnly(t *testing.T) {
	f, ix := indexFixture(t, 1)
	other := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	defer other.close()
	if other.file != nil {
		t.Fatal("a second opener got the index file while the first holds it")
	}
	if ix.file == nil {
		t.Fatal("first opener lost its file")
	}
}

// TestSelectUsesIndexNotFiles: after a restart, SELECT and FETCH take
// internal dates from the index; a file's time changed behind the
// server's back (no directory change) is not seen, which shows that the
// files were not stat'ed.
func TestSelectUsesIndexNotFiles(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	r := env.login("alice", "secret")
	r.send("S1 SELECT INBOX\r\n")
	r.until("S1 OK")
	r.send("F1 FETCH 1 INTERNALDATE\r\n")
	first := r.until("F1 OK")[0]
	r.send("L LOGOUT\r\n")
	r.until("L OK")
	env.restart()

	cur := filepath.Join(env.maildirPath("alice"), "cur")
	names, _ := os.ReadDir(cur)
	curSt, _ := os.Stat(cur)
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		os.Chtimes(filepath.Join(cur, n.Name()), past, past)
	}
	os.Chtimes(cur, curSt.ModTime(), curSt.ModTime())
	r = env.login("alice", "secret")
	r.send("S2 SELECT INBOX\r\n")
	lines := r.until("S2 OK")
	if !strings.Contains(strings.Join(lines, "\n"), "* 3 EXISTS") {
		t.Fatalf("SELECT after restart: %q", lines)
	}
	r.send("F2 FETCH 1 INTERNALDATE\r\n")
	if got := r.until("F2 OK")[0]; got != first {
		t.Errorf("INTERNALDATE after restart %q, want the indexed %q", got, first)
	}
}

// FuzzIndexLoad: whatever the index file holds, opening it neither panics
// nor keeps an entry without a key.
func FuzzIndexLoad(f *testing.F) {
	w := &recordWriter{b: []byte{recMessage}}
	w.uvarint(1)
	w.uvarint(5)
	w.varint(10)
	w.varint(12)
	w.varint(1)
	w.str("k1")
	w.str("S")
	w.strs([]string{"work"})
	var rec []byte
	rec = append(rec, byte(len(w.b)))
	rec = append(rec, 0, 0, 0, 0)
	f.Add([]byte(indexMagic))
	f.Add(append([]byte(indexMagic), rec...))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, indexFileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		ix := openIndex(dir, slog.New(slog.DiscardHandler))
		defer ix.close()
		for _, e := range ix.entries {
			if e.key == "" || e.uid == 0 {
				t.Fatalf("entry without key or UID: %+v", e)
			}
		}
	})
}

// TestSharedViewIsCopiedOnWrite: sessions that select an unchanged folder
// share one view; a STORE in one must not leak into the other's view, which
// learns of the change from the folder like any other change.
func TestSharedViewIsCopiedOnWrite(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	first := env.login("alice", "secret")
	first.send("s SELECT INBOX\r\n") // claims \Recent; later views are shared
	first.until("s OK")
	// As if the last change to cur/ were long ago: the listing may be
	// reused, so both sessions below get the same snapshot.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(env.maildirPath("alice"), "cur"), old, old)
	first.send("n NOOP\r\n")
	first.until("n OK")
	a := env.login("alice", "secret")
	b := env.login("alice", "secret")
	a.send("s SELECT INBOX\r\n")
	a.until("s OK")
	b.send("s SELECT INBOX\r\n")
	b.until("s OK")
	if a.c == nil || b.c == nil {
		t.Fatal("no connections")
	}
	a.send("f STORE 2 +FLAGS.SILENT (\\Flagged)\r\n")
	a.until("f OK")
	b.send("n NOOP\r\n")
	lines := b.until("n OK")
	found := false
	for _, l := range lines {
		if strings.HasPrefix(l, "* 2 FETCH") && strings.Contains(l, `\Flagged`) {
			found = true
		}
	}
	if !found {
		t.Errorf("the other session was not told of the flag change: %q", lines)
	}
	b.send("g FETCH 1:3 FLAGS\r\n")
	for _, l := range b.until("g OK") {
		if strings.HasPrefix(l, "* 1 FETCH") && strings.Contains(l, `\Flagged`) {
			t.Errorf("message 1 flagged in the other view: %q", l)
		}
	}
}
