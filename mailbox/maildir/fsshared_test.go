package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseSharedMaildirs(t *testing.T) {
	in := strings.Join([]string{
		"team\t/srv/shared",         // good
		"# a comment",               // skipped quietly
		"",                          // blank
		"spaces   /srv/spaced  # c", // good: spaces, trailing comment
		"nopath",                    // no path
		"../up\t/srv/x",             // NICK with . and /
		"a.b\t/srv/x",               // NICK with the delimiter
		"a/b\t/srv/x",               // NICK with a slash
		"rel\trelative/path",        // PATH not absolute
		"dots\t/srv/../etc",         // PATH with ..
		"ctl\x01\t/srv/x",           // control character in NICK
		"team\t/srv/other",          // NICK again: the first wins
		"star*\t/srv/x",             // IMAP wildcard in NICK
	}, "\n")
	good, bad := ParseSharedMaildirs([]byte(in))
	want := []SharedMaildir{{"team", "/srv/shared"}, {"spaces", "/srv/spaced"}}
	if len(good) != len(want) || good[0] != want[0] || good[1] != want[1] {
		t.Fatalf("good = %q, want %q", good, want)
	}
	if len(bad) != 9 {
		t.Fatalf("bad = %q, want 9 skipped lines", bad)
	}
	for _, e := range bad {
		if !errors.Is(e, ErrBadSharedMaildirs) {
			t.Errorf("%v is not ErrBadSharedMaildirs", e)
		}
	}
	if le := bad[0].(*SharedLineError); le.Line != 5 {
		t.Errorf("first bad line = %d, want 5", le.Line)
	}
}

