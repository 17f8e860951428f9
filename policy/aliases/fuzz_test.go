package aliases

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/policy"
)

// FuzzLoad feeds arbitrary alias source through the real loader: the
// result is a table or *policy.Error problems, never a panic or a hang, and
// every lookup in a loaded table answers.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("root: postmaster\npostmaster: alice, bob@example.org\n"))
	f.Add([]byte("staff: a,\n  b@x.example,\n\tc\n"))
	f.Add([]byte("a: b\nb: a\n"))
	f.Add([]byte("@example.com: john\n@u.example: gw!path!\n"))
	f.Add([]byte("p: |/bin/prog, \"|/bin/x a,b\", /var/mail/x\n"))
	f.Add([]byte("l: :include:members\n"))
	f.Add([]byte("\"q:x\"@d.example: <y@z.example>, Name <n@d.example>\n"))
	f.Add([]byte("  orphan\n: x\nx:\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		// Includes may only name the seeded file: the fuzzer must not make
		// the test read /dev or /proc.
		lower := strings.ToLower(string(src))
		if strings.Contains(lower, "include:") && (strings.Contains(lower, "/") || strings.Contains(lower, "..") || strings.Contains(lower, "~")) {
			t.Skip()
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "members"), []byte("m1@example.com, m2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, SettingName), src, 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := Load(dir, WithLocalDomains(func(string) bool { return true }))
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error without FILE:LINE: %v", err)
			}
			return
		}
		for k := range a.entries {
			if _, ok, err := a.Expand(context.Background(), a.names[k]); err != nil || (!ok && !strings.HasPrefix(k, "@")) {
				t.Fatalf("Expand(%q) = %v, %v", a.names[k], ok, err)
			}
			if _, err := decodeTargets(encodeTargets(a.entries[k])); err != nil {
				t.Fatalf("round trip of %q: %v", k, err)
			}
		}
	})
}

// FuzzDecodeTargets checks that a corrupt compiled record is an error,
// never a panic or a huge allocation.
func FuzzDecodeTargets(f *testing.F) {
	f.Add(encodeTargets([]Target{{Kind: Address, Value: "a@b", Origin: "f:1"}}))
	f.Add(encodeTargets(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := decodeTargets(b)
		if err == nil && len(encodeTargets(ts)) != len(b) {
			// Uvarints have non-minimal encodings; a decoded record must
			// still re-encode to something decodable.
			if _, err := decodeTargets(encodeTargets(ts)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzCanonicalAddress: the canonical form of an address is a fixed point.
func FuzzCanonicalAddress(f *testing.F) {
	for _, s := range []string{"User@Example.COM.", "<a@b>", `"x y"@z`, "a@[1.2.3.4]", "gw!p!", "N <a@b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := canonicalAddress(s)
		if err != nil {
			return
		}
		c2, err := canonicalAddress(c)
		if err != nil || c2 != c {
			t.Fatalf("canonical %q of %q re-canonicalizes to %q, %v", c, s, c2, err)
		}
	})
}
