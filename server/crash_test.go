package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestMain lets the test binary double as a server process: with
// POSTERN_TEST_SERVE set to a configuration directory, it runs the server
// until killed, so a test can SIGKILL a real process in mid-load.
func TestMain(m *testing.M) {
	if dir := os.Getenv("POSTERN_TEST_SERVE"); dir != "" {
		os.Exit(serveForTest(dir))
	}
	code := m.Run()
	if buildOnce.path != "" {
		os.RemoveAll(filepath.Dir(buildOnce.path)) // the binary buildPostern built
	}
	os.Exit(code)
}

func serveForTest(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(dir, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Tell the parent where SMTP listens.
	fmt.Printf("SMTP %s\n", srv.Addrs("smtp")[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	srv.Shutdown(context.Background())
	return 0
}

func startServerProcess(t *testing.T, etc string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POSTERN_TEST_SERVE="+etc)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("server process did not start: %v", err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "SMTP "))
}

// Crash safety: SIGKILL the server in the middle of a load of several hundred
// messages. After a restart, every message that got a 250 is in the
// mailbox, and none is there twice.
func TestSIGKILLLosesNoAcceptedMessage(t *testing.T) {
	crashUnderLoad(t, nil, nil)
}

// The same with the writes a power cut would lose taken away: a SIGKILL
// leaves the page cache, so the test removes or cuts short every third
// message file by hand. With checkpoints an hour apart, every delivery is
// still in the delivery journal, which must put each one back at the
// restart, once.
func TestSIGKILLWithLostWritesRestoredFromJournal(t *testing.T) {
	damaged := 0
	crashUnderLoad(t, func(h *harness) {
		h.writeSetting("journalcheckpoint", "1h")
	}, func(md string) {
		files, _ := os.ReadDir(filepath.Join(md, "new"))
		for i, f := range files {
			p := filepath.Join(md, "new", f.Name())
			switch i % 3 {
			case 0:
				os.Remove(p)
				damaged++
			case 1:
				os.Truncate(p, 20)
				damaged++
			}
		}
	})
	if damaged < 100 {
		t.Fatalf("only %d files damaged", damaged)
	}
}

// crashUnderLoad kills the server with SIGKILL in mid-load; damage, when
// set, changes the Maildir before the restart.
func crashUnderLoad(t *testing.T, setup func(*harness), damage func(maildir string)) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "pw"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(h)
	}
	cmd, addr := startServerProcess(t, h.etc)

	const senders, perSender = 20, 40 // 800 messages offered
	var acked sync.Map                // subject -> true when 250 received
	var nAcked, nFailed atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < perSender; i++ {
				subject := fmt.Sprintf("crash-%02d-%03d", s, i)
				if err := sendOne(addr, h.user, testMessage(subject, "payload\r\n")); err != nil {
					nFailed.Add(1)
					continue
				}
				acked.Store(subject, true)
				nAcked.Add(1)
			}
		}(s)
	}
	// Kill once a good part of the load has been acknowledged.
	deadline := time.Now().Add(30 * time.Second)
	for nAcked.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	wg.Wait()
	t.Logf("acknowledged %d, failed %d before/after the kill", nAcked.Load(), nFailed.Load())
	if nAcked.Load() < 200 || nFailed.Load() == 0 {
		t.Fatalf("the kill did not land in mid-load (acked %d, failed %d)", nAcked.Load(), nFailed.Load())
	}

	// Restart and let it recover; then count what is in the Maildir.
	md := h.maildir(h.user)
	if damage != nil {
		damage(md)
	}
	cmd, _ = startServerProcess(t, h.etc)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	counts := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		files, err := os.ReadDir(filepath.Join(md, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(md, sub, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			subject := subjectOf(bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")))
			if !strings.Contains(string(data), "payload") {
				t.Errorf("message %s (%s) is cut short: %q", subject, f.Name(), data)
			}
			counts[subject]++
		}
	}
	missing := 0
	acked.Range(func(k, _ any) bool {
		if counts[k.(string)] == 0 {
			missing++
			t.Errorf("acknowledged message %s lost", k)
		}
		return true
	})
	for subj, n := range counts {
		if n > 1 {
			t.Errorf("message %s stored %d times", subj, n)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(md, "tmp"))
	t.Logf("after restart: %d messages stored, %d acknowledged lost, %d leftovers in tmp/", len(counts), missing, len(tmp))
}

func sendOne(addr, to string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	return c.SendMail("bob@example.net", []string{to}, bytes.NewReader(msg))
}
