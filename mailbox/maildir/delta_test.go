package maildir

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// After any mix of deliveries, flag changes and removals — by this
// Folder and behind its back — a Sync (patched from the last listing by
// deltaSync when it can) gives the same messages as a fresh Maildir
// object scanning the folder from scratch.
func TestDeltaSyncMatchesFreshScan(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	for i := 0; i < 300; i++ {
		deliverString(t, inbox, fmt.Sprint("m", i), DeliverOptions{})
	}
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cur := filepath.Join(inbox.Path(), "cur")
	for round := 0; round < 200; round++ {
		// Another program's change in the very instant of our own moves
		// leaves cur/'s time as we recorded it; verifyCur finds such a
		// change later (TestVerifyCurFindsChangeHiddenByOwnMove). Here
		// every round's changes must show at the next Sync, so the
		// suspicion is settled first, as a verification finding a
		// difference settles it.
		inbox.mu.Lock()
		if inbox.curSuspect {
			inbox.curSuspect, inbox.curTrusted = false, false
		}
		inbox.mu.Unlock()
		for op := rng.IntN(4); op >= 0; op-- {
			snap := inbox.lastSnap
			switch rng.IntN(6) {
			case 0, 1: // a delivery
				deliverString(t, inbox, fmt.Sprint("r", round), DeliverOptions{})
			case 2: // another program changes flags
				if len(snap.Messages) > 0 {
					msg := snap.Messages[rng.IntN(len(snap.Messages))]
					if strings.HasPrefix(msg.Name, "cur/") {
						os.Rename(filepath.Join(inbox.Path(), msg.Name), filepath.Join(cur, msg.Key+":2,"+[]string{"S", "FS", "RS", ""}[rng.IntN(4)]))
					}
				}
			case 3: // this process changes flags
				if len(snap.Messages) > 0 {
					msg := snap.Messages[rng.IntN(len(snap.Messages))]
					inbox.SetFlags(msg.Key, []string{"S", "T", "D", ""}[rng.IntN(4)], nil)
				}
			case 4: // another program deletes a file
				if len(snap.Messages) > 0 && rng.IntN(3) == 0 {
					msg := snap.Messages[rng.IntN(len(snap.Messages))]
					os.Remove(filepath.Join(inbox.Path(), msg.Name))
				}
			case 5: // this process removes a message
				if len(snap.Messages) > 0 && rng.IntN(3) == 0 {
					msg := snap.Messages[rng.IntN(len(snap.Messages))]
					inbox.Remove(msg.Key)
				}
			}
		}
		got, err := inbox.Sync(rng.IntN(3) != 0) // IMAP APPEND syncs without moving
		if err != nil {
			t.Fatal(err)
		}
		want := freshScan(t, m)
		if g, w := describe(got), describe(want); g != w {
			t.Fatalf("round %d: Sync gave\n%s\nfresh scan gives\n%s", round, g, w)
		}
	}
	if inbox.deltaSyncs == 0 {
		t.Error("deltaSync never patched a snapshot")
	}
	t.Logf("%d of 200 Syncs patched by deltaSync", inbox.deltaSyncs)
}

func describe(s *Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "validity %d next %d\n", s.UIDValidity, s.UIDNext)
	for _, m := range s.Messages {
		fmt.Fprintf(&b, "%d %s %s %q %v new=%v\n", m.UID, m.Key, m.Name, m.Flags, m.Keywords, strings.HasPrefix(m.Name, "new/") && !s.FromNew(m.UID))
	}
	return b.String()
}

func TestDiffListing(t *testing.T) {
	prev := []string{"a", "b", "c", "d", "e", "f"}
	ins, del, ok := diffListing(prev, []string{"a", "x", "b", "d", "e", "f", "y"}, 100)
	if !ok || strings.Join(ins, ",") != "x,y" || strings.Join(del, ",") != "c" {
		t.Errorf("ins %v del %v ok %v", ins, del, ok)
	}
	if _, _, ok := diffListing(prev, []string{"f", "e", "d", "c", "b", "a"}, 3); ok {
		t.Error("a reversed order within a limit of 3")
	}
	ins, del, ok = diffListing(nil, []string{"a"}, 10)
	if !ok || len(ins) != 1 || len(del) != 0 {
		t.Errorf("from empty: %v %v", ins, del)
	}
}

// Our own moves into cur/ are trusted without listing cur/ again; a
// change another program makes in the same instant (cur/'s time looks
// unchanged) is found by verifyCur once the time is old enough, and the
// next Sync then lists cur/.
func TestVerifyCurFindsChangeHiddenByOwnMove(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, deliverString(t, inbox, fmt.Sprint("m", i), DeliverOptions{Flags: "S"}))
	}
	ageCur(t, inbox, time.Now().Add(-time.Hour))
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	// Two deliveries, each moved without a listing of cur/.
	for i := 0; i < 2; i++ {
		deliverString(t, inbox, fmt.Sprint("new", i), DeliverOptions{})
		snap, err := inbox.Sync(true)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Messages) != 6+i || !slices.Equal(snap.NewUIDs, []uint32{snap.Messages[5+i].UID}) {
			t.Fatalf("delivery %d: %d messages", i, len(snap.Messages))
		}
	}
	if inbox.ownMoveSyncs != 2 {
		t.Fatalf("own-move syncs %d, want 2", inbox.ownMoveSyncs)
	}
	// Another program flags a message and puts cur/'s time back, as a
	// change in the same clock tick would leave it.
	cur := filepath.Join(inbox.Path(), "cur")
	st, _ := os.Stat(cur)
	if err := os.Rename(filepath.Join(cur, keys[0]+":2,S"), filepath.Join(cur, keys[0]+":2,FS")); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(cur, st.ModTime(), st.ModTime())
	snap, _ := inbox.Sync(true)
	if snap.Messages[0].Flags != "S" {
		t.Fatalf("the hidden change showed before any verification: %+v", snap.Messages[0])
	}
	time.Sleep(2 * trustAge(st.ModTime()))
	inbox.verifyCur()
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Messages[0].Flags != "FS" {
		t.Errorf("after verification: flags %q, want FS", snap.Messages[0].Flags)
	}
	// With nothing hidden, a verification makes the listing trusted again.
	deliverString(t, inbox, "later", DeliverOptions{})
	inbox.Sync(true)
	st, _ = os.Stat(cur)
	time.Sleep(2 * trustAge(st.ModTime()))
	inbox.verifyCur()
	inbox.mu.Lock()
	trusted, suspect := inbox.curTrusted, inbox.curSuspect
	inbox.mu.Unlock()
	if !trusted || suspect {
		t.Errorf("after a clean verification: trusted %v suspect %v", trusted, suspect)
	}
}
