package imap

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postern/mailbox/maildir"
)

// dialClient logs a go-imap v2 client in.
func (e *testEnv) dialClient(user, pass string, opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func appendMessage(t *testing.T, c *imapclient.Client, mailbox string, msg []byte, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(msg)), opts)
	if _, err := cmd.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return data
}

const crlfMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: test message\r\nDate: Wed, 1 Jan 2025 10:00:00 +0000\r\n\r\nHello,\r\nthis is line two.\r\n"

func TestAppendThenFetchBytesIdentical(t *testing.T) {
	env := newTestEnv(t, nil)
	c := env.dialClient("alice", "secret", nil)
	// Binary-ish but legal 8-bit content and a long line.
	msg := []byte(crlfMessage + strings.Repeat("x", 5000) + "\r\n\xc3\xa9t\xc3\xa9\r\n")
	ad := appendMessage(t, c, "INBOX", msg, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, "$Label1"}})
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID = %+v, want UID 1 and a UIDVALIDITY", ad)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bodySection := &imap.FetchItemBodySection{}
	msgs, err := c.Fetch(imap.UIDSetNum(ad.UID), &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{bodySection},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	got := msgs[0].FindBodySection(bodySection)
	if !bytes.Equal(got, msg) {
		t.Fatalf("BODY[] differs from what was appended:\n got %q\nwant %q", got, msg)
	}
	if msgs[0].RFC822Size != int64(len(msg)) {
		t.Errorf("RFC822.SIZE = %d, want %d", msgs[0].RFC822Size, len(msg))
	}
	if !hasFlag(msgs[0].Flags, imap.FlagSeen) || !hasFlag(msgs[0].Flags, "$Label1") {
		t.Errorf("flags = %v", msgs[0].Flags)
	}
}

// A message delivered by an MTA with bare LF line ends is served with CRLF,
// and RFC822.SIZE counts the CRLF form.
func TestLFMessageServedAsCRLF(t *testing.T) {
	env := newTestEnv(t, nil)
	lf := strings.ReplaceAll(crlfMessage, "\r\n", "\n")
	env.deliver("alice", "INBOX", lf)
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(msgs[0].FindBodySection(section)); got != crlfMessage {
		t.Fatalf("BODY[] = %q, want %q", got, crlfMessage)
	}
	if msgs[0].RFC822Size != int64(len(crlfMessage)) {
		t.Fatalf("RFC822.SIZE = %d, want %d", msgs[0].RFC822Size, len(crlfMessage))
	}
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func fetchUIDFlags(t *testing.T, c *imapclient.Client) map[imap.UID][]imap.Flag {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[imap.UID][]imap.Flag{}
	for _, m := range msgs {
		out[m.UID] = m.Flags
	}
	return out
}

func TestFlagsAndUIDsSurviveRestart(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	c := env.dialClient("alice", "secret", nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	validity := sel.UIDValidity
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	before := fetchUIDFlags(t, c)
	c.Logout().Wait()

	env.restart()
	// A delivery while no session is open gets the next UID.
	env.deliver("alice", "INBOX", "Subject: late\n\nlate\n")

	c2 := env.dialClient("alice", "secret", nil)
	sel2, err := c2.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.UIDValidity != validity {
		t.Fatalf("UIDVALIDITY changed across restart: %d -> %d", validity, sel2.UIDValidity)
	}
	if sel2.NumMessages != 4 || sel2.UIDNext != 5 {
		t.Fatalf("after restart: %d messages, UIDNEXT %d; want 4, 5", sel2.NumMessages, sel2.UIDNext)
	}
	after := fetchUIDFlags(t, c2)
	for uid, flags := range before {
		got := after[uid]
		for _, f := range flags {
			if f != `\Recent` && !hasFlag(got, f) {
				t.Errorf("UID %d lost flag %s after restart: %v", uid, f, got)
			}
		}
	}
	if !hasFlag(after[2], "$Work") || !hasFlag(after[2], imap.FlagFlagged) {
		t.Errorf("UID 2 flags after restart = %v", after[2])
	}
	if _, ok := after[4]; !ok {
		t.Errorf("late delivery not UID 4: %v", after)
	}
}

// unilateral collects a client's unsolicited responses.
type unilateral struct {
	mu       sync.Mutex
	exists   []uint32
	expunged []uint32
	flags    map[uint32][]imap.Flag
	changed  chan struct{}
}

func newUnilateral() *unilateral {
	return &unilateral{flags: map[uint32][]imap.Flag{}, changed: make(chan struct{}, 100)}
}

func (u *unilateral) handler() *imapclient.Options {
	return &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunged = append(u.expunged, seq)
			u.mu.Unlock()
			u.changed <- struct{}{}
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
				u.changed <- struct{}{}
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.flags[m.SeqNum] = buf.Flags
			u.mu.Unlock()
			u.changed <- struct{}{}
		},
	}}
}

