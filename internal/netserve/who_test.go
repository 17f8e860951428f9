package netserve

import (
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	alice := SessionInfo{User: "Alice@Example.test", Remote: "192.0.2.7:4000"}
	anon := SessionInfo{Remote: "[2001:db8::5]:993"}
	mapped := SessionInfo{User: "bob@example.test", Remote: "[::ffff:192.0.2.9]:110"}
	for _, tc := range []struct {
		mask, network string
		info          SessionInfo
		want          bool
	}{
		{"", "", alice, true},
		{"", "", anon, false}, // a mask, empty or not, selects logged-in users
		{"alice@example.test", "", alice, true},
		{"ALICE@*", "", alice, true},
		{"a?ice@example.test", "", alice, true},
		{"bob@*", "", alice, false},
		{"*", "", anon, false},
		{"", "2001:db8::/32", anon, true},
		{"", "2001:db8::5", anon, true},
		{"", "192.0.2.0/24", anon, false},
		{"alice@*", "192.0.2.0/24", alice, true},
		{"alice@*", "198.51.100.0/24", alice, false},
		{"", "192.0.2.9", mapped, true}, // IPv4-mapped addresses match IPv4
	} {
		m, err := ParseMatch(tc.mask, tc.network)
		if err != nil {
			t.Fatalf("ParseMatch(%q, %q): %v", tc.mask, tc.network, err)
		}
		if got := m.Matches(tc.info); got != tc.want {
			t.Errorf("ParseMatch(%q, %q).Matches(%+v) = %v, want %v", tc.mask, tc.network, tc.info, got, tc.want)
		}
	}
	all, _ := ParseMatch("", "")
	if !all.Lists(anon) || !all.Lists(alice) {
		t.Error("no mask and no network: who lists every session, logged in or not")
	}
	if m, _ := ParseMatch("alice@*", ""); m.Lists(anon) || !m.Lists(alice) {
		t.Error("with a mask, who lists what the mask selects")
	}
	for _, bad := range [][2]string{{"[", ""}, {"", "not-an-ip"}, {"", "10.0.0.0/33"}} {
		if _, err := ParseMatch(bad[0], bad[1]); err == nil {
			t.Errorf("ParseMatch(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

// A tracker's record is replaced whole, so a reader never sees half an
// update; Kick may be called twice.
func TestTracker(t *testing.T) {
	tr := NewTracker("imap", "192.0.2.1:1", "127.0.0.1:143", false)
	if tr.IsKicked() || tr.Info().Since.IsZero() || time.Since(tr.Info().Since) > time.Minute {
		t.Fatalf("new tracker: %+v kicked=%v", tr.Info(), tr.IsKicked())
	}
	tr.Update(func(i *SessionInfo) { i.User, i.Mailbox = "alice", "INBOX" })
	if i := tr.Info(); i.User != "alice" || i.Mailbox != "INBOX" || i.Protocol != "imap" {
		t.Errorf("after Update: %+v", i)
	}
	tr.Kick()
	tr.Kick()
	select {
	case <-tr.Kicked():
	default:
		t.Error("Kicked not closed")
	}
}

// FuzzParseMatch: any admin input is refused or gives a Match that
// answers without panicking.
func FuzzParseMatch(f *testing.F) {
	f.Add("alice@*", "192.0.2.0/24")
	f.Add("[", "")
	f.Add("", "::ffff:10.0.0.1")
	f.Add("*\\", "1.2.3.4/0")
	f.Fuzz(func(t *testing.T, mask, network string) {
		m, err := ParseMatch(mask, network)
		if err != nil {
			return
		}
		m.Matches(SessionInfo{User: mask, Remote: network})
		m.Matches(SessionInfo{User: "x", Remote: "192.0.2.1:5"})
	})
}
