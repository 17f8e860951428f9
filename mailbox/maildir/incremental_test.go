package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// ageCur sets cur/'s modification time into the past, as if the last
// change had happened a while ago, so that a listing of it may be reused.
func ageCur(t *testing.T, f *Folder, when time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(f.Path(), "cur"), when, when); err != nil {
		t.Fatal(err)
	}
}

func TestSyncReusesCurListingWhileItsTimeIsUnchanged(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < 3; i++ {
		deliverString(t, inbox, "x", DeliverOptions{Flags: "S"})
	}
	old := time.Now().Add(-time.Hour)
	ageCur(t, inbox, old)
	if snap, err := inbox.Sync(true); err != nil || len(snap.Messages) != 3 {
		t.Fatalf("first sync: %v %v", snap, err)
	}
	// A file slipped into cur/ with cur/'s time put back: a Sync that
	// trusts the unchanged time does not see it, which proves that cur/
	// was not listed again.
	writeFile(t, filepath.Join(inbox.Path(), "cur", "1700000000.M1P1.sneaky,S=1:2,S"), "y")
	ageCur(t, inbox, old)
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 3 {
		t.Fatalf("cur/ listed again although its time did not change: %d messages", len(snap.Messages))
	}
	// A delivery into new/ is found (new/ is always listed) and moved to
	// cur/ without listing cur/: its time says nothing changed there but
	// our own moves.
	deliverString(t, inbox, "z", DeliverOptions{})
	snap, err = inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 4 || !slices.Equal(snap.NewUIDs, []uint32{snap.Messages[3].UID}) || inbox.ownMoveSyncs != 1 {
		t.Fatalf("after delivery: %d messages, from new/ %v, own-move syncs %d", len(snap.Messages), snap.NewUIDs, inbox.ownMoveSyncs)
	}
	// The trust in our own move is verified once cur/'s time is old
	// enough: the verification lists cur/ and finds the sneaked-in file,
	// so the next Sync lists cur/ again.
	time.Sleep(2 * trustAge(inbox.curMtime))
	inbox.verifyCur()
	snap, err = inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 5 {
		t.Fatalf("after a changed cur/ time: %d messages, want 5", len(snap.Messages))
	}
	if len(snap.NewUIDs) != 0 {
		t.Errorf("%v still from new/ on a later Sync", snap.NewUIDs)
	}
}

func TestSyncSeesOtherProcessChangesInCur(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	key := deliverString(t, inbox, "x", DeliverOptions{Flags: "S"})
	ageCur(t, inbox, time.Now().Add(-time.Hour))
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	// Another program renames the file (a flag change): cur/'s time moves.
	if err := os.Rename(filepath.Join(inbox.Path(), "cur", key+":2,S"), filepath.Join(inbox.Path(), "cur", key+":2,FS")); err != nil {
		t.Fatal(err)
	}
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Messages[0].Flags != "FS" {
		t.Errorf("flags %q, want FS", snap.Messages[0].Flags)
	}
}

func TestFromNewWithoutMoving(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	deliverString(t, inbox, "x", DeliverOptions{})
	deliverString(t, inbox, "y", DeliverOptions{Flags: "S"})
	snap, err := inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.FromNew(snap.Messages[0].UID) || snap.FromNew(snap.Messages[1].UID) {
		t.Errorf("FromNew %v %v, want true false", snap.FromNew(snap.Messages[0].UID), snap.FromNew(snap.Messages[1].UID))
	}
}

func TestRememberSparesTheStat(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	key := deliverString(t, inbox, "hello", DeliverOptions{})
	// A fresh Maildir object is a new process's view.
	m2, err := Open(m.Root())
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := m2.Folder(Inbox)
	remembered := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	f2.Remember(key, remembered, 5)
	snap, err := f2.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Messages[0].InternalDate.Equal(remembered) {
		t.Errorf("internal date %v: the file was stat'ed instead of using the remembered %v", snap.Messages[0].InternalDate, remembered)
	}
}

// A cur/ time with a sub-second part comes from a file system with fine
// times, where a listing is trusted once the time is 100 ms old; a
// whole-second time keeps the 2 s rule.
func TestSyncTrustsFineCurTimeSooner(t *testing.T) {
	for _, tc := range []struct {
		name     string
		when     time.Time
		wantSeen bool // the sneaked-in file is found: cur/ was listed again
	}{
		{"fine time 300 ms old", time.Now().Add(-300 * time.Millisecond).Truncate(time.Second).Add(123456789), false},
		{"whole-second time under 2 s old", time.Now().Truncate(time.Second), true}, // under 1 s old: a margin for a slow machine
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMaildir(t)
			inbox, _ := m.Folder(Inbox)
			for i := 0; i < 3; i++ {
				deliverString(t, inbox, "x", DeliverOptions{Flags: "S"})
			}
			when := tc.when
			if !tc.wantSeen && time.Since(when) < fineTrustAge {
				when = when.Add(-time.Second) // keep the sub-second part, old enough
			}
			ageCur(t, inbox, when)
			if snap, err := inbox.Sync(true); err != nil || len(snap.Messages) != 3 {
				t.Fatalf("first sync: %v %v", snap, err)
			}
			writeFile(t, filepath.Join(inbox.Path(), "cur", "1700000000.M1P1.sneaky,S=1:2,S"), "y")
			ageCur(t, inbox, when)
			snap, err := inbox.Sync(true)
			if err != nil {
				t.Fatal(err)
			}
			if seen := len(snap.Messages) == 4; seen != tc.wantSeen {
				t.Fatalf("%d messages: cur/ listed again = %v, want %v", len(snap.Messages), seen, tc.wantSeen)
			}
		})
	}
}

