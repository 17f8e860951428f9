package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkpointed makes a folder with n messages (a third \Seen, one with a
// keyword), waits for cur/ to be old enough to trust and returns the
// folder with its checkpoint.
func checkpointed(t *testing.T, n int) (*Maildir, *Folder, *Snapshot, []byte) {
	t.Helper()
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < n; i++ {
		opt := DeliverOptions{}
		if i%3 == 0 {
			opt.Flags = "S"
		}
		if i == 1 {
			opt.Keywords = []string{"$Work"}
		}
		deliverString(t, inbox, fmt.Sprint("message ", i), opt)
	}
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	snap, cp, err := inbox.Checkpoint(true)
	if err != nil {
		t.Fatal(err)
	}
	if cp == nil {
		t.Fatal("no checkpoint for a settled folder")
	}
	return m, inbox, snap, cp
}

// asKept is what a caller's index keeps of a snapshot: no file names. The
// array has room for a few more, as the IMAP index gives Resume.
func asKept(snap *Snapshot) []Message {
	msgs := append(make([]Message, 0, len(snap.Messages)+16), snap.Messages...)
	for i := range msgs {
		msgs[i].Name, msgs[i].VirtualSize = "", 0
	}
	return msgs
}

// reopen is the folder as a new process sees it.
func reopen(t *testing.T, m *Maildir) *Folder {
	t.Helper()
	again, err := OpenWithOptions(m.Root(), Options{Logger: m.log, Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := again.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// freshScan is the folder as a Sync from scratch sees it.
func freshScan(t *testing.T, m *Maildir) *Snapshot {
	t.Helper()
	snap, err := reopen(t, m).Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// settle waits until cur/'s times are old enough to be trusted.
func settle(t *testing.T, f *Folder) {
	t.Helper()
	st, err := os.Stat(filepath.Join(f.Path(), "cur"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * trustAge(st.ModTime()))
}

func TestResumeFromCheckpointWithoutListing(t *testing.T) {
	m, _, snap, cp := checkpointed(t, 20)
	f := reopen(t, m)
	resumed := f.Resume(cp, asKept(snap))
	if resumed == nil {
		t.Fatal("Resume refused an unchanged folder")
	}
	if g, w := describe(resumed), describe(snap); g != w {
		t.Fatalf("resumed\n%s\nwant\n%s", g, w)
	}
	// The next Sync neither lists cur/ nor reads the UID database: it
	// returns the resumed snapshot itself.
	got, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if got != resumed {
		t.Fatal("Sync after Resume built a new snapshot of an unchanged folder")
	}
	if f.lastDB != nil || f.uidCache != nil {
		t.Error("the UID database was read")
	}
	// Every resumed name opens its file.
	for _, msg := range got.Messages {
		r, err := f.Open(msg.Key)
		if err != nil {
			t.Fatalf("open %s: %v", msg.Name, err)
		}
		r.Close()
		if _, err := os.Stat(filepath.Join(f.Path(), msg.Name)); err != nil {
			t.Fatalf("resumed name %s: %v", msg.Name, err)
		}
	}
	// A folder this process has synced does not resume.
	if f.Resume(cp, asKept(snap)) != nil {
		t.Error("Resume of a folder that already has a snapshot")
	}
}

// Names another program wrote (unsorted flags, no info at all) are carried
// by the checkpoint and come back exactly.
func TestResumeKeepsUnusualNames(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	cur := filepath.Join(inbox.Path(), "cur")
	for i, name := range []string{"1700000000.M1P1.host,S=5:2,SF", "1700000001.M1P1.host,S=5", "1700000002.M1P1.host,S=5:2,S"} {
		if err := os.WriteFile(filepath.Join(cur, name), []byte(fmt.Sprint("body", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, inbox)
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	snap, cp, err := inbox.Checkpoint(true)
	if err != nil || cp == nil {
		t.Fatalf("checkpoint %v %v", cp, err)
	}
	resumed := reopen(t, m).Resume(cp, asKept(snap))
	if resumed == nil {
		t.Fatal("Resume refused")
	}
	if g, w := describe(resumed), describe(snap); g != w {
		t.Fatalf("resumed\n%s\nwant\n%s", g, w)
	}
}

// A checkpoint is not given for a listing taken while cur/'s times were
// too recent to trust; waiting lists cur/ again and sees what another
// program changed in that instant.
func TestCheckpointWaitsForRecentChange(t *testing.T) {
	m, inbox, snap, _ := checkpointed(t, 5)
	// Another program flags a message, right before the checkpoint.
	msg := snap.Messages[2]
	cur := filepath.Join(inbox.Path(), "cur")
	if err := os.Rename(filepath.Join(inbox.Path(), msg.Name), filepath.Join(cur, msg.Key+":2,F")); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Sync(false); err != nil {
		t.Fatal(err)
	}
	if _, cp, err := inbox.Checkpoint(false); err != nil || cp != nil {
		t.Fatalf("checkpoint of a cur/ changed just now: %v %v", cp != nil, err)
	}
	snap2, cp, err := inbox.Checkpoint(true)
	if err != nil || cp == nil {
		t.Fatalf("checkpoint after waiting: %v %v", cp != nil, err)
	}
	if snap2.Messages[2].Flags != "F" {
		t.Fatalf("flags %q after the other program's change, want F", snap2.Messages[2].Flags)
	}
	resumed := reopen(t, m).Resume(cp, asKept(snap2))
	if resumed == nil || describe(resumed) != describe(freshScan(t, m)) {
		t.Fatal("Resume of the settled checkpoint differs from a fresh scan")
	}
}

// cp -a and rsync put a directory's modification time back after
// changing it. A listing taken then is trusted within the process (the
// time is old), but a checkpoint needs the change time to be old enough
// too: another change in the same clock tick, its time put back again,
// would otherwise leave the whole stat as the checkpoint recorded it.
func TestCheckpointNeedsOldChangeTime(t *testing.T) {
	_, inbox, snap, _ := checkpointed(t, 4)
	cur := filepath.Join(inbox.Path(), "cur")
	old := time.Now().Add(-time.Hour)
	msg := snap.Messages[1]
	if err := os.Rename(filepath.Join(inbox.Path(), msg.Name), filepath.Join(cur, msg.Key+":2,RS")); err != nil {
		t.Fatal(err)
	}
	ageCur(t, inbox, old)
	if _, err := inbox.Sync(false); err != nil { // lists cur/: its time is old
		t.Fatal(err)
	}
	got, cp, err := inbox.Checkpoint(false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Messages[1].Flags != "RS" {
		t.Fatalf("flags %q, want RS", got.Messages[1].Flags)
	}
	if cp != nil {
		t.Fatal("checkpoint of a listing taken right after cur/'s change time moved")
	}
	if _, cp, err = inbox.Checkpoint(true); err != nil || cp == nil {
		t.Fatalf("after waiting: %v %v", cp != nil, err)
	}
}

// Whatever another program does to the folder after the checkpoint, a
// resumed folder's first Sync shows what a fresh scan shows: Resume
// refuses when cur/, the UID database or the keywords changed, and new/
// is listed anyway.
func TestResumeSeesChangesMadeMeanwhile(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, f *Folder, snap *Snapshot)
		resume bool // Resume may accept the checkpoint
	}{
		{"delivery to new/", func(t *testing.T, f *Folder, snap *Snapshot) {
			deliverString(t, f, "late", DeliverOptions{})
		}, true},
		{"file written to cur/", func(t *testing.T, f *Folder, snap *Snapshot) {
			os.WriteFile(filepath.Join(f.Path(), "cur", "1800000000.M1P1.other,S=4:2,S"), []byte("late"), 0o600)
		}, false},
		{"expunge", func(t *testing.T, f *Folder, snap *Snapshot) {
			os.Remove(filepath.Join(f.Path(), snap.Messages[3].Name))
		}, false},
		{"flag change", func(t *testing.T, f *Folder, snap *Snapshot) {
			msg := snap.Messages[4]
			os.Rename(filepath.Join(f.Path(), msg.Name), filepath.Join(f.Path(), "cur", msg.Key+":2,RS"))
		}, false},
		{"flag change hidden by cur/'s time put back", func(t *testing.T, f *Folder, snap *Snapshot) {
			cur := filepath.Join(f.Path(), "cur")
			st, _ := os.Stat(cur)
			msg := snap.Messages[4]
			os.Rename(filepath.Join(f.Path(), msg.Name), filepath.Join(cur, msg.Key+":2,RS"))
			os.Chtimes(cur, st.ModTime(), st.ModTime())
		}, false},
		{"UID database rewritten", func(t *testing.T, f *Folder, snap *Snapshot) {
			path := filepath.Join(f.Path(), uidDBName)
			data, _ := os.ReadFile(path)
			os.Remove(path)
			os.WriteFile(path, data, 0o600)
		}, false},
		{"keyword file changed", func(t *testing.T, f *Folder, snap *Snapshot) {
			os.WriteFile(filepath.Join(f.Path(), keywordsName), []byte("0 $Other\n"), 0o600)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, inbox, snap, cp := checkpointed(t, 6)
			c.change(t, inbox, snap)
			f := reopen(t, m)
			resumed := f.Resume(cp, asKept(snap))
			if resumed != nil && !c.resume {
				t.Fatal("Resume accepted a changed folder")
			}
			if resumed == nil && c.resume {
				t.Fatal("Resume refused")
			}
			got, err := f.Sync(false)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := describe(got), describe(freshScan(t, m)); g != w {
				t.Fatalf("after resume:\n%s\nfresh scan:\n%s", g, w)
			}
		})
	}
}

// A resumed folder moves new deliveries into cur/ trusting its own
// renames, verifies cur/ afterwards without an earlier listing, and keeps
// patching snapshots.
func TestResumedFolderMovesAndVerifies(t *testing.T) {
	m, _, snap, cp := checkpointed(t, 8)
	f := reopen(t, m)
	if f.Resume(cp, asKept(snap)) == nil {
		t.Fatal("Resume refused")
	}
	key := deliverString(t, f, "new mail", DeliverOptions{})
	got, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Messages); n != 9 || got.Messages[8].Key != key || !got.FromNew(got.Messages[8].UID) {
		t.Fatalf("after a delivery: %d messages, last %+v", n, got.Messages[n-1])
	}
	if f.ownMoveSyncs != 1 {
		t.Errorf("own-move syncs %d, want 1 (cur/ not listed)", f.ownMoveSyncs)
	}
	// The array Resume was given (with room to spare) was extended.
	if f.inPlaceSyncs != 1 {
		t.Errorf("%d Syncs appended in place to the resumed snapshot, want 1", f.inPlaceSyncs)
	}
	settle(t, f)
	f.verifyCur()
	f.mu.Lock()
	trusted, listed := f.curTrusted, f.curList != nil
	f.mu.Unlock()
	if !trusted || !listed {
		t.Fatalf("after verification: trusted %v, listing kept %v", trusted, listed)
	}
	// Another program's change is then found by the listing's delta.
	msg := got.Messages[0]
	if err := os.Rename(filepath.Join(f.Path(), msg.Name), filepath.Join(f.Path(), "cur", msg.Key+":2,FS")); err != nil {
		t.Fatal(err)
	}
	got, err = f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := describe(got), describe(freshScan(t, m)); g != w {
		t.Fatalf("after a flag change:\n%s\nfresh scan:\n%s", g, w)
	}
}

// verifyCur of a resumed folder finds a change another program made in the
// instant of our own moves, without an earlier listing to compare with.
func TestResumedVerifyFindsHiddenChange(t *testing.T) {
	m, _, snap, cp := checkpointed(t, 4)
	f := reopen(t, m)
	if f.Resume(cp, asKept(snap)) == nil {
		t.Fatal("Resume refused")
	}
	deliverString(t, f, "new mail", DeliverOptions{})
	if _, err := f.Sync(true); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(f.Path(), "cur")
	st, _ := os.Stat(cur)
	os.Remove(filepath.Join(f.Path(), snap.Messages[1].Name))
	os.Chtimes(cur, st.ModTime(), st.ModTime())
	settle(t, f)
	f.verifyCur()
	got, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := describe(got), describe(freshScan(t, m)); g != w {
		t.Fatalf("after verification:\n%s\nfresh scan:\n%s", g, w)
	}
}

func TestDecodeCheckpointRefusesDamage(t *testing.T) {
	_, _, snap, cp := checkpointed(t, 3)
	if _, err := decodeCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	for i := range cp {
		if c, err := decodeCheckpoint(cp[:i]); err == nil && c.count == len(snap.Messages) && i < len(cp) {
			// A cut inside the trailing names would still decode only
			// if nothing followed; there are none here.
			t.Fatalf("cut at %d decoded", i)
		}
	}
	if _, err := decodeCheckpoint(append(slices.Clone(cp), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	bad := slices.Clone(cp)
	bad[0] = 'X'
	if _, err := decodeCheckpoint(bad); err == nil {
		t.Error("bad magic accepted")
	}
}

func TestSortKeysMatchesCompareKeys(t *testing.T) {
	keys := []string{"1700000001.M5P1.h", "zzz", "1700000001.M4P1.h", "1700000000.M9P2.h", "abc", "1700000000.P1.h", "1700000001.M4P1.g"}
	sortKeys(keys)
	if !slices.IsSortedFunc(keys, compareKeys) {
		t.Fatalf("sortKeys gave %s", strings.Join(keys, " "))
	}
	// Enough keys for the two-halves sort.
	var many []string
	for i := 0; i < 20000; i++ {
		switch i % 3 {
		case 0:
			many = append(many, fmt.Sprintf("%d.M%dP1.h", 1700000000+(i*7919)%5000, (i*31)%1000000))
		case 1:
			many = append(many, fmt.Sprintf("%d.P%d.h", 1700000000+(i*104729)%5000, i))
		default:
			many = append(many, fmt.Sprintf("name%d", (i*7)%20000))
		}
	}
	want := slices.Clone(many)
	slices.SortStableFunc(want, compareKeys)
	sortKeys(many)
	if !slices.IsSortedFunc(many, compareKeys) || len(many) != len(want) {
		t.Fatal("sortKeys of 20,000 keys is not in compareKeys order")
	}
	slices.Sort(want)
	got := slices.Clone(many)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatal("sortKeys lost or duplicated keys")
	}
}

// listDir gives what os.ReadDir gives (minus dot files), over several
// getdents buffers, and the prefixed names alike.
func TestListDirMatchesReadDir(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("1700000000.M%dP1.host-with-a-longish-name,S=%d:2,S", i, i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o600)
	names, prefixed, err := listDir(dir, "cur/")
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var want []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			want = append(want, e.Name())
		}
	}
	got := slices.Clone(names)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("listDir gave %d names, ReadDir %d", len(got), len(want))
	}
	for i := range names {
		if prefixed[i] != "cur/"+names[i] {
			t.Fatalf("prefixed[%d] = %q for %q", i, prefixed[i], names[i])
		}
	}
	if _, _, err := listDir(filepath.Join(dir, "missing"), ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

// A first open of a big folder (the parallel paths: sorting in halves,
// the UID map filled beside the file, the snapshot described in halves)
// numbers the messages in delivery order, writes a database a fresh
// process reads back the same, and leaves dates to be asked for.
func TestFirstOpenOfBigFolder(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	cur := filepath.Join(inbox.Path(), "cur")
	const n = 9000
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		// Delivery order is the reverse of name order for the first half.
		sec := base.Unix() + int64((i*7919)%n)
		name := fmt.Sprintf("%d.M%dP1.host,S=3:2,%s", sec, i, []string{"", "S"}[i%2])
		if err := os.WriteFile(filepath.Join(cur, name), []byte("abc"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != n || snap.UIDNext != n+1 {
		t.Fatalf("%d messages, UIDNEXT %d", len(snap.Messages), snap.UIDNext)
	}
	for i := 1; i < n; i++ {
		a, b := &snap.Messages[i-1], &snap.Messages[i]
		if a.UID+1 != b.UID || compareKeys(a.Key, b.Key) >= 0 {
			t.Fatalf("UIDs out of delivery order at %d: %d %s, %d %s", i, a.UID, a.Key, b.UID, b.Key)
		}
		if b.Size != 3 || !b.InternalDate.IsZero() || !strings.HasPrefix(b.Name, "cur/"+b.Key+":2,") {
			t.Fatalf("message %d: %+v", i, *b)
		}
	}
	if got := describe(freshScan(t, m)); got != describe(snap) {
		t.Fatal("a fresh process reads another numbering from courierimapuiddb")
	}
	d, err := inbox.InternalDate(snap.Messages[5].Key)
	if err != nil || d.IsZero() {
		t.Fatalf("InternalDate: %v %v", d, err)
	}
}

// Without wait, Checkpoint describes the last snapshot as it stands: given
// while it still matches the files, refused once this process renamed one
// (a flag change the snapshot does not show yet), and nothing for a folder
// never synced.
func TestCheckpointWithoutWaitDescribesLastSnapshot(t *testing.T) {
	m, inbox, snap, _ := checkpointed(t, 4)
	got, cp, err := inbox.Checkpoint(false)
	if err != nil || cp == nil || got != snap {
		t.Fatalf("settled folder: %v %v, same snapshot %v", cp != nil, err, got == snap)
	}
	if err := inbox.SetFlags(snap.Messages[0].Key, "FS", nil); err != nil {
		t.Fatal(err)
	}
	if got, cp, err = inbox.Checkpoint(false); err != nil || cp != nil || got != snap {
		t.Fatalf("after a flag change: checkpoint %v, %v", cp != nil, err)
	}
	if got, cp, err := reopen(t, m).Checkpoint(false); err != nil || cp != nil || got != nil {
		t.Fatalf("never synced: %v %v %v", got, cp != nil, err)
	}
}
