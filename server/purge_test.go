package server

import (
	"strings"
	"testing"
	"time"
)

// imapemptytrash reaches the purger the IMAP and webmail logins use:
// Courier's Trash:7 by default, the file's rules after a reload.
func TestEmptyTrashRulesFollowReload(t *testing.T) {
	h := newHarness(t)
	if r := h.srv.purger.Rules(); len(r) != 1 || r[0].Folder != "Trash" || r[0].Age != 7*24*time.Hour {
		t.Fatalf("default rules: %+v", r)
	}
	h.writeSetting("imapemptytrash", "Trash:3,Sent:30\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := h.srv.purger.Rules(); len(r) != 2 || r[1].Folder != "Sent" || r[1].Age != 30*24*time.Hour {
		t.Fatalf("rules after reload: %+v", r)
	}
	h.writeSetting("imapemptytrash", "INBOX:1\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "imapemptytrash:1") {
		t.Fatalf("a bad rule: %v", err)
	}
	if r := h.srv.purger.Rules(); len(r) != 2 {
		t.Fatalf("a refused reload changed the rules: %+v", r)
	}
}
