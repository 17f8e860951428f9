package imap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// junkCall is one call of Options.JunkLearn.
type junkCall struct {
	login string
	msg   string
	spam  bool
}

// junkRecorder is a JunkLearn hook that records its calls. The hook is
// the IMAP server's boundary (what is behind it is the caller's), so a
// recording one is the real thing from this package's side.
type junkRecorder struct {
	mu    sync.Mutex
	calls []junkCall
	// block, when set, makes each call wait for it to close (or for ctx).
	block chan struct{}
}

func (r *junkRecorder) learn(ctx context.Context, login string, msg []byte, spam bool) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, junkCall{login, string(msg), spam})
	return nil
}

func (r *junkRecorder) recorded() []junkCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]junkCall(nil), r.calls...)
}

// junkMsg is a small message whose bytes name it.
func junkMsg(name string) string {
	return "From: someone@elsewhere.example\r\nSubject: " + name + "\r\nMessage-ID: <" + name + "@elsewhere.example>\r\n\r\nthe body of " + name + "\r\n"
}

// Filing with COPY, MOVE, UID COPY and UID MOVE teaches spam into Junk and
// ham out of it, except into Trash; other filings teach nothing. Shutdown
// learns what was queued, so the calls are complete once the server has
// stopped.
func TestJunkLearnFiling(t *testing.T) {
	for _, c := range []struct {
		name     string
		courier  bool
		from     string // folder the messages are delivered into and selected
		cmd      string
		wantSpam *bool // nil: nothing learned
	}{
		{name: "MOVE into Junk", from: "INBOX", cmd: "MOVE 1:2 Junk", wantSpam: ptr(true)},
		{name: "UID MOVE into Junk", from: "INBOX", cmd: "UID MOVE 1:* Junk", wantSpam: ptr(true)},
		{name: "COPY into Junk", from: "INBOX", cmd: "COPY 1:2 Junk", wantSpam: ptr(true)},
		{name: "UID COPY into Junk from Archive", from: "Archive", cmd: "UID COPY 1:2 Junk", wantSpam: ptr(true)},
		{name: "Courier namespace MOVE into INBOX.Junk", courier: true, from: "INBOX", cmd: "MOVE 1:2 INBOX.Junk", wantSpam: ptr(true)},
		{name: "MOVE out of Junk to INBOX", from: "Junk", cmd: "MOVE 1:2 INBOX", wantSpam: ptr(false)},
		{name: "UID MOVE out of Junk to Archive", from: "Junk", cmd: "UID MOVE 1:2 Archive", wantSpam: ptr(false)},
		{name: "COPY out of Junk to INBOX", from: "Junk", cmd: "COPY 1:2 INBOX", wantSpam: ptr(false)},
		{name: "Courier namespace MOVE out of INBOX.Junk", courier: true, from: "Junk", cmd: "MOVE 1:2 INBOX", wantSpam: ptr(false)},
		{name: "MOVE out of Junk to Trash", from: "Junk", cmd: "MOVE 1:2 Trash"},
		{name: "COPY out of Junk to Trash", from: "Junk", cmd: "UID COPY 1:2 Trash"},
		{name: "COPY within Junk", from: "Junk", cmd: "COPY 1:2 Junk"},
		{name: "MOVE INBOX to Archive", from: "INBOX", cmd: "MOVE 1:2 Archive"},
		{name: "MOVE INBOX to Trash", from: "INBOX", cmd: "MOVE 1:2 Trash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &junkRecorder{}
			env := newTestEnv(t, func(o *Options) {
				o.JunkLearn = rec.learn
				o.CourierNamespace = c.courier
			})
			r := env.login("alice", "secret") // makes the special-use folders
			msgs := []string{junkMsg("first"), junkMsg("second")}
			for _, m := range msgs {
				env.deliver("alice", c.from, m)
			}
			sel := c.from
			if c.courier && sel != "INBOX" {
				sel = "INBOX." + sel
			}
			r.send("S1 SELECT " + sel + "\r\n")
			r.until("S1 OK")
			r.send("C1 " + c.cmd + "\r\n")
			r.until("C1 OK")
			r.send("Z1 LOGOUT\r\n")
			r.until("Z1 OK")
			env.stop()

			calls := rec.recorded()
			if c.wantSpam == nil {
				if len(calls) != 0 {
					t.Fatalf("learned %d messages, want none: %+v", len(calls), calls)
				}
				return
			}
			if len(calls) != len(msgs) {
				t.Fatalf("learned %d messages, want %d: %+v", len(calls), len(msgs), calls)
			}
			for i, call := range calls {
				if call.login != "alice" || call.spam != *c.wantSpam || call.msg != msgs[i] {
					t.Errorf("call %d: %+v; want alice, spam %v, %q", i, call, *c.wantSpam, msgs[i])
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A message over maxJunkLearnSize is not handed to the hook; the others
// of the same MOVE are.
func TestJunkLearnSkipsHugeMessage(t *testing.T) {
	rec := &junkRecorder{}
	env := newTestEnv(t, func(o *Options) { o.JunkLearn = rec.learn })
	r := env.login("alice", "secret")
	huge := junkMsg("huge") + strings.Repeat("x", maxJunkLearnSize) + "\r\n"
	small := junkMsg("small")
	env.deliver("alice", "INBOX", huge)
	env.deliver("alice", "INBOX", small)
	r.send("S1 SELECT INBOX\r\n")
	r.until("S1 OK")
	r.send("C1 MOVE 1:2 Junk\r\n")
	r.until("C1 OK")
	env.stop()
	calls := rec.recorded()
	if len(calls) != 1 || calls[0].msg != small || !calls[0].spam {
		t.Fatalf("calls %+v; want the small message only, as spam", calls)
	}
}

// Another user's folder named Junk, shared with ACLs, is not this user's
// Junk: filing into it or out of it teaches nothing. Filing from the
// user's own Junk into another user's folder is ham, as into any folder
// of their own but Trash.
func TestJunkLearnSharedFolders(t *testing.T) {
	rec := &junkRecorder{}
	env := newTestEnv(t, func(o *Options) { o.JunkLearn = rec.learn })
	alice := env.login("alice", "secret")
	alice.send("A1 SETACL Junk bob lrswitedk\r\n")
	alice.until("A1 OK")
	env.deliver("alice", "Junk", junkMsg("alices-junk"))

	bob := env.login("bob", "hunter2")
	env.deliver("bob", "INBOX", junkMsg("bobs-mail"))
	bob.send("B1 SELECT INBOX\r\n")
	bob.until("B1 OK")
	bob.send("B2 COPY 1 #shared.alice.Junk\r\n")
	bob.until("B2 OK")
	bob.send("B3 SELECT #shared.alice.Junk\r\n")
	bob.until("B3 OK")
	bob.send("B4 MOVE 1:* INBOX\r\n")
	bob.until("B4 OK")
	bob.send("B5 SETACL Archive alice lri\r\n")
	bob.until("B5 OK")

	ham := junkMsg("alices-ham")
	env.deliver("alice", "Junk", ham)
	alice.send("A2 SELECT Junk\r\n")
	alice.until("A2 OK")
	alice.send("A3 MOVE 1 #shared.bob.Archive\r\n")
	alice.until("A3 OK")
	env.stop()
	calls := rec.recorded()
	if len(calls) != 1 || calls[0] != (junkCall{"alice", ham, false}) {
		t.Fatalf("calls %+v; want only alice's message out of her Junk, as ham", calls)
	}
	// The filings themselves happened: bob's INBOX holds his message and
	// the two moved out of alice's Junk (hers, and his copy).
	m, err := maildir.Open(env.maildirPath("bob"))
	if err != nil {
		t.Fatal(err)
	}
	for folder, want := range map[string]int{maildir.Inbox: 3, "Archive": 1} {
		f, err := m.Folder(folder)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := f.Sync(false)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(snap.Messages); n != want {
			t.Errorf("bob's %s has %d messages, want %d", folder, n, want)
		}
	}
}

// The learning never holds the command: with the hook blocked, MOVE into
// Junk still answers OK, and the learning happens once the hook is free.
func TestJunkLearnDoesNotBlockResponse(t *testing.T) {
	rec := &junkRecorder{block: make(chan struct{})}
	env := newTestEnv(t, func(o *Options) { o.JunkLearn = rec.learn })
	r := env.login("alice", "secret")
	for i := range 3 {
		env.deliver("alice", "INBOX", junkMsg(fmt.Sprint("m", i)))
	}
	r.send("S1 SELECT INBOX\r\n")
	r.until("S1 OK")
	r.send("C1 MOVE 1:3 Junk\r\n")
	r.until("C1 OK") // reads with a 5-second deadline
	r.send("N1 NOOP\r\n")
	r.until("N1 OK")
	if n := len(rec.recorded()); n != 0 {
		t.Fatalf("%d calls finished while the hook was blocked", n)
	}
	close(rec.block)
	env.stop()
	if n := len(rec.recorded()); n != 3 {
		t.Fatalf("%d messages learned after release, want 3", n)
	}
}

// The queue is bounded: what does not fit is dropped without blocking the
// caller, and close ends the worker even with the hook stuck, once its
// context ends.
func TestJunkLearnerQueueBoundAndClose(t *testing.T) {
	path := t.TempDir() + "/Maildir"
	if err := maildir.Make(path); err != nil {
		t.Fatal(err)
	}
	m, err := maildir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := m.Deliver(maildir.Inbox, strings.NewReader(junkMsg("q")), maildir.DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Folder(maildir.Inbox)
	if err != nil {
		t.Fatal(err)
	}

	started := make(chan struct{}, 1)
	var calls, cancelled int
	var mu sync.Mutex
	hook := func(ctx context.Context, login string, msg []byte, spam bool) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done() // stuck until close gives up
		mu.Lock()
		defer mu.Unlock()
		calls++
		if ctx.Err() == context.Canceled {
			cancelled++
		}
		return ctx.Err()
	}
	l := newJunkLearner(hook, testLogger(t))
	job := junkJob{login: "alice", spam: true, folder: f, key: key}
	l.enqueue([]junkJob{job})
	<-started // the worker holds one job; the queue is empty
	jobs := make([]junkJob, junkQueueLen+10)
	for i := range jobs {
		jobs[i] = job
	}
	done := make(chan struct{})
	go func() {
		l.enqueue(jobs)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("enqueue blocked on a full queue")
	}
	if n := len(l.queue); n != junkQueueLen {
		t.Fatalf("queue holds %d jobs, want %d", n, junkQueueLen)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		l.close(ctx)
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not end the worker")
	}
	select {
	case <-l.done:
	default:
		t.Fatal("close returned before the worker ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 || cancelled != 1 {
		t.Fatalf("%d calls (%d cancelled); want only the one in progress, cancelled", calls, cancelled)
	}
	l.enqueue([]junkJob{job}) // after close: dropped, no panic
}

// A filesystem-shared folder named Junk (Courier's shared.NICK.Junk) is
// not the user's Junk: filing into it teaches nothing; filing from the
// user's own Junk into it is ham, as into any folder but their Trash
// (which also shows that such a folder's copies can be read).
func TestJunkLearnFSSharedJunkIsNotJunk(t *testing.T) {
	needRoot(t)
	rec := &junkRecorder{}
	env := newTestEnv(t, func(o *Options) { o.JunkLearn = rec.learn })
	env.module.setIDs("bob", 1001, 1001)
	sharable := sharableMaildir(t)
	maildirmake(t, "-s", "write", "-f", "Junk", sharable)
	env.maildir("bob")
	maildirmake(t, "--add", "team="+sharable, env.maildirPath("bob"))
	bob := env.login("bob", "hunter2") // makes the special-use folders
	own := junkMsg("bobs-own")
	env.deliver("bob", "INBOX", own)
	// Bob's Maildir is his, as when the server and the MDA run as him
	// (here they run as root).
	err := filepath.Walk(env.maildirPath("bob"), func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, 1001, 1001)
	})
	if err != nil {
		t.Fatal(err)
	}
	bob.cmd("a", "SELECT INBOX", "OK")
	bob.cmd("b", "COPY 1 shared.team.Junk", "OK") // into a shared Junk: nothing
	bob.cmd("c", "COPY 1 Junk", "OK")             // into his own: spam
	bob.cmd("d", "SELECT Junk", "OK")
	bob.cmd("e", "COPY 1 shared.team.Junk", "OK") // out of his own Junk: ham
	env.stop()
	calls := rec.recorded()
	want := []junkCall{{"bob", own, true}, {"bob", own, false}}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %+v; want %+v", calls, want)
	}
}

// Learning follows the \Junk special use, not a folder's name: a folder a
// client made and calls "Spam" has no special use (LIST says so), and
// filing into it teaches nothing; the \Junk folder (Maildir++ .Junk)
// does.
func TestJunkLearnFollowsSpecialUse(t *testing.T) {
	rec := &junkRecorder{}
	env := newTestEnv(t, func(o *Options) { o.JunkLearn = rec.learn })
	r := env.login("alice", "secret")
	env.deliver("alice", "INBOX", junkMsg("first"))
	env.deliver("alice", "INBOX", junkMsg("second"))
	r.send("A1 CREATE Spam\r\n")
	r.until("A1 OK")
	r.send("L1 LIST \"\" * RETURN (SPECIAL-USE)\r\n")
	list := strings.Join(r.until("L1 OK"), "\n")
	if !regexpMatch(`(?m)^\* LIST \([^)]*\\Junk[^)]*\) "\." Junk\r?$`, list) || regexpMatch(`(?m)^\* LIST \([^)]*\\Junk[^)]*\) "\." Spam`, list) {
		t.Fatalf("LIST special uses:\n%s", list)
	}
	r.send("S1 SELECT INBOX\r\n")
	r.until("S1 OK")
	r.send("C1 MOVE 1 Spam\r\n")
	r.until("C1 OK")
	r.send("C2 MOVE 1 Junk\r\n") // the second message, now 1
	r.until("C2 OK")
	r.send("Z1 LOGOUT\r\n")
	r.until("Z1 OK")
	env.stop()
	calls := rec.recorded()
	if len(calls) != 1 || !calls[0].spam || calls[0].msg != junkMsg("second") {
		t.Fatalf("learned %+v; want the message moved into Junk alone", calls)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
