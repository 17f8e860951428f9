package imap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// courierImapd is Debian's courier-imap program; under CI (.ci/run
// installs it) its absence is a failure.
func courierImapd(t *testing.T) string {
	t.Helper()
	const imapd = "/usr/bin/imapd"
	if _, err := os.Stat(imapd); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Courier's imapd is missing; .ci/run installs courier-imap")
		}
		t.Skip("Courier's imapd (courier-imap) is not installed")
	}
	return imapd
}

// runCourierAs runs Courier's imapd, pre-authenticated, on maildir as
// uid/gid, with the script on its standard input.
func runCourierAs(t *testing.T, imapd, maildir string, uid, gid int, script string) string {
	t.Helper()
	c := exec.Command(imapd, maildir)
	c.Dir = maildir
	c.Env = []string{"PATH=/usr/bin:/bin", "MAILDIR=" + maildir, "AUTHENTICATED=bob", "IMAP_KEYWORDS=1"}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	c.Stdin = strings.NewReader(script)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		t.Fatalf("Courier's imapd: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n")
}

var (
	listLineRe  = regexp.MustCompile(`^\* (LIST|LSUB) \(([^)]*)\) "\." "?([^"]*)"?$`)
	fetchFlagRe = regexp.MustCompile(`FLAGS \(([^)]*)\)`)
	fetchUIDRe  = regexp.MustCompile(`UID (\d+)`)
)

// listSet normalises LIST lines (Courier quotes names, Postern does not
// need to) to "ATTRS NAME", sorted.
func listSet(out string, prefix string) []string {
	var set []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if m := listLineRe.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[3], prefix) {
			set = append(set, m[1]+" ("+m[2]+") "+m[3])
		}
	}
	slices.Sort(set)
	return set
}

// uidFlags normalises "FETCH (UID n FLAGS (...))" lines to "UID FLAGS"
// with the flags sorted and \Recent left out (it is per session).
func uidFlags(out string) []string {
	var set []string
	for _, l := range strings.Split(out, "\n") {
		u, f := fetchUIDRe.FindStringSubmatch(l), fetchFlagRe.FindStringSubmatch(l)
		if u == nil || f == nil || !strings.Contains(l, " FETCH ") {
			continue
		}
		flags := slices.DeleteFunc(strings.Fields(f[1]), func(s string) bool { return s == `\Recent` })
		slices.Sort(flags)
		set = append(set, u[1]+" "+strings.Join(flags, " "))
	}
	return set
}

// TestFSSharedCourierDifferential runs Courier's imapd and Postern on one
// Maildir: Courier first (as bob's uid) lists, subscribes, reads and flags
// a shared folder; then Postern, on the private state Courier left, must
// list the same folders, show the same UIDs and flags, and read the same
// messages; and Courier again sees the flag Postern stored.
func TestFSSharedCourierDifferential(t *testing.T) {
	needRoot(t)
	imapd := courierImapd(t)
	env := newTestEnv(t, nil)
	env.module.setIDs("bob", 1001, 1001)
	sharable := sharableMaildir(t)
	for _, folder := range []string{"Lists", "News"} {
		for _, subj := range []string{"one", "two"} {
			key := deliverTo(t, sharable, folder, "Subject: "+subj+" "+folder+"\n\nbody "+subj+"\n")
			// In cur/, where Courier's sync looks (a folder others may
			// not write keeps its new/ messages there for Courier).
			dir := filepath.Join(sharable, "."+folder)
			if err := os.Rename(filepath.Join(dir, "new", key), filepath.Join(dir, "cur", key+":2,")); err != nil {
				t.Fatal(err)
			}
		}
	}
	md := env.maildirPath("bob")
	env.maildir("bob")
	// Courier runs as bob: the way to his Maildir must be open to him.
	for _, d := range []string{filepath.Dir(env.root), env.root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	maildirmake(t, "--add", "team="+sharable, md)
	chownTree(t, filepath.Dir(md), 1001, 1001)

	courier := runCourierAs(t, imapd, md, 1001, 1001, strings.Join([]string{
		`a LIST "" "shared*"`,
		`b SUBSCRIBE shared.team.Lists`,
		`c SELECT shared.team.Lists`,
		`d FETCH 1:* (BODY[])`,
		`e STORE 1 +FLAGS (\Flagged)`,
		`f FETCH 1:* (UID FLAGS)`,
		`g EXAMINE shared.team.News`,
		`h FETCH 1:* (BODY.PEEK[])`,
		`i LOGOUT`, ``}, "\n"))
	if !strings.Contains(courier, "c OK [READ-WRITE]") || !strings.Contains(courier, "g OK [READ-ONLY]") {
		t.Fatalf("Courier's session:\n%s", courier)
	}
	cFlags := uidFlags(courier[strings.Index(courier, "\ne OK"):strings.Index(courier, "\nf OK")])

	bob := env.login("bob", "hunter2")
	pList := strings.Join(bob.cmd("a", `LIST "" "shared*"`, "OK"), "\n")
	if c, p := listSet(courier, "shared"), listSet(pList, "shared"); !slices.Equal(c, p) {
		t.Errorf("LIST shared*:\nCourier %q\nPostern %q", c, p)
	}
	bob.cmd("b", "SELECT shared.team.Lists", "OK [READ-WRITE]")
	pFlags := uidFlags(strings.Join(bob.cmd("c", "FETCH 1:* (UID FLAGS)", "OK"), "\n"))
	if !slices.Equal(cFlags, pFlags) || len(pFlags) != 2 {
		t.Errorf("UID and flags on Courier's private state:\nCourier %q\nPostern %q", cFlags, pFlags)
	}
	bob.cmd("d", "EXAMINE shared.team.News", "OK [READ-ONLY]")
	pNews := strings.Join(bob.cmd("e", "FETCH 1:* (BODY.PEEK[])", "OK"), "\n")
	for _, want := range []string{"body one", "body two"} {
		if !strings.Contains(courier, want) || !strings.Contains(pNews, want) {
			t.Errorf("News body %q: Courier %v, Postern %v", want, strings.Contains(courier, want), strings.Contains(pNews, want))
		}
	}
	bob.cmd("f", "SELECT shared.team.Lists", "OK")
	bob.cmd("g", "STORE 2 +FLAGS (\\Answered)", "OK")
	bob.cmd("h", "LOGOUT", "OK")

	if os.Getenv("FSSHARED_DEBUG") != "" {
		out, _ := exec.Command("find", md, "-ls").CombinedOutput()
		t.Logf("courier:\n%s\nafter postern:\n%s", courier, out)
	}
	// Courier again, on what Postern left.
	chownTree(t, filepath.Dir(md), 1001, 1001)
	again := runCourierAs(t, imapd, md, 1001, 1001, "a SELECT shared.team.Lists\nb FETCH 1:* (UID FLAGS)\nc LOGOUT\n")
	if got := uidFlags(again); len(got) != 2 || !strings.Contains(got[1], `\Answered`) || !strings.Contains(got[0], `\Flagged`) {
		t.Errorf("Courier after Postern: %q\n%s", got, again)
	}
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
