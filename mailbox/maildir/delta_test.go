package maildir

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		fresh, err := Open(m.Root())
		if err != nil {
			t.Fatal(err)
		}
		ff, _ := fresh.Folder(Inbox)
		want, err := ff.Sync(false)
		if err != nil {
			t.Fatal(err)
		}
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
		fmt.Fprintf(&b, "%d %s %s %q %v new=%v\n", m.UID, m.Key, m.Name, m.Flags, m.Keywords, strings.HasPrefix(m.Name, "new/") && !m.FromNew)
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
