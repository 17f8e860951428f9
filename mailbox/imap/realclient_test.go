package imap

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests with real IMAP clients installed on the machine; each is skipped
// when its client is missing.

func TestPythonImaplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "Subject: from the MTA\nFrom: x@example.org\n\nhello\n")
	host, port, _ := net.SplitHostPort(env.addr)
	script := `
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
typ, caps = M.capability()
assert b"IDLE" in caps[0], caps
M.login("alice", "secret")
typ, boxes = M.list()
names = [b.split(b' "." ')[-1] for b in boxes]
assert b"INBOX" in names and b"Sent" in names, boxes
typ, data = M.append("Sent", r"(\Seen)", None, b"Subject: python\r\n\r\nfrom imaplib\r\n")
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = M.select("INBOX")
assert data == [b"1"], data
typ, data = M.fetch("1", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK" and b"from the MTA" in data[0][1], data
typ, data = M.search(None, "UNSEEN")
assert data == [b"1"], data
typ, data = M.store("1", "+FLAGS", r"(\Deleted \Flagged)")
assert typ == "OK", data
typ, data = M.expunge()
assert data == [b"1"], data
M.select("Sent", readonly=True)
typ, data = M.fetch("1", "(FLAGS BODY[TEXT])")
assert data[0][1] == b"from imaplib\r\n", data
typ, data = M.uid("SEARCH", None, "ALL")
assert data == [b"1"], data
typ, data = M.status("Sent", "(MESSAGES UIDNEXT)")
assert b"MESSAGES 1 UIDNEXT 2" in data[0], data
M.close()
M.logout()
print("imaplib ok")
`
	out, err := exec.Command(python, "-c", script, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imaplib ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// TestMbsync syncs a mailbox both ways with isync's mbsync; a second run
// must find nothing to do. mbsync turns COMPRESS=DEFLATE on when offered
// (and flushes its compressor with Z_PARTIAL_FLUSH); the "plain" run
// disables the extension in its configuration.
func TestMbsync(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		t.Skip("mbsync not installed")
	}
	t.Run("compress", func(t *testing.T) { testMbsync(t, mbsync, true) })
	t.Run("plain", func(t *testing.T) { testMbsync(t, mbsync, false) })
}

