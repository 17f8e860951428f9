package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postern/gateway/delivery"
)

// crashChildEnv names the spool a re-executed test binary fills with
// messages until it is killed (see TestMain).
const crashChildEnv = "POSTERN_QUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if dir := os.Getenv(deliveryChildEnv); dir != "" {
		deliveryChild(dir)
		return
	}
	if spec := os.Getenv(adminChildEnv); spec != "" {
		adminChild(spec)
		return
	}
	os.Exit(m.Run())
}

// adminChildEnv makes the re-executed test binary run one admin command,
// "retry|delete|bounce DIR ID", as `postern queue` would from its own
// process.
const adminChildEnv = "POSTERN_QUEUE_ADMIN_CHILD"

func adminChild(spec string) {
	f := strings.Fields(spec)
	var err error
	switch f[0] {
	case "retry":
		err = Retry(f[1], f[2])
	case "delete":
		err = Delete(f[1], f[2])
	case "bounce":
		err = Bounce(f[1], f[2])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runAdminProcess runs an admin command in another process.
func runAdminProcess(t *testing.T, op, dir, id string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), adminChildEnv+"="+op+" "+dir+" "+id)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s in another process: %v: %s", op, err, out)
	}
}

// crashMessage is message number seq: its body size varies and its last
// line says which message it is, so a torn message is visible.
func crashMessage(seq int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: crash %d\r\n\r\n", seq)
	for i := range seq%7*300 + 50 {
		fmt.Fprintf(&b, "line %d of message %d, padding padding padding\r\n", i, seq)
	}
	fmt.Fprintf(&b, "END %d\r\n", seq)
	return b.String()
}

// crashChild enqueues from 8 goroutines forever and prints "ACK seq id"
// after each Enqueue returns: what the SMTP client would see as a 250.
func crashChild(dir string) {
	q, err := Open(Options{Dir: dir, Hostname: "crash.test"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var seq int
	var wg sync.WaitGroup
	base := int(time.Now().UnixNano() % 1e6 * 1000)
	for range 8 {
		wg.Go(func() {
			for {
				mu.Lock()
				seq++
				n := base + seq
				mu.Unlock()
				e := delivery.Envelope{From: "a@s.example", Rcpts: []delivery.Recipient{{Addr: "r" + strconv.Itoa(n) + "@x.example"}}}
				id, err := q.Enqueue(context.Background(), e, strings.NewReader(crashMessage(n)))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				os.Stdout.WriteString(fmt.Sprintf("ACK %d %s\n", n, id))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashDuringEnqueueLosesNothingAcknowledged kills a process in the
// middle of a stream of Enqueues with SIGKILL, at random moments, and
// checks what a restart finds: every acknowledged message, once, whole;
// no half message; no debris.
func TestCrashDuringEnqueueLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	acked := map[string]int{} // id -> seq
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100000)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		n := 0
		for l := range lines {
			var seq int
			var id string
			if _, err := fmt.Sscanf(l, "ACK %d %s", &seq, &id); err == nil {
				acked[id] = seq
				n++
			}
		}
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Fatalf("child: %s", stderr.String())
		}
		t.Logf("round %d: %d messages acknowledged before SIGKILL", round, n)

		// Restart: Open recovers the spool.
		q, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		list, err := List(dir)
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for _, s := range list {
			if present[s.ID] {
				t.Fatalf("%s listed twice", s.ID)
			}
			present[s.ID] = true
			body, err := os.ReadFile(filepath.Join(dir, "spool", s.ID+".msg"))
			if err != nil {
				t.Fatal(err)
			}
			var seq int
			if _, err := fmt.Sscanf(string(body), "Subject: crash %d", &seq); err != nil {
				t.Fatalf("%s: unreadable message %q", s.ID, body[:min(len(body), 40)])
			}
			if string(body) != crashMessage(seq) {
				t.Fatalf("%s: message %d is torn (%d bytes)", s.ID, seq, len(body))
			}
			if s.Rcpts[0].Addr != "r"+strconv.Itoa(seq)+"@x.example" {
				t.Fatalf("%s: envelope of another message: %+v", s.ID, s.Rcpts)
			}
		}
		for id, seq := range acked {
			if !present[id] {
				t.Fatalf("acknowledged message %d (%s) lost", seq, id)
			}
		}
		if n := countFiles(t, filepath.Join(dir, "tmp")); n != 0 {
			t.Errorf("%d files left in tmp/ after recovery", n)
		}
		if n := countFiles(t, filepath.Join(dir, "spool")); n != 2*len(list) {
			t.Errorf("%d files in spool/ for %d messages: debris left", n, len(list))
		}
		t.Logf("round %d: %d messages in the queue, %d acknowledged in all", round, len(list), len(acked))
		q.Close()
	}
}

func TestGroupCommitUnder50ConcurrentEnqueues(t *testing.T) {
	for name, mode := range map[string]commitMode{"group-perfile": commitGroup, "group-syncfs": commitGroupSyncfs, "per-message": commitPerMessage} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.commit = mode })
			var wg sync.WaitGroup
			ids := make([]string, 50)
			for i := range 50 {
				wg.Go(func() {
					id, err := h.q.Enqueue(context.Background(), env("a@s.example", remote(fmt.Sprintf("r%d@x.example", i))), strings.NewReader(crashMessage(i)))
					if err != nil {
						t.Error(err)
					}
					ids[i] = id
				})
			}
			wg.Wait()
			for i, id := range ids {
				// Durable on return: both files are in spool/ already.
				body, err := os.ReadFile(filepath.Join(h.dir, "spool", id+".msg"))
				if err != nil || string(body) != crashMessage(i) {
					t.Fatalf("message %d: %v", i, err)
				}
				if e := h.envelope(id); e.Rcpts[0].Addr != fmt.Sprintf("r%d@x.example", i) {
					t.Fatalf("message %d: envelope %+v", i, e)
				}
			}
			flushes := h.q.flushes.Load()
			t.Logf("%s: 50 enqueues in %d flushes", name, flushes)
			if mode != commitPerMessage && flushes >= 50 {
				t.Errorf("no batching: %d flushes for 50 concurrent enqueues", flushes)
			}
			if n := countFiles(t, filepath.Join(h.dir, "tmp")); n != 0 {
				t.Errorf("%d files left in tmp/", n)
			}
		})
	}
}

