package admin

import (
	"os"
	"path/filepath"
	"postern/policy"
	"strings"
	"testing"
)

// FuzzLoadAdmins reads arbitrary bytes as the webadmin file: never a
// panic; what loads has only good names and non-empty hashes.
func FuzzLoadAdmins(f *testing.F) {
	f.Add([]byte("admin:$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234\n"))
	f.Add([]byte("# comment\n\nops@example.test:{SHA256}abc\nx:y:z\n"))
	f.Add([]byte("no colon here\n:hash\nname:\n"))
	f.Add([]byte("a:1\na:2\n"))
	f.Add([]byte("../x:hash\n\x00:\xff\n"))
	dir := f.TempDir() // calls in one process run one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, SettingName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		admins, err := LoadAdmins(dir)
		if err != nil {
			if !strings.Contains(err.Error(), filepath.Join(dir, SettingName)) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for name, hash := range admins {
			if checkAdminName(name) != nil || hash == "" || strings.ContainsAny(hash, "\n\x00") {
				t.Fatalf("loaded %q:%q", name, hash)
			}
		}
	})
}

func TestParseAdmins(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, SettingName), []byte("# admins\nann:$2a$10$x\n  bob : {SHA256}y \nbad name:z\nann:again\nnohash:\n"), 0o600)
	_, err := LoadAdmins(dir)
	if err == nil {
		t.Fatal("bad lines accepted")
	}
	for _, want := range []string{":4: webadmin: name", ":5: webadmin: ann given twice", ":6: webadmin: want NAME:HASH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if a, err := LoadAdmins(t.TempDir()); err != nil || len(a) != 0 {
		t.Errorf("no file: %v %v", a, err)
	}
}

// SetPassword adds a name, changes it in place keeping the other lines,
// and the file stays private.
func TestSetPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SettingName)
	os.WriteFile(path, []byte("# ours\nops:$2a$10$notreal\n"), 0o644)
	if err := SetPassword(dir, "ann", "first"); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(dir, "ann", "second"); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAdmins(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || !a.Check("ann", "second") || a.Check("ann", "first") || a.Check("nobody", "second") {
		t.Errorf("admins after two SetPassword: %v", a)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# ours\nops:$2a$10$notreal\nann:$2a$") || strings.Count(string(data), "ann:") != 1 {
		t.Errorf("file:\n%s", data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	for _, bad := range []string{"", "a b", "../x", strings.Repeat("n", 65)} {
		if err := SetPassword(dir, bad, "pw"); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if err := SetPassword(dir, "ann", ""); err == nil {
		t.Error("empty password accepted")
	}
}

// FuzzDropInName: a name checkDropInName takes stays in its directory as
// one plain file the server reads.
func FuzzDropInName(f *testing.F) {
	for _, s := range []string{"10-local", "../x", "..", ".hidden", "a/b", "x~", "y.bak", "z.dpkg-new", "a\\b", "nul\x00", "é", "50-spam.conf", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkDropInName(name) != nil {
			return
		}
		dir := "/etc/postern/smtpaccess.d"
		p := filepath.Join(dir, name)
		if filepath.Dir(p) != dir || filepath.Base(p) != name || strings.HasPrefix(name, ".") || policy.SkippedSettingFile(name) || len(name) > maxDropInName {
			t.Fatalf("accepted %q", name)
		}
	})
}

// FuzzMatchTXT compares a record to publish with arbitrary TXT data from
// DNS: never a panic; a record always matches itself; a match is found
// only among candidates, which come from what DNS has.
func FuzzMatchTXT(f *testing.F) {
	f.Add("v=spf1 mx ~all", "v=spf1 ~all mx")
	f.Add("v=DMARC1; p=none; rua=mailto:a@b", "v=DMARC1;p=reject;;=;x")
	f.Add("v=DKIM1; k=rsa; p=AB CD", "k=rsa;p=ABCD;p=EF")
	f.Add("v=TLSRPTv1; rua=mailto:x@y", "\x00;\xff= ;v=")
	f.Fuzz(func(t *testing.T, want, have string) {
		st, found := matchTXT(want, []string{have})
		if len(found) > 1 || len(found) == 1 && found[0] != have {
			t.Fatalf("found %q from %q", found, have)
		}
		if st == stateMatches && len(found) != 1 {
			t.Fatalf("matches with nothing found")
		}
		v := txtVersion(want)
		if self, _ := matchTXT(want, []string{want}); self != stateMatches && (v != "v=dkim1" || tagList(want)["p"] != "") {
			t.Fatalf("%q does not match itself: %q", want, self)
		}
	})
}
