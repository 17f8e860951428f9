package policy

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestMailUserSetting(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir := validDir(t)
	if cfg, err := Load(dir); err != nil || cfg.MailUser != nil {
		t.Fatalf("without the file: %v, %+v", err, cfg.MailUser)
	}
	for _, c := range []struct {
		text     string
		uid, gid int
	}{
		{"nobody\n", uid, gid},
		{"nobody:" + nobody.Gid + "\n", uid, gid},
		{"5000:5001\n", 5000, 5001},
		{"# the virtual mail user\nnobody\n", uid, gid},
	} {
		write(t, filepath.Join(dir, "mailuser"), c.text)
		cfg, err := Load(dir)
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		if m := cfg.MailUser; m == nil || m.UID != c.uid || m.GID != c.gid {
			t.Errorf("%q: %+v, want %d:%d", c.text, cfg.MailUser, c.uid, c.gid)
		}
	}
	for _, c := range []struct{ text, want string }{
		{"root\n", "mailuser:1: mailuser: \"root\" is root"},
		{"0:0\n", "mailuser:1: mailuser: \"0:0\" is root"},
		{"no-such-user-here\n", "mailuser:1: mailuser: no user \"no-such-user-here\""},
		{"nobody:no-such-group-here\n", "mailuser:1: mailuser: no group \"no-such-group-here\""},
		{"5000\n", "mailuser:1: mailuser: a numeric uid needs its gid too"},
		{"nobody\nnobody\n", "mailuser:2: mailuser takes one line"},
		{"nobody:\n", "mailuser:1: mailuser: want USER, USER:GROUP or UID:GID"},
	} {
		write(t, filepath.Join(dir, "mailuser"), c.text)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
	os.Remove(filepath.Join(dir, "mailuser"))
}