func testMbsync(t *testing.T, mbsync string, compress bool) {
	env := newTestEnv(t, nil)
	// The size, compressed: 10,000 messages down and 1,000 up;
	// plain (and with -short) 500 and 20.
	n, up := 10000, 1000
	if testing.Short() || !compress {
		n, up = 500, 20
	}
	env.maildir("alice")
	fillFolder(t, env.maildirPath("alice"), n)
	host, port, _ := net.SplitHostPort(env.addr)
	dir := t.TempDir()
	local := filepath.Join(dir, "local") + "/"
	// A message that exists only on the client side goes up.
	if err := os.MkdirAll(filepath.Join(local, "Work", "cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"new", "tmp"} {
		os.MkdirAll(filepath.Join(local, "Work", sub), 0o700)
	}
	for i := 0; i < up; i++ {
		name := fmt.Sprintf("%d.local%d:2,S", 1700000000+i, i)
		body := fmt.Sprintf("From: me@example.org\r\nSubject: up %d\r\nMessage-ID: <up%d@example.org>\r\n\r\nup %d\r\n", i, i, i)
		os.WriteFile(filepath.Join(local, "Work", "cur", name), []byte(body), 0o600)
	}
	disable := ""
	if !compress {
		disable = "DisableExtension COMPRESS=DEFLATE"
	}
	// FSync no: the client's own fsync per stored message is not what is
	// tested, and at 10,000 messages it dominates the run.
	conf := fmt.Sprintf(`FSync no

IMAPAccount test
Host %s
Port %s
User alice
Pass secret
SSLType None
AuthMechs LOGIN
%s

IMAPStore remote
Account test

MaildirStore local
Path %s
Inbox %sINBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, disable, local, local)
	confPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		start := time.Now()
		// -Dn: the protocol transcript (without message data).
		cmd := exec.Command(mbsync, "-c", confPath, "-Dn", "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		t.Logf("mbsync run: %v", time.Since(start).Round(time.Millisecond))
		return string(out)
	}
	transcript := run()
	// The transcript shows the commands as mbsync writes them, before its
	// compressor; the tagged OK is the last line the server sends
	// uncompressed.
	compressed := strings.Contains(transcript, "COMPRESS DEFLATE") && strings.Contains(transcript, "OK DEFLATE active")
	if compressed != compress {
		t.Fatalf("mbsync used COMPRESS: %v, want %v\n%s", compressed, compress, transcript)
	}
	files, _ := filepath.Glob(filepath.Join(local, "INBOX", "cur", "*"))
	unseen, _ := filepath.Glob(filepath.Join(local, "INBOX", "new", "*"))
	files = append(files, unseen...)
	if len(files) != n {
		t.Fatalf("mbsync pulled %d messages, want %d", len(files), n)
	}
	f, err := env.maildir("alice").Folder("Work")
	if err != nil {
		t.Fatalf("Work not created on the server: %v", err)
	}
	snap, _ := f.Sync(false)
	if len(snap.Messages) != up {
		t.Fatalf("Work on server has %d messages, want %d", len(snap.Messages), up)
	}
	// State of both sides, to compare after a second run.
	state := func() string {
		var b strings.Builder
		filepath.Walk(local, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && !strings.Contains(p, ".mbsyncstate") && !strings.Contains(p, ".uidvalidity") {
				b.WriteString(strings.TrimPrefix(p, local) + "\n")
			}
			return nil
		})
		for _, name := range []string{"INBOX", "Work"} {
			f, err := env.maildir("alice").Folder(name)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := f.Sync(false)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range snap.Messages {
				fmt.Fprintf(&b, "%s %d %s %s\n", name, m.UID, m.Key, m.Flags)
			}
		}
		return b.String()
	}
	before := state()
	run()
	if after := state(); after != before {
		t.Fatalf("second mbsync run changed something:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Flags both ways: \Flagged set on the server for UID 1, \Answered set
	// by the client (Maildir "R") on UID 2.
	inbox, err := env.maildir("alice").Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	snap, err = inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := inbox.SetFlags(snap.Messages[0].Key, snap.Messages[0].Flags+"F", nil); err != nil {
		t.Fatal(err)
	}
	localFile := func(uid int) string {
		for _, sub := range []string{"cur", "new"} {
			m, _ := filepath.Glob(filepath.Join(local, "INBOX", sub, fmt.Sprintf("*,U=%d:*", uid)))
			m2, _ := filepath.Glob(filepath.Join(local, "INBOX", sub, fmt.Sprintf("*,U=%d", uid)))
			if m = append(m, m2...); len(m) == 1 {
				return m[0]
			}
		}
		t.Fatalf("no local file for UID %d", uid)
		return ""
	}
	two := localFile(2)
	base := filepath.Base(two)
	if i := strings.Index(base, ":2,"); i >= 0 {
		base = base[:i]
	}
	if err := os.Rename(two, filepath.Join(local, "INBOX", "cur", base+":2,R")); err != nil {
		t.Fatal(err)
	}
	run()
	if one := localFile(1); !strings.Contains(filepath.Base(one)[strings.Index(filepath.Base(one), ":2,"):], "F") {
		t.Errorf("server-side \\Flagged did not reach the client: %s", one)
	}
	snap, _ = inbox.Sync(false)
	if !strings.Contains(snap.Messages[1].Flags, "R") {
		t.Errorf("client-side \\Answered did not reach the server: %+v", snap.Messages[1])
	}

	// Expunges both ways: five messages removed on the server, five
	// removed from the client's Maildir.
	for _, m := range snap.Messages[10:15] {
		if err := inbox.Remove(m.Key); err != nil {
			t.Fatal(err)
		}
	}
	for uid := 20; uid < 25; uid++ {
		if err := os.Remove(localFile(uid)); err != nil {
			t.Fatal(err)
		}
	}
	run()
	localNow, _ := filepath.Glob(filepath.Join(local, "INBOX", "cur", "*"))
	localNew, _ := filepath.Glob(filepath.Join(local, "INBOX", "new", "*"))
	snap, _ = inbox.Sync(false)
	if got := len(localNow) + len(localNew); got != n-10 || len(snap.Messages) != n-10 {
		t.Errorf("after expunges both ways: client %d, server %d messages, want %d", got, len(snap.Messages), n-10)
	}
	before = state()
	run()
	if after := state(); after != before {
		t.Errorf("mbsync run after the expunges changed something")
	}
}
