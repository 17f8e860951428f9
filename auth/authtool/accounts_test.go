package authtool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/auth"
	"postern/auth/userdb"
)

// The functions behind "postern user" and the web admin: quota, services
// and a delete that removes the Maildir only when asked, and only a
// Maildir.
func TestAccountsQuotaServicesDelete(t *testing.T) {
	configDir, dataDir := newConfig(t)
	a := NewAccounts(configDir)
	home, err := a.Add(NewAccount{Name: "ann@example.test", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dataDir, "mail", "example.test", "ann"); home != want {
		t.Errorf("home %s, want %s", home, want)
	}
	if _, err := a.Add(NewAccount{Name: "ann@example.test", Password: "pw"}); !errors.Is(err, ErrExists) {
		t.Errorf("second add: %v", err)
	}
	if err := a.SetQuota("ann@example.test", "1000S"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetQuota("ann@example.test", "plenty"); err == nil {
		t.Error("bad quota accepted")
	}
	if err := a.SetDisabled("ann@example.test", map[string]bool{"imap": true, "pop3": true}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetDisabled("ann@example.test", map[string]bool{"pop3": false}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetDisabled("ann@example.test", map[string]bool{"gopher": true}); err == nil {
		t.Error("unknown service accepted")
	}
	e, err := a.Get("ann@example.test")
	if err != nil || e.Fields[userdb.FieldQuota] != "1000S" || e.Fields[userdb.FieldOptions] != "disableimap=1" {
		t.Fatalf("entry %+v %v", e, err)
	}
	svc := openService(t, configDir)
	if _, err := svc.Authenticate(context.Background(), auth.ServiceIMAP, "ann@example.test", "pw"); !errors.Is(err, auth.ErrDisabled) {
		t.Errorf("imap: %v, want disabled", err)
	}
	if _, err := svc.Authenticate(context.Background(), auth.ServicePOP3, "ann@example.test", "pw"); err != nil {
		t.Errorf("pop3: %v", err)
	}
	if err := a.SetDisabled("ann@example.test", map[string]bool{"imap": false}); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.Get("ann@example.test"); e.Fields[userdb.FieldOptions] != "" {
		t.Errorf("options after enabling everything: %q", e.Fields[userdb.FieldOptions])
	}
	// A mail field that is not a Maildir is never removed.
	notMaildir := t.TempDir()
	os.WriteFile(filepath.Join(notMaildir, "precious"), []byte("x"), 0o600)
	if _, err := a.Add(NewAccount{Name: "odd@example.test", Password: "pw", Maildir: notMaildir, NoMaildir: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete("odd@example.test", true); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Errorf("delete of an account whose mail is not a Maildir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(notMaildir, "precious")); err != nil {
		t.Errorf("a file outside any Maildir went: %v", err)
	}
	if _, err := a.Get("odd@example.test"); !errors.Is(err, ErrNoAccount) {
		t.Errorf("odd still there: %v", err)
	}
	gone, err := a.Delete("ann@example.test", true)
	if err != nil || gone.Name != "ann@example.test" {
		t.Fatalf("delete: %v %+v", err, gone)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("home after delete with mail: %v", err)
	}
	if _, err := a.Delete("ann@example.test", false); !errors.Is(err, ErrNoAccount) {
		t.Errorf("second delete: %v", err)
	}
}