// While cur/ keeps its trusted time, new/ is empty and courierimapuiddb is
// unchanged, Sync hands back the same snapshot without listing cur/; a
// delivery or another process's UID database change ends that.
func TestSyncUnchangedFolderReturnsSameSnapshot(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < 3; i++ {
		deliverString(t, inbox, "x", DeliverOptions{Flags: "S"})
	}
	old := time.Now().Add(-time.Hour)
	ageCur(t, inbox, old)
	first, err := inbox.Sync(true)
	if err != nil || len(first.Messages) != 3 {
		t.Fatalf("first sync: %v %v", first, err)
	}
	writeFile(t, filepath.Join(inbox.Path(), "cur", "1700000000.M1P1.sneaky,S=1:2,S"), "y")
	ageCur(t, inbox, old)
	again, err := inbox.Sync(true)
	if err != nil || again != first {
		t.Fatalf("unchanged folder: new snapshot %p (was %p), err %v", again, first, err)
	}
	deliverString(t, inbox, "z", DeliverOptions{})
	after, err := inbox.Sync(true)
	if err != nil || after == first || len(after.Messages) < 4 {
		t.Fatalf("after a delivery: same snapshot or %d messages, err %v", len(after.Messages), err)
	}
	// Another process rewrote the UID database (same content, new file).
	ageCur(t, inbox, old.Add(time.Minute))
	base, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(inbox.Path(), uidDBName))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(inbox.Path(), "uiddb.tmp")
	writeFile(t, tmp, string(data))
	if err := os.Rename(tmp, filepath.Join(inbox.Path(), uidDBName)); err != nil {
		t.Fatal(err)
	}
	next, err := inbox.Sync(true)
	if err != nil || next == base {
		t.Fatalf("after a UID database change: same snapshot, err %v", err)
	}
}

// Sync builds a snapshot from the last one after small changes; after any
// mix of deliveries, flag changes (ours and another process's renames),
// removals and keyword use it must equal what a fresh Maildir object,
// building from scratch, sees.
func TestSyncPatchedSnapshotEqualsFullBuild(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	var keys []string
	for i := 0; i < 20; i++ {
		keys = append(keys, deliverString(t, inbox, fmt.Sprintf("m%d", i), DeliverOptions{Flags: "S"}))
	}
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		got, err := inbox.Sync(true)
		if err != nil {
			t.Fatal(err)
		}
		want := freshScan(t, m)
		// A full build leaves internal dates it would have to stat for
		// zero (Folder.InternalDate reads them); a patch may know them.
		strip := func(s *Snapshot) []Message {
			out := slices.Clone(s.Messages)
			for i := range out {
				out[i].InternalDate = time.Time{}
			}
			return out
		}
		if got.UIDValidity != want.UIDValidity || got.UIDNext != want.UIDNext || !reflect.DeepEqual(strip(got), strip(want)) {
			t.Fatalf("%s: patched snapshot differs from a full build\n got %+v\nwant %+v", step, got, want)
		}
	}
	deliverString(t, inbox, "new one", DeliverOptions{})
	check("after a delivery to new/")
	if err := inbox.SetFlags(keys[3], "FS", []string{"work"}); err != nil {
		t.Fatal(err)
	}
	check("after our own flag change with a keyword")
	// Another process renames a file (a flag change) and removes one.
	cur := filepath.Join(inbox.Path(), "cur")
	if err := os.Rename(filepath.Join(cur, keys[5]+":2,S"), filepath.Join(cur, keys[5]+":2,RS")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cur, keys[7]+":2,S")); err != nil {
		t.Fatal(err)
	}
	check("after another process's rename and removal")
	if err := inbox.Remove(keys[0]); err != nil {
		t.Fatal(err)
	}
	deliverString(t, inbox, "flagged", DeliverOptions{Flags: "F"})
	deliverString(t, inbox, "plain", DeliverOptions{})
	check("after our removal and two deliveries")
}