// sharableFixture makes, in a directory others may reach, a sharable
// maildir with a world-readable folder Lists and a message in it, and a
// user's Maildir with a shared-maildirs line for it; it returns both and
// the message's key.
func sharableFixture(t *testing.T) (sharable, user, key string) {
	t.Helper()
	top, err := os.MkdirTemp("", "postern-fsshared-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	sharable = filepath.Join(top, "shared")
	user = filepath.Join(top, "user")
	var out bytes.Buffer
	for _, args := range [][]string{{"-S", sharable}, {"-s", "read", "-f", "Lists", sharable}, {user}, {"--add", "team=" + sharable, user}} {
		if rc := MaildirmakeMain(args, &out, &out); rc != 0 {
			t.Fatalf("maildirmake %q: %d %s", args, rc, out.String())
		}
	}
	md, err := Open(sharable)
	if err != nil {
		t.Fatal(err)
	}
	key, err = md.Deliver("Lists", strings.NewReader("Subject: hi\n\nshared body\n"), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Readable by others, as an MDA with umask 022 leaves it.
	if err := os.Chmod(filepath.Join(sharable, ".Lists", "new", key), 0o644); err != nil {
		t.Fatal(err)
	}
	return sharable, user, key
}

// openView subscribes the user to team.Lists and opens the view as uid
// 1001 would (as root when the test is not root: the checks then pass for
// the owner, which is what the test process is).
func openView(t *testing.T, user string) (*SharedView, *Folder) {
	t.Helper()
	id := testIdentity()
	shared, bad, err := ReadSharedMaildirs(user)
	if err != nil || len(bad) > 0 {
		t.Fatalf("shared-maildirs: %v %v", bad, err)
	}
	sf, err := FindSharable(shared, "team", "Lists", id)
	if err != nil {
		t.Fatal(err)
	}
	path, err := SubscribeShared(user, sf)
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenSharedView(path, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(); err != nil {
		t.Fatal(err)
	}
	md, err := OpenWithOptions(path, v.Options())
	if err != nil {
		t.Fatal(err)
	}
	f, err := md.Folder(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Sync(true); err != nil {
		t.Fatal(err)
	}
	return v, f
}

func testIdentity() Identity {
	if os.Geteuid() == 0 {
		return Identity{UID: 1001, GID: 1001}
	}
	return Identity{UID: os.Geteuid(), GID: os.Getegid()}
}

func readAllKey(t *testing.T, f *Folder, key string) (string, error) {
	t.Helper()
	file, err := f.Open(key)
	if err != nil {
		return "", err
	}
	defer file.Close()
	data, err := io.ReadAll(file)
	return string(data), err
}

func TestSharedViewReadsThroughLinks(t *testing.T) {
	sharable, user, key := sharableFixture(t)
	_, f := openView(t, user)
	body, err := readAllKey(t, f, key)
	if err != nil || !strings.Contains(body, "shared body") {
		t.Fatalf("read = %q, %v", body, err)
	}
	// Courier's layout: the private link points at the sharable folder as
	// shared-maildirs names it, in new/ because a "-s read" folder is not
	// writable for others (as root the test's reader may move it to cur/).
	entries, _ := filepath.Glob(filepath.Join(user, SharedFoldersDir, "team", "Lists", "*", key+"*"))
	if len(entries) != 1 {
		t.Fatalf("private links = %q", entries)
	}
	target, err := os.Readlink(entries[0])
	if err != nil || !strings.HasPrefix(target, sharable+"/.Lists/") {
		t.Fatalf("link = %q, %v", target, err)
	}
	if subs, err := SubscribedShared(user); err != nil || len(subs) != 1 || subs[0] != "team.Lists" {
		t.Fatalf("SubscribedShared = %q, %v", subs, err)
	}
	// A message its owner keeps to themselves (0600) is not readable for
	// another uid, as for Courier's server running as that user.
	if os.Geteuid() == 0 {
		real, _ := filepath.Glob(filepath.Join(sharable, ".Lists", "*", key+"*"))
		os.Chmod(real[0], 0o600)
		if _, err := readAllKey(t, f, key); !errors.Is(err, ErrSharedPermission) {
			t.Fatalf("0600 message of another uid: %v, want ErrSharedPermission", err)
		}
	}
}

// TestSharedViewHostile: nothing a writer of the sharable folder or the
// user themselves can put on disk makes the view read outside the
// sharable folder, or hang.
func TestSharedViewHostile(t *testing.T) {
	sharable, user, key := sharableFixture(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("TOP SECRET"), 0o600)
	cur := filepath.Join(sharable, ".Lists", "cur")
	// A link and a FIFO among the sharable folder's messages are never
	// linked into the view.
	if err := os.Symlink(secret, filepath.Join(cur, "evil-link:2,")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(cur, "evil-fifo:2,"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, f := openView(t, user)
	snap, err := f.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 1 || snap.Messages[0].Key != key {
		t.Fatalf("view holds %+v, want only the real message", snap.Messages)
	}

	// The real message replaced by a link (after the sync) is refused.
	real, _ := filepath.Glob(filepath.Join(sharable, ".Lists", "*", key+"*"))
	if len(real) != 1 {
		t.Fatalf("message files %q", real)
	}
	os.Remove(real[0])
	if err := os.Symlink(secret, real[0]); err != nil {
		t.Fatal(err)
	}
	if body, err := readAllKey(t, f, key); err == nil || strings.Contains(body, "SECRET") {
		t.Fatalf("read through a swapped-in link: %q, %v", body, err)
	}
	// ... and so is a FIFO (without hanging).
	os.Remove(real[0])
	syscall.Mkfifo(real[0], 0o644)
	done := make(chan error, 1)
	go func() { _, err := readAllKey(t, f, key); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSharedPermission) {
			t.Fatalf("FIFO: err = %v, want ErrSharedPermission", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO hung")
	}

	// A private link the user points elsewhere is refused.
	os.Remove(real[0])
	os.WriteFile(real[0], []byte("Subject: hi\n\nshared body\n"), 0o644)
	priv, _ := filepath.Glob(filepath.Join(v.View, "*", key+"*"))
	os.Remove(priv[0])
	os.Symlink(secret, priv[0])
	if body, err := readAllKey(t, f, key); !errors.Is(err, ErrSharedPermission) || strings.Contains(body, "SECRET") {
		t.Fatalf("read through the user's own link: %q, %v", body, err)
	}
	os.Remove(priv[0])
	os.Symlink(filepath.Join(v.Link, "cur", "..", "..", "..", "secret"), priv[0])
	if _, err := readAllKey(t, f, key); !errors.Is(err, ErrSharedPermission) {
		t.Fatalf("read through a link with ..: %v", err)
	}

	// A "shared" link that is relative, holds "..", or loops is refused.
	link := filepath.Join(v.View, sharedLinkName)
	for _, target := range []string{"../../shared/.Lists", sharable + "/../shared/.Lists", link} {
		os.Remove(link)
		os.Symlink(target, link)
		if _, err := OpenSharedView(v.View, testIdentity()); err == nil {
			t.Errorf("OpenSharedView with shared -> %q succeeded", target)
		}
	}
}

// TestListSharableHostile: shared-maildirs entries that loop, are not
// there, or hold folders that are links elsewhere list nothing and fail
// nothing.
func TestListSharableHostile(t *testing.T) {
	sharable, _, _ := sharableFixture(t)
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop")
	os.Symlink(loop, loop)
	if _, err := ListSharable(SharedMaildir{"loop", loop}, testIdentity()); err == nil {
		t.Error("a symlink loop listed without error")
	}
	if _, err := ListSharable(SharedMaildir{"gone", filepath.Join(dir, "gone")}, testIdentity()); err == nil {
		t.Error("a missing maildir listed without error")
	}
	// A folder of the sharable maildir that is a link to another maildir.
	other := filepath.Join(dir, "other")
	var out bytes.Buffer
	MaildirmakeMain([]string{other}, &out, &out)
	os.Symlink(other, filepath.Join(sharable, ".Elsewhere"))
	list, err := ListSharable(SharedMaildir{"team", sharable}, testIdentity())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Folder != "Lists" || list[0].Writable && os.Geteuid() == 0 {
		t.Fatalf("list = %+v, want Lists only, read-only", list)
	}
	if _, err := FindSharable([]SharedMaildir{{"team", sharable}}, "team", "../x", testIdentity()); !errors.Is(err, ErrNoSharedFolder) {
		t.Errorf("FindSharable ../x: %v", err)
	}
	if _, err := SharedViewPath(sharable, "../x", "Lists"); err == nil {
		t.Error("SharedViewPath took a NICK with ../")
	}
}

// TestIdentityPermits checks the permission rule against the kernel's for
// owner, group and others, and root.
func TestIdentityPermits(t *testing.T) {
	st := &syscall.Stat_t{Uid: 10, Gid: 20, Mode: syscall.S_IFDIR | 0o750}
	for _, c := range []struct {
		id   Identity
		want uint32
		ok   bool
	}{
		{Identity{UID: 10, GID: 99}, 7, true},
		{Identity{UID: 11, GID: 20}, 5, true},
		{Identity{UID: 11, GID: 20}, 2, false},
		{Identity{UID: 11, GID: 21, Groups: []int{20}}, 4, true},
		{Identity{UID: 11, GID: 21}, 4, false},
		{Identity{UID: 0, GID: 0}, 7, true},
	} {
		if got := c.id.permits(st, c.want); got != c.ok {
			t.Errorf("%+v want %o: %v, want %v", c.id, c.want, got, c.ok)
		}
	}
}

func FuzzParseSharedMaildirs(f *testing.F) {
	f.Add([]byte("team\t/srv/shared\n"))
	f.Add([]byte("a /x # c\n../b /y\nc rel\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		good, _ := ParseSharedMaildirs(data)
		seen := map[string]bool{}
		for _, sm := range good {
			if validSharedNick(sm.Nick) != nil || validSharedPath(sm.Path) != nil {
				t.Fatalf("accepted %q", sm)
			}
			if strings.ContainsAny(sm.Nick, "./") || !filepath.IsAbs(sm.Path) || strings.Contains("/"+sm.Path+"/", "/../") {
				t.Fatalf("accepted %q", sm)
			}
			if seen[sm.Nick] {
				t.Fatalf("NICK %q twice", sm.Nick)
			}
			seen[sm.Nick] = true
		}
	})
}

// TestOpenSharedFolder is the open every server does (IMAP, SMAP, the
// webmail): it makes and syncs the view of a folder the user may read,
// refuses hostile and unknown names, and a read-only folder gives no
// folder to add to.
func TestOpenSharedFolder(t *testing.T) {
	_, user, key := sharableFixture(t)
	shared, _, err := ReadSharedMaildirs(user)
	if err != nil {
		t.Fatal(err)
	}
	id := testIdentity()
	v, sf, err := OpenSharedFolder(user, shared, "team", "Lists", id)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(user, SharedFoldersDir, "team", "Lists"); v.View != want || sf.Folder != "Lists" {
		t.Fatalf("view %s (%+v), want %s", v.View, sf, want)
	}
	if _, err := os.Readlink(filepath.Join(v.View, "new", key+":2,")); err != nil {
		t.Fatalf("the message is not linked into the view: %v", err)
	}
	if os.Geteuid() == 0 {
		// uid 1001 reads a "-s read" folder of root's: no writing.
		if v.Writable {
			t.Fatal("a -s read folder is writable for another user")
		}
		if _, err := v.InsertFolder(sf); !errors.Is(err, ErrSharedPermission) {
			t.Fatalf("InsertFolder on a read-only folder: %v, want ErrSharedPermission", err)
		}
	}
	for _, c := range [][2]string{{"team", "../x"}, {"../team", "Lists"}, {"team", "Nope"}, {"other", "Lists"}, {"team", "Lists/../../x"}} {
		if _, _, err := OpenSharedFolder(user, shared, c[0], c[1], id); !errors.Is(err, ErrNoSharedFolder) {
			t.Errorf("OpenSharedFolder(%q, %q) = %v, want ErrNoSharedFolder", c[0], c[1], err)
		}
	}
	if _, err := os.Stat(filepath.Join(user, SharedFoldersDir, "x")); err == nil {
		t.Error("a hostile name made a directory")
	}
}

// TestListSharableMessages lists a sharable folder's messages, one per
// key wherever the file is, and makes nothing: no view, no claim.
func TestListSharableMessages(t *testing.T) {
	sharable, user, key := sharableFixture(t)
	// The same key in cur/ as well (a claim half done): listed once.
	dup := filepath.Join(sharable, ".Lists", "cur", key+":2,S")
	if err := os.Link(filepath.Join(sharable, ".Lists", "new", key), dup); err != nil {
		t.Fatal(err)
	}
	// Not messages: a dot file and a symbolic link.
	os.WriteFile(filepath.Join(sharable, ".Lists", "cur", ".hidden"), []byte("x"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(sharable, ".Lists", "cur", "1.M1P1.evil:2,"))
	shared, _, err := ReadSharedMaildirs(user)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := FindSharable(shared, "team", "Lists", testIdentity())
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ListSharableMessages(sf)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || !strings.Contains(filepath.Base(paths[0]), key) {
		t.Fatalf("ListSharableMessages = %q, want the one message %s", paths, key)
	}
	if _, err := os.Stat(filepath.Join(user, SharedFoldersDir)); err == nil {
		t.Error("listing made a private view")
	}
	if _, err := os.Stat(filepath.Join(sharable, ".Lists", "new", key)); err != nil {
		t.Errorf("listing claimed the new/ message: %v", err)
	}
}