func (u *unilateral) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		u.mu.Lock()
		ok := cond()
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestTwoSessionsSeeEachOthersChanges(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: one\n\n1\n")
	env.deliver("alice", "INBOX", "Subject: two\n\n2\n")
	u := newUnilateral()
	a := env.dialClient("alice", "secret", u.handler())
	b := env.dialClient("alice", "secret", nil)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// Flag change by B shows up in A as FETCH FLAGS.
	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "FETCH FLAGS in session A", func() bool { return hasFlag(u.flags[1], imap.FlagAnswered) })

	// APPEND by B: A sees EXISTS.
	appendMessage(t, b, "INBOX", []byte("Subject: three\r\n\r\n3\r\n"), nil)
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "EXISTS 3 in session A", func() bool { return len(u.exists) > 0 && u.exists[len(u.exists)-1] == 3 })

	// EXPUNGE by B: A sees EXPUNGE, and not during a FETCH.
	if err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect(); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	early := len(u.expunged)
	u.mu.Unlock()
	if early != 0 {
		t.Fatalf("EXPUNGE sent during FETCH (RFC 3501 7.4.1)")
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "EXPUNGE 2 in session A", func() bool { return len(u.expunged) == 1 && u.expunged[0] == 2 })
	msgs, err := a.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 3 {
		t.Fatalf("A's view after expunge: %+v", msgs)
	}
}

func TestIdleSeesMaildirDelivery(t *testing.T) {
	env := newTestEnv(t, nil)
	u := newUnilateral()
	c := env.dialClient("alice", "secret", u.handler())
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the server start watching
	start := time.Now()
	env.deliver("alice", "INBOX", "Subject: pushed\n\nnew mail\n")
	u.wait(t, "EXISTS during IDLE", func() bool { return len(u.exists) > 0 && u.exists[len(u.exists)-1] == 1 })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("IDLE reported the delivery after %v", d)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("session unusable after IDLE: %v", err)
	}
}

func TestCopyMoveUIDPlus(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 4; i++ {
		env.deliver("alice", "INBOX", fmt.Sprintf("Subject: m%d\n\nbody\n", i))
	}
	u := newUnilateral()
	c := env.dialClient("alice", "secret", u.handler())
	if err := c.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 2}}, "Work").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cd.UIDValidity == 0 || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("COPYUID = %d %v %v", cd.UIDValidity, cd.SourceUIDs, cd.DestUIDs)
	}
	md, err := c.Move(imap.UIDSet{imap.UIDRange{Start: 3, Stop: 4}}, "Work").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.SourceUIDs.String() != "3:4" || md.DestUIDs.String() != "3:4" {
		t.Fatalf("MOVE COPYUID = %v %v", md.SourceUIDs, md.DestUIDs)
	}
	u.wait(t, "two EXPUNGEs for MOVE", func() bool { return len(u.expunged) == 2 })
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("COPY to missing mailbox: %v, want TRYCREATE", err)
	}
	st, err := c.Status("Work", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 4 || st.UIDNext != 5 {
		t.Fatalf("Work: %d messages, UIDNEXT %d", *st.NumMessages, st.UIDNext)
	}
	// UID EXPUNGE removes only the named deleted messages.
	if _, err := c.Select("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 3}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.UIDExpunge(imap.UIDSetNum(2)).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp) != 1 || exp[0] != 2 {
		t.Fatalf("UID EXPUNGE 2 expunged seqs %v, want [2]", exp)
	}
}

