package imap

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMutt drives mutt (under script(1) for a terminal) to open INBOX over
// IMAP and save (move) the first message to Archive; the server must end
// up with the message in Archive and an expunged INBOX.
func TestMutt(t *testing.T) {
	mutt, err := exec.LookPath("mutt")
	if err != nil {
		t.Skip("mutt not installed")
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script not installed")
	}
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", "From: carol@example.org\nSubject: for mutt\n\nhello mutt\n")
	host, port, _ := net.SplitHostPort(env.addr)
	dir := t.TempDir()
	rc := filepath.Join(dir, "muttrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`set folder="imap://alice:secret@%s:%s/"
set spoolfile="+INBOX"
set ssl_starttls=no
set ssl_force_tls=no
set imap_passive=no
set confirmcreate=no
set confirmappend=no
set move=no
set quit=yes
set delete=yes
set header_cache=""
set message_cachedir=""
`, host, port)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qec",
		mutt+` -n -F `+rc+` -f =INBOX -e 'push "<save-message>=Archive<enter><sync-mailbox><quit>"'`, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=xterm", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mutt: %v\n%q", err, out)
	}
	for name, want := range map[string]int{"Archive": 1, "INBOX": 0} {
		f, err := env.maildir("alice").Folder(name)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := f.Sync(false)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Messages) != want {
			t.Fatalf("%s has %d messages after mutt's save; output:\n%q", name, len(snap.Messages), out)
		}
	}
}
