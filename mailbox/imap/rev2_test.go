package imap

import (
	"os"
	"path/filepath"
	"testing"

	imap "github.com/emersion/go-imap/v2"
)

// TestRev2WithGoIMAPClient drives a rev2 session with go-imap, which
// knows ENABLE IMAP4rev2, ESEARCH and the LIST answered by SELECT.
func TestRev2WithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", crlfMessage)
	env.deliver("alice", "INBOX", crlfMessage)
	c := env.dialClient("alice", "secret", nil)
	if !c.Caps().Has(imap.CapIMAP4rev2) || !c.Caps().Has(imap.CapIMAP4rev1) {
		t.Fatalf("capabilities %v: want IMAP4rev1 and IMAP4rev2", c.Caps())
	}
	en, err := c.Enable(imap.CapIMAP4rev2).Wait()
	if err != nil || !en.Caps.Has(imap.CapIMAP4rev2) {
		t.Fatalf("ENABLE IMAP4rev2: %+v %v", en, err)
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages != 2 {
		t.Errorf("SELECT: %d messages, want 2", sd.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if hasFlag(m.Flags, "\\Recent") {
			t.Errorf("message %d has \\Recent in a rev2 session: %v", m.SeqNum, m.Flags)
		}
	}
	sr, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := sr.AllUIDs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("UID SEARCH UNSEEN = %v, want [1 2]", got)
	}
	st, err := c.Status("Sent", &imap.StatusOptions{NumMessages: true, Size: true, NumDeleted: true}).Wait()
	if err != nil || st.Size == nil || *st.Size != 0 || st.NumDeleted == nil {
		t.Errorf("STATUS Sent: %+v %v", st, err)
	}
	boxes, err := c.List("", "%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil || len(boxes) < 6 {
		t.Fatalf("LIST: %v %v", boxes, err)
	}
	if boxes[0].Mailbox != "INBOX" || boxes[0].Status == nil || *boxes[0].Status.NumMessages != 2 {
		t.Errorf("LIST-STATUS INBOX: %+v", boxes[0])
	}
}

// TestRev2NamesOnDisk: a rev2 client's UTF-8 name and a rev1 client's
// (go-imap sends UTF-8 with "&" as "&-" once it sees IMAP4rev2
// advertised) end up as the same modified UTF-7 directory.
func TestRev2NamesOnDisk(t *testing.T) {
	env := newTestEnv(t, nil)
	c := env.dialClient("alice", "secret", nil)
	if err := c.Create("R&D café", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.maildirPath("alice"), ".R&-D caf&AOk-")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("rev1 CREATE: %v", err)
	}
	boxes, err := c.List("", "R*", nil).Collect()
	if err != nil || len(boxes) != 1 || boxes[0].Mailbox != "R&D café" {
		t.Fatalf("rev1 LIST: %+v %v", boxes, err)
	}
	r := env.login("alice", "secret")
	r.send("e1 ENABLE IMAP4rev2\r\n")
	r.until("e1 OK")
	r.send("e2 STATUS \"R&D café\" (MESSAGES)\r\n")
	r.expect("* STATUS {9}")
	r.expect("R&D café (MESSAGES 0)")
	r.expect("e2 OK")
	// In rev2 "&-" is two characters of a UTF-8 name, not an escape.
	r.send("e3 CREATE \"A&-B\"\r\n")
	r.expect("e3 OK")
	if _, err := os.Stat(filepath.Join(env.maildirPath("alice"), ".A&--B")); err != nil {
		t.Fatalf("rev2 CREATE A&-B: %v", err)
	}
	r.send("e4 CREATE \"bad\xff\"\r\n")
	r.expect("e4 NO [CANNOT]")
}