// A Sync that only adds messages appends them to the last snapshot's
// array (no copy of the folder), and no snapshot handed out before sees
// anything change: not the one extended, not one made earlier from the
// same array, and not when a later change (a rename by another program)
// makes a copy. UIDs numbers an APPEND's keys without a snapshot, and the
// Sync that moves them from new/ still only appends.
func TestSyncExtendsSnapshotInPlace(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < 20; i++ {
		deliverString(t, inbox, fmt.Sprintf("m%d", i), DeliverOptions{Flags: "S"})
	}
	ageCur(t, inbox, time.Now().Add(-time.Hour))
	first, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	var kept []*Snapshot
	var copies [][]Message
	keep := func(s *Snapshot) {
		kept = append(kept, s)
		copies = append(copies, slices.Clone(s.Messages))
	}
	keep(first)
	for i := 0; i < 3; i++ {
		key := deliverString(t, inbox, fmt.Sprintf("new%d", i), DeliverOptions{})
		snap, err := inbox.Sync(true)
		if err != nil {
			t.Fatal(err)
		}
		n := len(snap.Messages)
		if n != 21+i || snap.Messages[n-1].Key != key || !slices.Equal(snap.NewUIDs, []uint32{snap.Messages[n-1].UID}) {
			t.Fatalf("delivery %d: %d messages, from new/ %v", i, n, snap.NewUIDs)
		}
		keep(snap)
	}
	if inbox.inPlaceSyncs != 3 || &kept[3].Messages[0] != &first.Messages[0] {
		t.Fatalf("%d Syncs appended in place, want 3", inbox.inPlaceSyncs)
	}
	// An APPEND: numbered at once, added to the snapshot when moved.
	key := deliverString(t, inbox, "appended", DeliverOptions{})
	validity, uids, err := inbox.UIDs([]string{key})
	if err != nil || validity != first.UIDValidity || len(uids) != 1 || uids[0] != kept[3].UIDNext {
		t.Fatalf("UIDs: %d %v %v, want %d [%d]", validity, uids, err, first.UIDValidity, kept[3].UIDNext)
	}
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Messages); n != 24 || snap.Messages[n-1].UID != uids[0] || !strings.HasPrefix(snap.Messages[n-1].Name, "cur/") || inbox.inPlaceSyncs != 4 {
		t.Fatalf("after the APPEND: %d messages, last %+v, %d in place", n, snap.Messages[n-1], inbox.inPlaceSyncs)
	}
	keep(snap)
	// An earlier snapshot made the last again would be copied, not
	// extended over what later ones hold.
	if inbox.extendable(kept[2].Messages) {
		t.Error("an earlier, shorter snapshot counts as extendable")
	}
	// Another program changes a message's flags: a copy.
	old := snap.Messages[5]
	if err := os.Rename(filepath.Join(inbox.Path(), old.Name), filepath.Join(inbox.Path(), "cur", old.Key+":2,FS")); err != nil {
		t.Fatal(err)
	}
	deliverString(t, inbox, "after", DeliverOptions{})
	changed, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Messages[5].Flags != "FS" || len(changed.Messages) != 25 || &changed.Messages[0] == &snap.Messages[0] {
		t.Fatalf("after a rename: %+v, %d messages", changed.Messages[5], len(changed.Messages))
	}
	for i, s := range kept {
		if !reflect.DeepEqual(s.Messages, copies[i]) {
			t.Errorf("snapshot %d changed after it was handed out", i)
		}
	}
	// The same messages as a scan from scratch.
	want := freshScan(t, m)
	if describe(changed) != describe(want) {
		t.Errorf("extended snapshot differs from a fresh scan:\n%s\nwant\n%s", describe(changed), describe(want))
	}
}

// ReadMessage reads a message whole into the caller's buffer (appending),
// at most limit bytes, finds it again after another program renamed it,
// and reports one that is gone.
func TestReadMessage(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	body := strings.Repeat("line of text\n", 1000) // more than one read's buffer
	key := deliverString(t, inbox, body, DeliverOptions{Flags: "S"})
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	got, err := inbox.ReadMessage(key, []byte("prefix"), 1<<20)
	if err != nil || string(got) != "prefix"+body {
		t.Fatalf("ReadMessage: %d bytes, %v", len(got), err)
	}
	got, err = inbox.ReadMessage(key, nil, 100)
	if err != nil || string(got) != body[:100] {
		t.Fatalf("ReadMessage with limit 100: %q, %v", got, err)
	}
	// Another program changes its flags: the name the Folder knows is stale.
	if err := os.Rename(filepath.Join(inbox.Path(), "cur", key+":2,S"), filepath.Join(inbox.Path(), "cur", key+":2,RS")); err != nil {
		t.Fatal(err)
	}
	got, err = inbox.ReadMessage(key, make([]byte, 0, 16), 1<<20)
	if err != nil || string(got) != body {
		t.Fatalf("ReadMessage after a rename: %d bytes, %v", len(got), err)
	}
	if err := os.Remove(filepath.Join(inbox.Path(), "cur", key+":2,RS")); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.ReadMessage(key, nil, 1<<20); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("ReadMessage of a removed message: %v, want ErrNoMessage", err)
	}
}
