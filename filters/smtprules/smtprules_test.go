package smtprules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if f, err := Load(dir); f != nil || err != nil {
		t.Fatalf("no rules file: %v %v", f, err)
	}
	os.WriteFile(filepath.Join(dir, SettingName), []byte("if (/x/ {\n"), 0o644)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, SettingName)+":1:") {
		t.Fatalf("syntax error without file and line: %v", err)
	}
	// Embedded mode refuses the whole file, even an unreached "to".
	os.WriteFile(filepath.Join(dir, SettingName), []byte("if (0)\n{\n  to ./Maildir/\n}\n"), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), ":3: to is not allowed in embedded mode") {
		t.Fatalf("a rules file with to: %v", err)
	}
	os.WriteFile(filepath.Join(dir, SettingName), []byte("# only a comment\nEXITCODE=0\n"), 0o644)
	if f, err := Load(dir); f == nil || err != nil || f.Name() != "rules" {
		t.Fatalf("valid rules: %v %v", f, err)
	}
}
