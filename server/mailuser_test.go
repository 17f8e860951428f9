package server

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// TestMailUserDropsRoot: started as root with "mailuser nobody", the server
// binds a port under 1024, then runs as nobody (every uid, gid and the
// supplementary groups), gives its own files in the data directory to
// nobody, delivers mail for an account of nobody's uid into files nobody
// owns, and serves that account over IMAP on the privileged port.
func TestMailUserDropsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	passable(h.dir) // nobody must reach the data directory through its parents
	const vuser, vpass = "virtual@example.test", "v1rtual pass"
	h.addUser(vuser, vpass, "--uid", nobody.Uid, "--gid", nobody.Gid)
	port := freePrivilegedPort(t)
	h.writeSetting("listen", fmt.Sprintf("smtp 127.0.0.1:0\nimap 127.0.0.1:%d\n", port))
	h.writeSetting("mailuser", "nobody\n")

	cmd, smtpAddr := startServerProcess(t, h.etc)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Uid:":    fmt.Sprintf("%d\t%d\t%d\t%d", uid, uid, uid, uid),
		"Gid:":    fmt.Sprintf("%d\t%d\t%d\t%d", gid, gid, gid, gid),
		"Groups:": strconv.Itoa(gid),
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, "\t")
		if w, ok := want[k]; ok {
			if strings.TrimSpace(v) != w {
				t.Errorf("%s %q, want %q", k, strings.TrimSpace(v), w)
			}
			delete(want, k)
		}
	}
	if len(want) != 0 {
		t.Errorf("/proc status lacks %v", want)
	}
	// Threads too: the switch covers every thread of the process.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
		if !strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)) {
			t.Errorf("thread %s is not running as uid %d", task.Name(), uid)
		}
	}

	if err := sendOne(smtpAddr, vuser, []byte("Subject: to the virtual user\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(h.dir, "data", "mail", "example.test", "virtual", "Maildir")
	var files []string
	for deadline := time.Now().Add(10 * time.Second); len(files) == 0; {
		files, _ = filepath.Glob(filepath.Join(md, "new", "*"))
		if time.Now().After(deadline) {
			var tree []string
			filepath.WalkDir(filepath.Join(h.dir, "data"), func(p string, d os.DirEntry, err error) error {
				tree = append(tree, p)
				return nil
			})
			t.Fatalf("the message did not reach %s; the data directory holds:\n%s", md, strings.Join(tree, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := os.Stat(files[0]); err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("the delivered file is not nobody's: %v", err)
	}
	// The server's own files are nobody's too.
	filepath.WalkDir(filepath.Join(h.dir, "data"), func(p string, d os.DirEntry, err error) error {
		if err != nil || p == filepath.Join(h.dir, "data", "mail") {
			return filepath.SkipDir
		}
		if info, err := d.Info(); err == nil && d.Type()&os.ModeSocket == 0 && int(info.Sys().(*syscall.Stat_t).Uid) != uid {
			t.Errorf("%s is owned by uid %d, not the mail user", p, info.Sys().(*syscall.Stat_t).Uid)
		}
		return nil
	})

	c, err := imapclient.DialInsecure(fmt.Sprintf("127.0.0.1:%d", port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(vuser, vpass).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX as the virtual user: %v, %+v", err, sel)
	}
	c.Logout().Wait()
}

// freePrivilegedPort finds a port under 1024 free on 127.0.0.1.
func freePrivilegedPort(t *testing.T) int {
	t.Helper()
	for p := 1023; p > 900; p-- {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Skip("no free port under 1024")
	return 0
}
