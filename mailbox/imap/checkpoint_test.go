package imap

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"postern/mailbox/maildir"
)

// settleCur waits until cur/'s times are old enough for its listing to be
// trusted (100 ms on file systems with sub-second times).
func settleCur(t *testing.T, folderPath string) {
	t.Helper()
	st, err := os.Stat(filepath.Join(folderPath, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	if st.ModTime().Nanosecond() == 0 {
		time.Sleep(2100 * time.Millisecond)
		return
	}
	time.Sleep(150 * time.Millisecond)
}

// The checkpoint is recorded at close, survives a reopen, is dropped by a
// later change to the messages and kept by a later cached envelope.
func TestIndexCheckpointRecord(t *testing.T) {
	f, ix := indexFixture(t, 4)
	ix.feed(f)
	settleCur(t, f.Path())
	ix.closeCheckpointed(true)
	again := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	if again.checkpoint == nil {
		t.Fatal("no checkpoint after closeCheckpointed")
	}
	again.setEnvelope(1, again.entries[0].key, `("date" "subject" NIL NIL NIL NIL NIL NIL NIL NIL)`)
	again.close()
	again = openIndex(f.Path(), slog.New(slog.DiscardHandler))
	if again.checkpoint == nil {
		t.Fatal("an envelope record dropped the checkpoint")
	}
	again.storeFlags([]flagChange{{uid: 2, letters: "F"}})
	if again.checkpoint != nil {
		t.Fatal("a flag change kept the checkpoint")
	}
	again.close()
	again = openIndex(f.Path(), slog.New(slog.DiscardHandler))
	defer again.close()
	if again.checkpoint != nil {
		t.Fatal("a checkpoint followed by a flag record was replayed as valid")
	}
}

// A new process's first open of a checkpointed folder takes the snapshot
// from the index: the Sync that follows returns that very snapshot.
func TestIndexFeedResumesFolder(t *testing.T) {
	f, ix := indexFixture(t, 6)
	ix.feed(f)
	settleCur(t, f.Path())
	ix.closeCheckpointed(true)

	m, err := maildir.Open(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := m.Folder("INBOX")
	ix2 := openIndex(f.Path(), slog.New(slog.DiscardHandler))
	defer ix2.close()
	ix2.feed(f2)
	if ix2.lastMerged == nil {
		t.Fatal("feed did not resume the folder")
	}
	snap, err := f2.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap != ix2.lastMerged {
		t.Fatal("the first Sync after resuming built a new snapshot")
	}
	if ix2.merge(snap) {
		t.Fatal("merging the resumed snapshot changed the index")
	}
	for _, msg := range snap.Messages {
		r, err := f2.Open(msg.Key)
		if err != nil {
			t.Fatalf("open %s: %v", msg.Name, err)
		}
		r.Close()
	}
}

// Across a server restart the folder is resumed from its index; what
// another program did while the server was down (a delivery into cur/,
// an expunge, a flag change) shows at the next SELECT with new
// mod-sequences, and nothing else changes.
func TestRestartResumesAndSeesChangesMadeWhileDown(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 6; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	c := env.dialClient("alice", "secret", nil)
	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	inbox := env.maildirPath("alice")
	settleCur(t, inbox)
	env.stop()
	ix := openIndex(inbox, slog.New(slog.DiscardHandler))
	hadCheckpoint := ix.checkpoint != nil
	highest := ix.highest()
	ix.close()
	if !hadCheckpoint {
		t.Fatal("shutdown recorded no checkpoint")
	}

	// Unchanged: the same UIDs, flags and HIGHESTMODSEQ.
	env.start()
	c = env.dialClient("alice", "secret", nil)
	sel2, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.NumMessages != 6 || sel2.UIDValidity != sel.UIDValidity || sel2.HighestModSeq != highest {
		t.Fatalf("after restart: %d messages, UIDVALIDITY %d (was %d), HIGHESTMODSEQ %d (was %d)",
			sel2.NumMessages, sel2.UIDValidity, sel.UIDValidity, sel2.HighestModSeq, highest)
	}
	flags := fetchUIDFlags(t, c)
	if !hasFlag(flags[2], imap.FlagFlagged) || hasFlag(flags[3], imap.FlagFlagged) {
		t.Fatalf("flags after restart: %v", flags)
	}
	c.Logout().Wait()
	settleCur(t, inbox)
	env.stop()

	// Another program changes the folder while the server is down.
	cur := filepath.Join(inbox, "cur")
	names, _ := os.ReadDir(cur)
	var gone, flagged string
	for _, e := range names {
		switch {
		case gone == "":
			gone = e.Name()
		case flagged == "":
			flagged = e.Name()
		}
	}
	if err := os.Remove(filepath.Join(cur, gone)); err != nil {
		t.Fatal(err)
	}
	key, _, _ := strings.Cut(flagged, ":")
	if err := os.Rename(filepath.Join(cur, flagged), filepath.Join(cur, key+":2,DS")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cur, "1900000000.M1P1.other,S=4:2,S"), []byte("Subject: x\n\nhi\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	env.start()
	c = env.dialClient("alice", "secret", nil)
	sel3, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel3.NumMessages != 6 || sel3.UIDNext != 8 || sel3.HighestModSeq <= highest {
		t.Fatalf("after changes while down: %d messages, UIDNEXT %d, HIGHESTMODSEQ %d (was %d); want 6, 8, higher",
			sel3.NumMessages, sel3.UIDNext, sel3.HighestModSeq, highest)
	}
	flags = fetchUIDFlags(t, c)
	if len(flags) != 6 || flags[7] == nil {
		t.Fatalf("UIDs after changes: %v", flags)
	}
	drafts := 0
	for _, fl := range flags {
		if hasFlag(fl, imap.FlagDraft) {
			drafts++
		}
	}
	if drafts != 1 {
		t.Fatalf("the flag change made while down shows on %d messages: %v", drafts, flags)
	}
	c.Logout().Wait()
}

// A folder's first open does not stat files whose names carry their size;
// their internal dates are read when a client asks (FETCH INTERNALDATE,
// SEARCH SINCE, SORT ARRIVAL) and kept in the index.
func TestInternalDateReadWhenAsked(t *testing.T) {
	env := newTestEnv(t, nil)
	env.maildir("alice")
	cur := filepath.Join(env.maildirPath("alice"), "cur")
	dates := []time.Time{
		time.Date(2020, 3, 4, 5, 6, 7, 0, time.UTC),
		time.Date(2023, 8, 9, 10, 11, 12, 0, time.UTC),
	}
	for i, d := range dates {
		body := "Subject: s\r\n\r\nbody\r\n"
		name := filepath.Join(cur, fmt.Sprintf("%d.M%dP1.other,S=%d:2,S", d.Unix(), i, len(body)))
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, d, d); err != nil {
			t.Fatal(err)
		}
	}
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	ix := env.srv.hub.openIndex(mustFolder(t, env, "alice"))
	defer env.srv.hub.releaseIndex(ix)
	if !ix.date(1).IsZero() {
		t.Fatal("the first open read an internal date it did not need")
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{InternalDate: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if !m.InternalDate.Equal(dates[i]) {
			t.Errorf("message %d: INTERNALDATE %v, want %v", i+1, m.InternalDate, dates[i])
		}
	}
	if !ix.date(2).Equal(dates[1]) {
		t.Errorf("the date read was not kept in the index: %v", ix.date(2))
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{Since: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if uids := found.AllUIDs(); len(uids) != 1 || uids[0] != 2 {
		t.Errorf("SEARCH SINCE 2022 gave %v, want [2]", uids)
	}
}

func mustFolder(t *testing.T, env *testEnv, user string) *maildir.Folder {
	t.Helper()
	f, err := env.maildir(user).Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// STATUS after a restart takes a folder with an index up from it too, and
// counts what the folder holds, mail delivered meanwhile included.
func TestStatusAfterRestartResumes(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 5; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	inbox := env.maildirPath("alice")
	settleCur(t, inbox)
	env.restart()
	env.deliver("alice", "INBOX", crlfMessage)
	c = env.dialClient("alice", "secret", nil)
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 6 || *st.NumUnseen != 4 || st.UIDNext != 7 {
		t.Fatalf("STATUS after restart: %d messages, %d unseen, UIDNEXT %d; want 6, 4, 7", *st.NumMessages, *st.NumUnseen, st.UIDNext)
	}
	env.srv.hub.mu.Lock()
	e := env.srv.hub.indexes[inbox]
	env.srv.hub.mu.Unlock()
	if e == nil {
		t.Fatal("STATUS did not open the folder's index")
	}
	e.ix.mu.Lock()
	resumed := e.ix.lastMerged != nil // STATUS without HIGHESTMODSEQ merges nothing itself
	e.ix.mu.Unlock()
	if !resumed {
		t.Fatal("STATUS did not resume the folder from its index")
	}
	c.Logout().Wait()
}

// A first merge of a big folder (entries made while another goroutine
// encodes the records) gives the same index, in memory and on disk, as
// message-by-message merging.
func TestIndexFirstMergeOfBigFolder(t *testing.T) {
	snap := &maildir.Snapshot{UIDValidity: 77, UIDNext: 6001}
	for i := 1; i <= 6000; i++ {
		m := maildir.Message{UID: uint32(i), Key: fmt.Sprintf("17000%05d.M1P1.h,S=%d", i, i), Flags: []string{"", "S", "FS"}[i%3], Size: int64(i)}
		if i%7 == 0 {
			m.Keywords = []string{"$Work"}
		}
		if i%2 == 0 {
			m.InternalDate = time.Unix(1700000000+int64(i), 0)
		}
		snap.Messages = append(snap.Messages, m)
	}
	dir := t.TempDir()
	ix := openIndex(dir, slog.New(slog.DiscardHandler))
	if !ix.merge(snap) {
		t.Fatal("first merge changed nothing")
	}
	highest := ix.highest()
	ix.close()
	again := openIndex(dir, slog.New(slog.DiscardHandler))
	defer again.close()
	if len(again.entries) != 6000 || again.uidValidity != 77 || again.highest() != highest {
		t.Fatalf("reopened: %d entries, validity %d, highest %d (was %d)", len(again.entries), again.uidValidity, again.highest(), highest)
	}
	for i, e := range again.entries {
		m := &snap.Messages[i]
		if e.uid != m.UID || e.key != m.Key || e.letters != m.Flags || strings.Join(e.keywords, " ") != strings.Join(m.Keywords, " ") ||
			e.size != m.Size || e.date != dateNanos(m.InternalDate) || e.modseq == 0 || again.byUID[e.uid] != e {
			t.Fatalf("entry %d: %+v for %+v", i, *e, *m)
		}
	}
	// Merging the same messages again changes nothing.
	if again.merge(&maildir.Snapshot{UIDValidity: 77, UIDNext: 6001, Messages: snap.Messages}) {
		t.Fatal("a second merge of the same messages changed the index")
	}
}
