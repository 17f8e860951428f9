package imap

import (
	"strconv"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
)

// STATUS SIZE (RFC 8438) is the sum of RFC822.SIZE, counted in CRLF form
// even for files with bare LF; DELETED (RFC 9051) counts \Deleted.
func TestStatusSizeAndDeleted(t *testing.T) {
	env := newTestEnv(t, nil)
	lf := "Subject: bare LF\nFrom: x@example.org\n\nline\nline\n"
	env.deliver("alice", "INBOX", lf)
	env.deliver("alice", "INBOX", crlfMessage)
	c := env.dialClient("alice", "secret", nil)
	if !c.Caps().Has("STATUS=SIZE") {
		t.Fatalf("STATUS=SIZE not advertised: %v", c.Caps())
	}
	appendMessage(t, c, "INBOX", []byte(crlfMessage), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})
	want := int64(len(strings.ReplaceAll(lf, "\n", "\r\n")) + 2*len(crlfMessage))
	for round := 0; round < 2; round++ { // the second from the index
		st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, Size: true, NumDeleted: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if st.Size == nil || *st.Size != want {
			t.Errorf("round %d: SIZE = %v, want %d", round, st.Size, want)
		}
		if st.NumDeleted == nil || *st.NumDeleted != 1 {
			t.Errorf("round %d: DELETED = %v, want 1", round, st.NumDeleted)
		}
		if st.NumMessages == nil || *st.NumMessages != 3 {
			t.Errorf("round %d: MESSAGES = %v, want 3", round, st.NumMessages)
		}
	}
	// The same items in LIST-STATUS; SIZE agrees with the RFC822.SIZEs
	// FETCH reports.
	r := env.login("alice", "secret")
	r.send(`l1 LIST "" INBOX RETURN (STATUS (SIZE DELETED))` + "\r\n")
	r.expect(`* LIST (\HasNoChildren) "." INBOX`)
	r.expect("* STATUS INBOX (SIZE " + strconv.FormatInt(want, 10) + " DELETED 1)")
	r.expect("l1 OK")
	r.send("l2 EXAMINE INBOX\r\n")
	r.until("l2 OK")
	r.send("l3 FETCH 1:* RFC822.SIZE\r\n")
	var sum int64
	for _, l := range r.until("l3 OK") {
		if i := strings.Index(l, "RFC822.SIZE "); i >= 0 {
			n, _ := strconv.ParseInt(strings.TrimSuffix(l[i+len("RFC822.SIZE "):], ")"), 10, 64)
			sum += n
		}
	}
	if sum != want {
		t.Errorf("sum of RFC822.SIZE = %d, STATUS SIZE = %d", sum, want)
	}
	r.send("l4 STATUS INBOX (SIZES)\r\n")
	r.expect("l4 BAD unknown STATUS item SIZES")
}
