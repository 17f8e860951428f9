package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"

	"postern/auth"
	"postern/auth/authdaemon"
	"postern/auth/passwd"
	"postern/auth/userdb"
)

// TestAuthdaemonSocket: with authdaemonsocket set, "postern serve"
// answers Courier's authdaemon protocol there from its module chain: a
// lookup, a login, a password change that the IMAP side then sees; after
// a reload that changes authmodulelist the socket answers from the new
// chain (here an authdaemon module asking a second daemon); shutdown
// removes the socket.
func TestAuthdaemonSocket(t *testing.T) {
	base, err := os.MkdirTemp("", "pa") // socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	sock := filepath.Join(base, "authdaemon", "socket")
	h := newHarness(t)
	h.writeSetting("authdaemonsocket", sock+"\n")
	h.restart()
	ctx := context.Background()
	c := authdaemon.NewClient(sock)

	a, err := c.Lookup(ctx, h.user)
	if err != nil {
		t.Fatalf("lookup over the socket: %v", err)
	}
	if a.Name != h.user || a.Home == "" {
		t.Errorf("lookup: %+v", a)
	}
	if _, err := c.Authenticate(ctx, "imap", h.user, "wrong"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("wrong password: %v", err)
	}
	a, err = c.Authenticate(ctx, "imap", h.user, h.pass)
	if err != nil {
		t.Fatalf("login over the socket: %v", err)
	}
	if err := c.SetPassword(ctx, a, "imap", "new pass"); err != nil {
		t.Fatalf("password change over the socket: %v", err)
	}
	h.pass = "new pass"
	h.imapLogin(nil) // fails the test unless the new password logs in

	// A second daemon with its own accounts, and a reload that makes
	// authmodulelist ask it instead of the userdb.
	other := filepath.Join(base, "other", "socket")
	hash, _ := passwd.Hash("carol pass", passwd.SchemeSHA512Crypt)
	dbPath := filepath.Join(t.TempDir(), "userdb.db")
	if err := userdb.WriteDB([]userdb.Entry{{Name: "carol@other.test", Fields: map[string]string{"uid": "2000", "gid": "2000", "home": "/home/carol", "systempw": hash}}}, dbPath, ""); err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ln, err := authdaemon.Listen(other)
	if err != nil {
		t.Fatal(err)
	}
	otherSrv := authdaemon.NewServer(authdaemon.ServerOptions{Auth: auth.NewService(db), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go otherSrv.Serve(ln)
	defer otherSrv.Shutdown(ctx)
	h.writeSetting("authdaemonclient", other+"\n")
	h.writeSetting("authmodulelist", "authdaemon\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if a, err := c.Authenticate(ctx, "imap", "carol@other.test", "carol pass"); err != nil || a.UID != 2000 {
		t.Errorf("after the reload, carol through the chained daemon: %+v, %v", a, err)
	}
	if _, err := c.Lookup(ctx, h.user); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("after the reload, the userdb's user: %v, want no such user", err)
	}

	h.stop()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after shutdown: %v", err)
	}
	if _, err := c.Lookup(ctx, h.user); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("with the server stopped: %v, want a temporary failure", err)
	}
}

// TestAuthdaemonSocketAsMailUser: with mailuser, the socket is bound as
// root (in a directory only root may write to, as /run/courier/authdaemon
// is) before the server becomes the mail user, and is answered after.
func TestAuthdaemonSocketAsMailUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody")
	}
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	for d := h.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	base, err := os.MkdirTemp("", "pa")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o750) // root's, closed to nobody
	sock := filepath.Join(base, "socket")
	h.writeSetting("listen", "smtp 127.0.0.1:0\n")
	h.writeSetting("mailuser", "nobody\n")
	h.writeSetting("authdaemonsocket", sock+"\n")
	cmd, _ := startServerProcess(t, h.etc)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	a, err := authdaemon.NewClient(sock).Authenticate(context.Background(), "imap", h.user, h.pass)
	if err != nil || a.Name != h.user {
		t.Fatalf("login over the socket of a server running as nobody: %+v, %v", a, err)
	}
}
