package webmail

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"postern/mailbox/maildir"
)

// junkRecorder is a JunkLearn that keeps what it is told.
type junkRecorder struct {
	mu      sync.Mutex
	learned []learned
	err     error // returned by every call when set
}

type learned struct {
	login, subject string
	spam           bool
}

func (j *junkRecorder) learn(ctx context.Context, login string, msg []byte, spam bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.learned = append(j.learned, learned{login, summaryOf(msg).Subject, spam})
	return j.err
}

func (j *junkRecorder) take() []learned {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.learned
	j.learned = nil
	return out
}

func newJunkEnv(t *testing.T) (*testEnv, *junkRecorder) {
	rec := &junkRecorder{}
	return newEnvWith(t, func(o *Options) { o.JunkLearn = rec.learn }), rec
}

// bySubject finds a folder's message with the subject.
func (e *testEnv) bySubject(u testUser, folder, subject string) maildir.Message {
	e.t.Helper()
	f, err := e.maildir(u).Folder(folder)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range e.messages(u, folder) {
		if readSummary(f, m.Key).Subject == subject {
			return m
		}
	}
	e.t.Fatalf("no message %q in %s", subject, folder)
	return maildir.Message{}
}

func TestJunkButtons(t *testing.T) {
	e, rec := newJunkEnv(t)
	for _, s := range []string{"Cheap pills", "Lunch", "Prize", "Report"} {
		e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", s, "hello"))
	}
	b := e.login(alice)

	// The list and the message page offer Junk (not Not junk) outside Junk.
	list := b.get("/mail/list?f=INBOX")
	if !strings.Contains(list.body, `value="junk"`) || strings.Contains(list.body, `value="notjunk"`) {
		t.Fatalf("INBOX list buttons wrong")
	}
	pills := e.bySubject(alice, maildir.Inbox, "Cheap pills")
	if page := b.get(fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", pills.UID)); !strings.Contains(page.body, `value="junk"`) {
		t.Fatalf("no Junk button on the message page")
	}

	// Junk from the message page: to Junk (made and subscribed), $Junk
	// set, learned as spam, back to the list.
	r := b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(pills.UID)}, "op": {"junk"},
		"back": {fmt.Sprintf("/mail/msg?f=INBOX&uid=%d", pills.UID)}})
	if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "/mail/list?") {
		t.Fatalf("after Junk from the message page: %q", loc)
	}
	if got := flash(t, b.follow(r)); got != "1 message moved to Junk." {
		t.Fatalf("notice: %q", got)
	}
	junk := e.bySubject(alice, folderJunk, "Cheap pills")
	if !hasKeyword(&junk, "$Junk") {
		t.Fatalf("keywords in Junk: %v", junk.Keywords)
	}
	if n := len(e.messages(alice, maildir.Inbox)); n != 3 {
		t.Fatalf("INBOX has %d, want 3", n)
	}
	if subs, _ := e.maildir(alice).Subscriptions(); !slices.Contains(subs, "INBOX.Junk") {
		t.Fatalf("Junk not subscribed: %v", subs)
	}
	if got := rec.take(); len(got) != 1 || got[0] != (learned{alice.name, "Cheap pills", true}) {
		t.Fatalf("learned: %+v", got)
	}

	// Junk from the list's selection, two at once, one of them marked
	// $NotJunk before: the marks never stand together.
	prize, report := e.bySubject(alice, maildir.Inbox, "Prize"), e.bySubject(alice, maildir.Inbox, "Report")
	inbox, _ := e.maildir(alice).Folder(maildir.Inbox)
	if err := inbox.SetFlags(prize.Key, "S", []string{"$NotJunk", "work"}); err != nil {
		t.Fatal(err)
	}
	r = b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(prize.UID), fmt.Sprint(report.UID)}, "op": {"junk"}})
	if got := flash(t, b.follow(r)); got != "2 messages moved to Junk." {
		t.Fatalf("notice: %q", got)
	}
	p := e.bySubject(alice, folderJunk, "Prize")
	if !hasKeyword(&p, "$Junk") || hasKeyword(&p, "$NotJunk") || !hasKeyword(&p, "work") || p.Flags != "S" {
		t.Fatalf("Prize in Junk: flags %q keywords %v", p.Flags, p.Keywords)
	}
	if got := rec.take(); len(got) != 2 || !got[0].spam || !got[1].spam {
		t.Fatalf("learned: %+v", got)
	}

	// In Junk: Not junk instead of Junk; Junk again is refused.
	list = b.get("/mail/list?f=Junk")
	if !strings.Contains(list.body, `value="notjunk"`) || strings.Contains(list.body, `value="junk"`) {
		t.Fatalf("Junk list buttons wrong")
	}
	r = b.act(url.Values{"f": {"Junk"}, "uid": {fmt.Sprint(p.UID)}, "op": {"junk"}})
	if got := flash(t, b.follow(r)); got != "The messages are already in Junk." {
		t.Fatalf("notice: %q", got)
	}
	// Not junk outside Junk is refused, and moves nothing.
	lunch := e.bySubject(alice, maildir.Inbox, "Lunch")
	r = b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(lunch.UID)}, "op": {"notjunk"}})
	if got := flash(t, b.follow(r)); !strings.HasPrefix(got, "Not junk moves messages out of the Junk folder") {
		t.Fatalf("notice: %q", got)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("learned from refused actions: %+v", got)
	}

	// Not junk: back to INBOX, $NotJunk instead of $Junk, ham.
	r = b.act(url.Values{"f": {"Junk"}, "uid": {fmt.Sprint(p.UID)}, "op": {"notjunk"}})
	if got := flash(t, b.follow(r)); got != "1 message moved to INBOX as not junk." {
		t.Fatalf("notice: %q", got)
	}
	back := e.bySubject(alice, maildir.Inbox, "Prize")
	if !hasKeyword(&back, "$NotJunk") || hasKeyword(&back, "$Junk") {
		t.Fatalf("keywords back in INBOX: %v", back.Keywords)
	}
	if got := rec.take(); len(got) != 1 || got[0] != (learned{alice.name, "Prize", false}) {
		t.Fatalf("learned: %+v", got)
	}
}