func TestOpenRecoversDebris(t *testing.T) {
	h := newHarness(t, nil)
	keep := h.enqueue(env("a@s.example", remote("r@x.example")), testMessage)
	h.q.Close()
	spool := filepath.Join(h.dir, "spool")
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(h.dir, "tmp", "0000000000001aaaaaaaaaa.msg"), "half a mess")
	write(filepath.Join(spool, "0000000000002bbbbbbbbbb.msg"), testMessage) // no envelope
	envOnly, _ := os.ReadFile(filepath.Join(spool, keep+".env"))            // an envelope without message
	write(filepath.Join(spool, "0000000000003cccccccccc.env"), strings.Replace(string(envOnly), keep, "0000000000003cccccccccc", 1))
	write(filepath.Join(spool, "0000000000004dddddddddd.msg"), testMessage) // corrupt envelope
	write(filepath.Join(spool, "0000000000004dddddddddd.env"), `{"Version":1,"ID":"0000000000004dddddddddd","Rcpts":[{"Addr":"x\r\nQUIT"}]}`)

	q, err := Open(Options{Dir: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	entries, _ := os.ReadDir(spool)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{keep + ".env", keep + ".msg"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("spool after recovery: %v, want %v", names, want)
	}
	if n := countFiles(t, filepath.Join(h.dir, "tmp")); n != 0 {
		t.Errorf("%d files in tmp/", n)
	}
	if n := countFiles(t, filepath.Join(h.dir, "corrupt")); n != 2 {
		t.Errorf("%d files in corrupt/, want the corrupt envelope and its message", n)
	}
}

func TestOpenBesideARunningQueueKeepsFreshFiles(t *testing.T) {
	h := newHarness(t, nil) // holds the spool
	fresh := filepath.Join(h.dir, "tmp", "0000000000001aaaaaaaaaa.msg")
	if err := os.WriteFile(fresh, []byte("being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	q2, err := Open(Options{Dir: h.dir}) // e.g. sendmail injecting
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a second Open removed another process's file in progress: %v", err)
	}
}

// TestRedeliveryAfterLostStateCarriesTheSameKey simulates a crash between
// a delivery and the write of its state (the spool files are put back as
// they were before the delivery) and checks that the second delivery
// carries the same DeliveryKey, so an agent that remembers keys delivers
// once.
func TestRedeliveryAfterLostStateCarriesTheSameKey(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	seen := map[string]int{}
	mailbox := 0
	agent := delivery.DelivererFunc(func(_ context.Context, _ *delivery.Envelope, rcpts []delivery.Recipient, _ delivery.Message) []delivery.Result {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rcpts {
			if seen[r.DeliveryKey]++; seen[r.DeliveryKey] == 1 {
				mailbox++
			}
		}
		return make([]delivery.Result, len(rcpts))
	})
	h.q.opt.Local = agent
	id := h.enqueue(env("a@s.example", local("u@here.example"), local("v@here.example")), testMessage)
	spool := filepath.Join(h.dir, "spool")
	before := map[string][]byte{}
	for _, f := range []string{id + ".msg", id + ".env"} {
		b, err := os.ReadFile(filepath.Join(spool, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}
	h.start()
	waitFor(t, "delivered", func() bool { return h.gone(id) })
	h.stop()
	h.q.Close()
	for f, b := range before {
		if err := os.WriteFile(filepath.Join(spool, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q2, err := Open(Options{Dir: h.dir, Local: agent, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.q = q2
	h.start()
	waitFor(t, "delivered again", func() bool { return h.gone(id) })
	mu.Lock()
	defer mu.Unlock()
	if seen[id+".0"] != 2 || seen[id+".1"] != 2 || mailbox != 2 {
		t.Errorf("keys seen %v, mailbox writes %d; want each key twice and 2 writes", seen, mailbox)
	}
}

// deliveryChildEnv makes the re-executed test binary run the queue on a
// spool with a real, idempotent local agent until it is killed.
const deliveryChildEnv = "POSTERN_QUEUE_DELIVERY_CHILD"

// mailboxAgent is a local delivery agent that appends each delivery's key
// to a file, fsync'd, and skips keys it already holds: what a Maildir
// agent does with Recipient.DeliveryKey to be idempotent.
type mailboxAgent struct {
	mu   sync.Mutex
	path string
	have map[string]bool
}

func openMailboxAgent(path string) (*mailboxAgent, error) {
	a := &mailboxAgent{path: path, have: map[string]bool{}}
	keys, err := readMailboxLog(path)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		a.have[k] = true
	}
	return a, nil
}

// readMailboxLog returns the complete lines of the log (a torn last line
// from a crash is not a delivery).
func readMailboxLog(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var keys []string
	for {
		line, rest, ok := strings.Cut(string(b), "\n")
		if !ok {
			break
		}
		keys = append(keys, line)
		b = []byte(rest)
	}
	return keys, nil
}

func (a *mailboxAgent) Deliver(_ context.Context, _ *delivery.Envelope, rcpts []delivery.Recipient, _ delivery.Message) []delivery.Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]delivery.Result, len(rcpts))
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		for i := range out {
			out[i] = delivery.Result{Err: err}
		}
		return out
	}
	defer f.Close()
	for i, r := range rcpts {
		if a.have[r.DeliveryKey] {
			continue // delivered before a crash lost the queue's record of it
		}
		if _, err := f.WriteString(r.DeliveryKey + "\n"); err != nil {
			out[i] = delivery.Result{Err: err}
			continue
		}
		if err := f.Sync(); err != nil {
			out[i] = delivery.Result{Err: err}
			continue
		}
		a.have[r.DeliveryKey] = true
	}
	return out
}

func deliveryChild(dir string) {
	agent, err := openMailboxAgent(filepath.Join(dir, "..", "mailbox.log"))
	if err == nil {
		var q *Queue
		q, err = Open(Options{Dir: dir, Local: agent, Concurrency: 8})
		if err == nil {
			err = q.Run(context.Background())
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}

// TestCrashDuringDeliveryDeliversEachRecipientOnce kills the queue runner
// with SIGKILL several times while it delivers 300 messages to a local
// agent that uses DeliveryKey; after the last restart every recipient is
// in the mailbox exactly once and the queue is empty.
func TestCrashDuringDeliveryDeliversEachRecipientOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "queue")
	q, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 300 {
		n := 1 + i%3
		var rcpts []delivery.Recipient
		for j := range n {
			rcpts = append(rcpts, local(fmt.Sprintf("u%d@here.example", j)))
		}
		id, err := q.Enqueue(context.Background(), env("", rcpts...), strings.NewReader(crashMessage(i)))
		if err != nil {
			t.Fatal(err)
		}
		for j := range n {
			want = append(want, fmt.Sprintf("%s.%d", id, j))
		}
	}
	q.Close()
	runChild := func(kill bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), deliveryChildEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if kill {
			time.Sleep(time.Duration(30+rand.IntN(120)) * time.Millisecond)
		} else {
			waitFor(t, "queue empty", func() bool { l, _ := List(dir); return len(l) == 0 })
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if s := stderr.String(); s != "" {
			t.Fatalf("child: %s", s)
		}
	}
	for round := range 4 {
		runChild(true)
		keys, _ := readMailboxLog(filepath.Join(base, "mailbox.log"))
		t.Logf("round %d: %d of %d deliveries made before SIGKILL", round, len(keys), len(want))
	}
	runChild(false)
	keys, err := readMailboxLog(filepath.Join(base, "mailbox.log"))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range keys {
		count[k]++
	}
	for _, k := range want {
		if count[k] != 1 {
			t.Errorf("%s delivered %d times", k, count[k])
		}
	}
	if len(keys) != len(want) {
		t.Errorf("%d deliveries, want %d", len(keys), len(want))
	}
}