// The go-imap client parses our ENVELOPE and BODYSTRUCTURE of a multipart
// message with an attachment, RFC 2047 names and a group.
func TestEnvelopeAndBodyStructureParse(t *testing.T) {
	env := newTestEnv(t, nil)
	raw, err := os.ReadFile("testdata/messages/multipart.eml")
	if err != nil {
		t.Fatal(err)
	}
	env.deliver("alice", "INBOX", string(raw))
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	env0 := msgs[0].Envelope
	if env0.Subject != "Grüße report" || len(env0.From) != 1 || env0.From[0].Name != "Jürgen" || env0.MessageID != "multi-1@example.org" {
		t.Fatalf("envelope = %+v", env0)
	}
	mp, ok := msgs[0].BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 2 || !strings.EqualFold(mp.Subtype, "mixed") {
		t.Fatalf("bodystructure = %#v", msgs[0].BodyStructure)
	}
	att, ok := mp.Children[1].(*imap.BodyStructureSinglePart)
	if !ok || att.Filename() != "report.pdf" || !strings.EqualFold(att.Encoding, "base64") {
		t.Fatalf("attachment = %#v", mp.Children[1])
	}
}

func TestOverQuota(t *testing.T) {
	env := newTestEnv(t, nil)
	md := env.maildir("alice")
	env.deliver("alice", "INBOX", "Subject: small\n\nx\n")
	if err := md.SetQuota(maildir.Quota{Bytes: 300}); err != nil {
		t.Fatal(err)
	}
	c := env.dialClient("alice", "secret", nil)
	big := []byte("Subject: big\r\n\r\n" + strings.Repeat("y", 400) + "\r\n")
	cmd := c.Append("INBOX", int64(len(big)), nil)
	cmd.Write(big)
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("APPEND over quota: %v, want NO [OVERQUOTA]", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait(); err != nil {
			if !strings.Contains(err.Error(), "OVERQUOTA") {
				t.Fatalf("COPY over quota: %v, want NO [OVERQUOTA]", err)
			}
			return
		}
	}
	t.Fatal("COPY never hit the quota")
}

// A session in IDLE hears at once about another session's flag change and
// expunge (in-process notification, no polling).
func TestIdleSeesOtherSessionChanges(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: a\n\na\n")
	env.deliver("alice", "INBOX", "Subject: b\n\nb\n")
	u := newUnilateral()
	idler := env.dialClient("alice", "secret", u.handler())
	other := env.dialClient("alice", "secret", nil)
	for _, c := range []*imapclient.Client{idler, other} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	idle, err := idler.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "FETCH FLAGS during IDLE", func() bool { return hasFlag(u.flags[2], imap.FlagFlagged) })
	if err := other.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "EXPUNGE during IDLE", func() bool { return len(u.expunged) == 1 && u.expunged[0] == 2 })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Without file watching, IDLE still reports a delivery by polling.
func TestIdlePollingFallback(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.testNoWatch = true; o.testIdlePoll = 200 * time.Millisecond })
	u := newUnilateral()
	c := env.dialClient("alice", "secret", u.handler())
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	env.deliver("alice", "INBOX", "Subject: polled\n\nx\n")
	u.wait(t, "EXISTS by polling", func() bool { return len(u.exists) > 0 && u.exists[len(u.exists)-1] == 1 })
	idle.Close()
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A large message with bare LFs is streamed for BODY[]: the bytes and the
// size are its CRLF form, identical to what a parsed fetch would give.
func TestLargeLFMessageStreamed(t *testing.T) {
	env := newTestEnv(t, nil)
	var b strings.Builder
	b.WriteString("Subject: big\nFrom: a@example.org\n\n")
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "line %d of a long message\n", i)
	}
	lf := b.String()
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")
	env.deliver("alice", "INBOX", lf)
	c := env.dialClient("alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	whole := &imap.FetchItemBodySection{Peek: true}
	tail := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: int64(len(crlf) - 100), Size: 1000}}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{whole}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[0].FindBodySection(whole); string(got) != crlf {
		t.Fatalf("streamed BODY[] differs (%d bytes, want %d)", len(got), len(crlf))
	}
	if msgs[0].RFC822Size != int64(len(crlf)) {
		t.Fatalf("RFC822.SIZE = %d, want %d", msgs[0].RFC822Size, len(crlf))
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{tail}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[0].FindBodySection(tail); string(got) != crlf[len(crlf)-100:] {
		t.Fatalf("partial = %q", got)
	}
}