func TestJunkOrdinaryMoves(t *testing.T) {
	e, rec := newJunkEnv(t)
	e.deliver(alice, folderJunk, simpleMessage("x@example.net", "Newsletter", "hello"))
	e.deliver(alice, folderJunk, simpleMessage("x@example.net", "Real spam", "hello"))
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Offer", "hello"))
	if err := e.maildir(alice).CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	b := e.login(alice)

	// Out of Junk into any folder but Trash: ham.
	nl := e.bySubject(alice, folderJunk, "Newsletter")
	b.act(url.Values{"f": {"Junk"}, "uid": {fmt.Sprint(nl.UID)}, "op": {"move"}, "to": {"Archive"}})
	if m := e.bySubject(alice, "Archive", "Newsletter"); !hasKeyword(&m, "$NotJunk") {
		t.Fatalf("keywords in Archive: %v", m.Keywords)
	}
	if got := rec.take(); len(got) != 1 || got[0].spam || got[0].subject != "Newsletter" {
		t.Fatalf("learned: %+v", got)
	}
	// Out of Junk to Trash, by move or by delete: nothing learned.
	rs := e.bySubject(alice, folderJunk, "Real spam")
	b.act(url.Values{"f": {"Junk"}, "uid": {fmt.Sprint(rs.UID)}, "op": {"delete"}})
	if m := e.bySubject(alice, folderTrash, "Real spam"); hasKeyword(&m, "$NotJunk") {
		t.Fatalf("deleted message marked not junk")
	}
	e.deliver(alice, folderJunk, simpleMessage("x@example.net", "More spam", "hello"))
	ms := e.bySubject(alice, folderJunk, "More spam")
	b.act(url.Values{"f": {"Junk"}, "uid": {fmt.Sprint(ms.UID)}, "op": {"move"}, "to": {folderTrash}})
	if len(e.messages(alice, folderTrash)) != 2 {
		t.Fatalf("move to Trash did not happen")
	}
	// Between other folders: nothing.
	offer := e.bySubject(alice, maildir.Inbox, "Offer")
	b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(offer.UID)}, "op": {"move"}, "to": {"Archive"}})
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("learned: %+v", got)
	}
	// The ordinary move into Junk says the same as the Junk button.
	offer = e.bySubject(alice, "Archive", "Offer")
	b.act(url.Values{"f": {"Archive"}, "uid": {fmt.Sprint(offer.UID)}, "op": {"move"}, "to": {"Junk"}})
	if m := e.bySubject(alice, folderJunk, "Offer"); !hasKeyword(&m, "$Junk") {
		t.Fatalf("keywords: %v", m.Keywords)
	}
	if got := rec.take(); len(got) != 1 || !got[0].spam {
		t.Fatalf("learned: %+v", got)
	}
}

