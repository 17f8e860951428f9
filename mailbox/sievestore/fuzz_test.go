package sievestore

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidName: whatever a client sends as a name, a name ValidName
// accepts is UTF-8, bounded, and stays one file inside the storage.
func FuzzValidName(f *testing.F) {
	for _, seed := range []string{"vacation", "", "../x", "a/b", "\x00", ".hidden", "Ferien ☀", "x\u2028", "\xff", strings.Repeat("é", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		if name == "" || len(name) > MaxNameLength || !utf8.ValidString(name) {
			t.Fatalf("ValidName accepted %q", name)
		}
		if strings.ContainsAny(name, "/\x00\r\n") || strings.HasPrefix(name, ".") {
			t.Fatalf("ValidName accepted %q", name)
		}
		dir := "/home/u/sieve"
		p := filepath.Join(dir, name+scriptSuffix)
		if filepath.Dir(p) != dir {
			t.Fatalf("name %q leaves the storage: %s", name, p)
		}
	})
}

// FuzzNameOfLink: an active-link target, which the user controls, names a
// script only when it points straight into the storage.
func FuzzNameOfLink(f *testing.F) {
	for _, seed := range []string{"sieve/a.sieve", "/home/u/sieve/a.sieve", "sieve/../x.sieve", "/etc/passwd", "sieve/tmp/a.sieve", "./sieve/.x.sieve", "sieve//a.sieve"} {
		f.Add(seed)
	}
	s := Open("/home/u", Owner{}, Limits{})
	f.Fuzz(func(t *testing.T, target string) {
		name, ok := s.nameOfLink(target)
		if !ok {
			return
		}
		if storableName(name) != nil {
			t.Fatalf("target %q gave the invalid name %q", target, name)
		}
		resolved := target
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(s.home, resolved)
		}
		if filepath.Clean(resolved) != s.scriptPath(name) {
			t.Fatalf("target %q resolves to %s, not the script %q", target, resolved, name)
		}
	})
}
