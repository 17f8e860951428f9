package maildir

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const journalHelperEnv = "POSTERN_JOURNAL_HELPER"

func journalMessage(i int) string {
	return fmt.Sprintf("Subject: journaled %d\n\n%s\n", i, strings.Repeat("line of the body\n", i%50))
}

// TestHelperJournalProcess delivers through a journal and then waits to be
// killed: a server process that dies with SIGKILL.
func TestHelperJournalProcess(t *testing.T) {
	spec := os.Getenv(journalHelperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	root, journal, nstr, interval := splitHelperSpec(spec)
	n, _ := strconv.Atoi(nstr)
	iv, _ := time.ParseDuration(interval)
	j, err := OpenJournal(journal, JournalOptions{Interval: iv, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	m, err := OpenWithOptions(root, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failAt := -1
	if f := strings.Split(spec, "|"); len(f) > 4 {
		failAt, _ = strconv.Atoi(f[4])
	}
	for i := 0; i < n; i++ {
		if i == failAt {
			// The message file cannot be written (tmp/ is gone) while
			// its log record is flushed: the delivery fails and the
			// record is cancelled.
			tmp := filepath.Join(root, "tmp")
			if err := os.Rename(tmp, tmp+".away"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			_, err := m.Deliver(Inbox, strings.NewReader(journalMessage(i)), DeliverOptions{Journal: j})
			os.Rename(tmp+".away", tmp)
			if err == nil {
				fmt.Fprintln(os.Stderr, "delivery without tmp/ succeeded")
				os.Exit(2)
			}
			fmt.Printf("F %d\n", i)
			continue
		}
		key, err := m.Deliver(Inbox, strings.NewReader(journalMessage(i)), DeliverOptions{Journal: j})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("D %d %s\n", i, key)
	}
	if iv < time.Second {
		time.Sleep(10 * iv) // let checkpoints cover everything
	}
	fmt.Println("READY")
	time.Sleep(time.Hour)
}

func splitHelperSpec(s string) (string, string, string, string) {
	f := strings.Split(s, "|")
	return f[0], f[1], f[2], f[3]
}

// runJournalChild delivers n messages in a child process, kills it with
// SIGKILL once it has reported them, and returns index → key.
func runJournalChild(t *testing.T, root, journal string, n int, interval time.Duration) map[int]string {
	return runJournalChildFailing(t, root, journal, n, interval, -1)
}

// runJournalChildFailing is runJournalChild where delivery failAt (if not
// -1) fails after its log record is written; it is not in the result.
func runJournalChildFailing(t *testing.T, root, journal string, n int, interval time.Duration, failAt int) map[int]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperJournalProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), journalHelperEnv+"="+strings.Join([]string{root, journal, strconv.Itoa(n), interval.String(), strconv.Itoa(failAt)}, "|"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	keys := map[int]string{}
	sc := bufio.NewScanner(out)
	ready, failed := false, false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "READY" {
			ready = true
			break
		}
		if len(f) == 3 && f[0] == "D" {
			i, _ := strconv.Atoi(f[1])
			keys[i] = f[2]
		}
		if len(f) == 2 && f[0] == "F" && f[1] == strconv.Itoa(failAt) {
			failed = true
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if failAt >= 0 && !failed {
		t.Fatalf("child did not report the failed delivery %d: %s", failAt, stderr.String())
	}
	if failAt >= 0 {
		n--
	}
	if !ready || len(keys) != n {
		t.Fatalf("child delivered %d of %d messages (ready %v): %s", len(keys), n, ready, stderr.String())
	}
	return keys
}

// A killed server leaves the page cache intact; what a power cut would
// have lost is what was never flushed: the message files written since the
// last checkpoint. The test takes them away by hand (removed, cut short,
// moved to cur/ by a reader and then cut short) and checks that opening
// the journal puts every one back, whole, once, under its present name.
func TestJournalRestoresWhatACrashLost(t *testing.T) {
	m := newTestMaildir(t)
	journal := filepath.Join(t.TempDir(), "delivery.journal")
	keys := runJournalChild(t, m.Root(), journal, 40, time.Hour)

	newPath := func(i int) string { return filepath.Join(m.Root(), "new", keys[i]) }
	if err := os.Remove(newPath(0)); err != nil { // name and data lost
		t.Fatal(err)
	}
	if err := os.Truncate(newPath(1), 0); err != nil { // name kept, data lost
		t.Fatal(err)
	}
	moved := filepath.Join(m.Root(), "cur", keys[2]+":2,S") // read by a client before the crash
	if err := os.Rename(newPath(2), moved); err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(m.Root(), "cur", keys[3]+":2,FS")
	if err := os.Rename(newPath(3), cut); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(cut, 10); err != nil {
		t.Fatal(err)
	}

	time.Sleep(20 * time.Millisecond)
	opened := time.Now()
	j, err := OpenJournal(journal, JournalOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if st, err := os.Stat(newPath(0)); err != nil || !st.ModTime().Before(opened) {
		t.Fatalf("restored message's time %v is not its arrival time (before %v): %v", st.ModTime(), opened, err)
	}
	check := func(path string, i int) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(got) != journalMessage(i) {
			t.Fatalf("message %d restored with %q", i, got)
		}
	}
	check(newPath(0), 0)
	check(newPath(1), 1)
	check(moved, 2)
	check(cut, 3)
	for i := 4; i < 40; i++ {
		check(newPath(i), i)
	}
	for _, gone := range []string{newPath(2), newPath(3)} {
		if _, err := os.Stat(gone); err == nil {
			t.Fatalf("%s restored although the message is in cur/: a duplicate", gone)
		}
	}
	snap, err := mustFolder(t, m, Inbox).Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 40 {
		t.Fatalf("folder has %d messages after the replay, want 40", len(snap.Messages))
	}
	tmp, _ := os.ReadDir(filepath.Join(m.Root(), "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("replay left %d files in tmp/", len(tmp))
	}
}

// A journaled delivery whose file cannot be written fails, and its log
// record (flushed meanwhile) is cancelled: replay after a crash does not
// deliver the message the client was told had failed.
func TestJournalCancelsAFailedDelivery(t *testing.T) {
	m := newTestMaildir(t)
	journal := filepath.Join(t.TempDir(), "delivery.journal")
	keys := runJournalChildFailing(t, m.Root(), journal, 6, time.Hour, 3)
	for _, i := range []int{0, 1, 2, 4, 5} { // lose the delivered files: replay brings them back
		if err := os.Remove(filepath.Join(m.Root(), "new", keys[i])); err != nil {
			t.Fatal(err)
		}
	}
	j, err := OpenJournal(journal, JournalOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if st := j.Stats(); st.Replayed != 5 {
		t.Fatalf("replayed %d records, want the 5 delivered ones", st.Replayed)
	}
	ents, err := os.ReadDir(filepath.Join(m.Root(), "new"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 5 {
		t.Fatalf("%d messages in new/ after replay, want 5", len(ents))
	}
	for _, e := range ents {
		got, _ := os.ReadFile(filepath.Join(m.Root(), "new", e.Name()))
		if string(got) == journalMessage(3) {
			t.Fatal("the failed delivery came back from the journal")
		}
	}
}

// Messages a checkpoint covered are on disk already: a crash after it does
// not bring back what the user deleted since.
func TestJournalDoesNotResurrectCheckpointedMessages(t *testing.T) {
	m := newTestMaildir(t)
	journal := filepath.Join(t.TempDir(), "delivery.journal")
	keys := runJournalChild(t, m.Root(), journal, 10, 20*time.Millisecond)
	for _, k := range keys {
		if err := os.Remove(filepath.Join(m.Root(), "new", k)); err != nil {
			t.Fatal(err)
		}
	}
	j, err := OpenJournal(journal, JournalOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ents, _ := os.ReadDir(filepath.Join(m.Root(), "new"))
	if len(ents) != 0 {
		t.Fatalf("%d deleted messages came back from the journal", len(ents))
	}
}

func TestJournalDeliveryInProcess(t *testing.T) {
	m := newTestMaildir(t)
	path := filepath.Join(t.TempDir(), "delivery.journal")
	j, err := OpenJournal(path, JournalOptions{Size: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustFolder(t, m, Inbox)
	small := deliverString(t, inbox, "Subject: small\n\nhi\n", DeliverOptions{Journal: j})
	// Larger than a quarter of the 1 MiB log: delivered the usual way.
	bigBody := "Subject: big\n\n" + strings.Repeat("x", 400<<10) + "\n"
	big := deliverString(t, inbox, bigBody, DeliverOptions{Journal: j})
	flagged := deliverString(t, inbox, "Subject: flagged\n\n.\n", DeliverOptions{Journal: j, Flags: "S", InternalDate: time.Unix(1e9, 0)})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{small: "Subject: small\n\nhi\n", big: bigBody} {
		got, err := os.ReadFile(filepath.Join(m.Root(), "new", key))
		if err != nil || string(got) != want {
			t.Fatalf("%s: %v, %d bytes", key, err, len(got))
		}
	}
	st, err := os.Stat(filepath.Join(m.Root(), "cur", flagged+":2,S"))
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(time.Unix(1e9, 0)) {
		t.Fatalf("internal date %v", st.ModTime())
	}
	// After a clean close nothing is replayed even if files vanish.
	os.Remove(filepath.Join(m.Root(), "new", small))
	j, err = OpenJournal(path, JournalOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := os.Stat(filepath.Join(m.Root(), "new", small)); err == nil {
		t.Fatal("a message delivered before a clean close came back")
	}
}

func TestJournalRecordDecoding(t *testing.T) {
	for _, bad := range [][]byte{
		nil,
		{2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, '/'},
		append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0}, "/a/../b/x"...),
		append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0}, "rel/x"...),
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 200, 0, '/'},
	} {
		if _, _, _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%q) accepted", bad)
		}
	}
}

func mustFolder(t *testing.T, m *Maildir, name string) *Folder {
	t.Helper()
	f, err := m.Folder(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