// A learn that fails, a message too big to learn, and no JunkLearn at
// all: the move happens and is marked all the same.
func TestJunkLearnNeverFailsTheMove(t *testing.T) {
	e, rec := newJunkEnv(t)
	rec.err = errors.New("store down")
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "One", "hello"))
	e.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Big", strings.Repeat("spam spam spam\n", maxJunkLearn/15+10)))
	b := e.login(alice)
	one := e.bySubject(alice, maildir.Inbox, "One")
	r := b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(one.UID)}, "op": {"junk"}})
	if got := flash(t, b.follow(r)); got != "1 message moved to Junk." {
		t.Fatalf("notice with a failing learn: %q", got)
	}
	if got := rec.take(); len(got) != 1 {
		t.Fatalf("learned: %+v", got)
	}
	big := e.bySubject(alice, maildir.Inbox, "Big")
	if big.Size <= maxJunkLearn {
		t.Fatalf("test message too small: %d", big.Size)
	}
	r = b.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(big.UID)}, "op": {"junk"}})
	if got := flash(t, b.follow(r)); got != "1 message moved to Junk." {
		t.Fatalf("notice: %q", got)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("a message over %d bytes was learned: %+v", maxJunkLearn, got)
	}
	if m := e.bySubject(alice, folderJunk, "Big"); !hasKeyword(&m, "$Junk") {
		t.Fatalf("big message not marked: %v", m.Keywords)
	}

	off := newEnv(t)
	off.deliver(alice, maildir.Inbox, simpleMessage("x@example.net", "Two", "hello"))
	ob := off.login(alice)
	two := off.bySubject(alice, maildir.Inbox, "Two")
	r = ob.act(url.Values{"f": {"INBOX"}, "uid": {fmt.Sprint(two.UID)}, "op": {"junk"}})
	if got := flash(t, ob.follow(r)); got != "1 message moved to Junk." {
		t.Fatalf("notice without JunkLearn: %q", got)
	}
	if m := off.bySubject(alice, folderJunk, "Two"); !hasKeyword(&m, "$Junk") {
		t.Fatalf("not marked without JunkLearn: %v", m.Keywords)
	}
}

// Junk in a shared folder: refused in a read-only one, nothing learned;
// from a writable one the user's copy goes to their own Junk, marked and
// learned, and the shared message stays where the user may not remove it
// (a sticky folder, someone else's message).
func TestJunkFromSharedFolders(t *testing.T) {
	needRoot(t)
	carol, sharable, carolMD := sharedSetup(t)
	rec := &junkRecorder{}
	e := newEnvWith(t, func(o *Options) { o.JunkLearn = rec.learn }, carol, alice)
	b := e.login(carol)

	r := b.act(url.Values{"f": {"shared/team/News"}, "op": {"junk"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); !strings.Contains(f, "read-only") {
		t.Fatalf("Junk in a read-only shared folder: %q", f)
	}
	r = b.act(url.Values{"f": {"shared/team/Lists"}, "op": {"junk"}, "uid": {"1"}})
	if f := flash(t, b.follow(r)); !strings.Contains(f, "1 kept in the shared folder") {
		t.Fatalf("Junk in Lists: %q", f)
	}
	if files := filesIn(t, filepath.Join(sharable, ".Lists")); len(files) != 1 {
		t.Fatalf("the sharable folder: %q", files)
	}
	md, err := maildir.OpenAs(carolMD, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	junk, err := md.Folder(folderJunk)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := junk.Sync(false)
	if err != nil || len(snap.Messages) != 1 || !hasKeyword(&snap.Messages[0], "$Junk") {
		t.Fatalf("carol's Junk: %v %+v", err, snap)
	}
	if got := rec.take(); len(got) != 1 || got[0] != (learned{carol.name, "in Lists", true}) {
		t.Fatalf("learned: %+v", got)
	}
}
