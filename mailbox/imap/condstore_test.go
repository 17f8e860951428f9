package imap

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
)

// TestCondstoreWithGoIMAPClient: SELECT (CONDSTORE) gives HIGHESTMODSEQ,
// FETCH CHANGEDSINCE returns only what another session changed, and a
// conditional STORE fails for a message modified since.
func TestCondstoreWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 5; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	a := env.dialClient("alice", "secret", nil)
	b := env.dialClient("alice", "secret", nil)
	caps, err := a.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []imap.Cap{imap.CapCondStore, imap.CapQResync, imap.CapESearch} {
		if !caps.Has(c) {
			t.Errorf("capability %s missing", c)
		}
	}
	sa, err := a.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sa.HighestModSeq == 0 {
		t.Fatal("no HIGHESTMODSEQ")
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Session b flags message 3.
	if err := b.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	msgs, err := a.Fetch(imap.SeqSetNum(1, 2, 3, 4, 5), &imap.FetchOptions{Flags: true, ModSeq: true, ChangedSince: sa.HighestModSeq}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].SeqNum != 3 || msgs[0].ModSeq <= sa.HighestModSeq {
		t.Fatalf("CHANGEDSINCE %d gave %+v, want only message 3 with a higher MODSEQ", sa.HighestModSeq, msgs)
	}
	// A conditional STORE against the old mod-sequence fails for message 3
	// only and reports it in MODIFIED.
	res, err := a.Store(imap.SeqSetNum(2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, &imap.StoreOptions{UnchangedSince: sa.HighestModSeq}).Collect()
	if err != nil {
		t.Fatalf("conditional store: %v", err)
	}
	for _, m := range res {
		if m.SeqNum == 3 {
			t.Errorf("message 3 was stored although modified since: %+v", m)
		}
	}
	st, err := a.Status("INBOX", &imap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.HighestModSeq <= msgs[0].ModSeq {
		t.Errorf("STATUS HIGHESTMODSEQ %d not above %d after a STORE", st.HighestModSeq, msgs[0].ModSeq)
	}
	// SEARCH MODSEQ finds the changed messages.
	sd, err := a.Search(&imap.SearchCriteria{ModSeq: &imap.SearchCriteriaModSeq{ModSeq: sa.HighestModSeq + 1}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := sd.AllSeqNums(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("SEARCH MODSEQ: %v, want [2 3]", got)
	}
}

var modseqRe = regexp.MustCompile(`HIGHESTMODSEQ (\d+)`)

// TestQResyncAfterChangesByAnotherSession: a client that knew the
// mailbox at some mod-sequence reconnects with SELECT (QRESYNC ...) and
// learns, in one round trip, which UIDs vanished and which flags changed.
func TestQResyncAfterChangesByAnotherSession(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 6; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	r := env.login("alice", "secret")
	r.send("e ENABLE QRESYNC\r\n")
	if lines := r.until("e OK"); lines[0] != "* ENABLED QRESYNC" {
		t.Fatalf("ENABLE: %q", lines)
	}
	r.send("s SELECT INBOX\r\n")
	lines := strings.Join(r.until("s OK"), "\n")
	m := modseqRe.FindStringSubmatch(lines)
	if m == nil {
		t.Fatalf("no HIGHESTMODSEQ in %q", lines)
	}
	known, _ := strconv.ParseUint(m[1], 10, 64)
	validity := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(lines)[1]
	r.send("l LOGOUT\r\n")
	r.until("l OK")

	// Another session flags UID 2 and expunges UIDs 4 and 5.
	o := env.login("alice", "secret")
	o.send("s SELECT INBOX\r\n")
	o.until("s OK")
	o.send("f UID STORE 2 +FLAGS (\\Flagged)\r\nd UID STORE 4:5 +FLAGS (\\Deleted)\r\nx EXPUNGE\r\n")
	o.until("f OK")
	o.until("d OK")
	o.until("x OK")

	r = env.login("alice", "secret")
	r.send("e ENABLE QRESYNC\r\n")
	r.until("e OK")
	r.send(fmt.Sprintf("s SELECT INBOX (QRESYNC (%s %d 1:6))\r\n", validity, known))
	got := r.until("s OK")
	text := strings.Join(got, "\n")
	if !strings.Contains(text, "* VANISHED (EARLIER) 4:5") {
		t.Errorf("no VANISHED (EARLIER) 4:5 in\n%s", text)
	}
	if !regexp.MustCompile(`\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`).MatchString(text) {
		t.Errorf("no FETCH for UID 2 in\n%s", text)
	}
	if strings.Contains(text, "UID 1 ") || strings.Contains(text, "UID 3 ") {
		t.Errorf("unchanged messages reported:\n%s", text)
	}
	// Expunges by another session now arrive as VANISHED, not EXPUNGE.
	o.send("d2 UID STORE 6 +FLAGS (\\Deleted)\r\nx2 EXPUNGE\r\n")
	o.until("x2 OK")
	r.send("n NOOP\r\n")
	noop := r.until("n OK")
	if !slicesContain(noop, "* VANISHED 6") {
		t.Errorf("NOOP after another session's expunge: %q, want * VANISHED 6", noop)
	}
	// UID FETCH ... (CHANGEDSINCE n VANISHED).
	r.send(fmt.Sprintf("v UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n", known))
	vf := strings.Join(r.until("v OK"), "\n")
	if !strings.Contains(vf, "* VANISHED (EARLIER) 4:6") || !strings.Contains(vf, "UID 2 ") {
		t.Errorf("UID FETCH CHANGEDSINCE VANISHED:\n%s", vf)
	}
	// A stale UIDVALIDITY gets no resync data.
	r.send("s2 SELECT INBOX (QRESYNC (1 1))\r\n")
	stale := strings.Join(r.until("s2 OK"), "\n")
	if !strings.Contains(stale, "* OK [CLOSED]") || strings.Contains(stale, "VANISHED") {
		t.Errorf("SELECT with a stale UIDVALIDITY:\n%s", stale)
	}
	// QRESYNC without ENABLE is refused.
	p := env.login("alice", "secret")
	p.send("q SELECT INBOX (QRESYNC (1 1))\r\n")
	p.expect("q BAD")
}

func slicesContain(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestESearch(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 5; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2, 4, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnAll: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if d.Min != 2 || d.Max != 5 || d.Count != 3 {
		t.Errorf("ESEARCH: %+v", d)
	}
	if got := d.AllUIDs(); len(got) != 3 || got[0] != 2 || got[2] != 5 {
		t.Errorf("ESEARCH ALL: %v", got)
	}
	r := env.login("alice", "secret")
	r.send("s SELECT INBOX\r\n")
	r.until("s OK")
	r.send("e1 SEARCH RETURN () UNSEEN\r\ne2 SEARCH RETURN (COUNT) SUBJECT nothing-like-this\r\ne3 SEARCH RETURN (BOGUS) ALL\r\n")
	if l := r.expect("* ESEARCH"); l != `* ESEARCH (TAG "e1") ALL 1,3` {
		t.Errorf("RETURN (): %q", l)
	}
	r.expect("e1 OK")
	if l := r.expect("* ESEARCH"); l != `* ESEARCH (TAG "e2") COUNT 0` {
		t.Errorf("RETURN (COUNT) without matches: %q", l)
	}
	r.expect("e2 OK")
	r.expect("e3 BAD")
}
