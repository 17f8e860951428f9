package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthdaemonSocket(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthdaemonSocket != "" {
		t.Errorf("without the setting: %q, want none", c.AuthdaemonSocket)
	}
	write(t, filepath.Join(dir, "authdaemonsocket"), "# where Courier's programs ask\nauthdaemon/socket\n")
	if c, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	if want := filepath.Join(abs, "authdaemon", "socket"); c.AuthdaemonSocket != want {
		t.Errorf("relative path: %q, want %q", c.AuthdaemonSocket, want)
	}
	write(t, filepath.Join(dir, "authdaemonsocket"), "/run/"+strings.Repeat("x", 120)+"/socket\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "authdaemonsocket") {
		t.Errorf("a path too long for a socket: %v", err)
	}
}
