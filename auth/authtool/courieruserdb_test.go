package authtool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"postern/auth/passwd"
	"postern/auth/userdb"
)

// courierUserdb runs the userdb command of Postern on configDir.
func courierUserdb(t *testing.T, configDir, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var o, e bytes.Buffer
	code := UserdbMain(args, strings.NewReader(stdin), &o, &e, configDir)
	return o.String(), e.String(), code
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUserdbSetUnsetDel(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, SourceName)
	os.WriteFile(src, []byte("# accounts\nbob@example.test\tuid=1000|gid=1000|home=/home/bob|quota=10S\n\n"), 0o600)

	if _, e, code := courierUserdb(t, dir, "", "alice@example.test", "set", "uid=1001", "gid=1001", "home=/home/alice", "mail=/home/alice/Maildir"); code != 0 {
		t.Fatalf("set new: %d %s", code, e)
	}
	// A change keeps the fields' order and adds new ones at the end.
	if _, e, code := courierUserdb(t, dir, "", "bob@example.test", "set", "quota=20S", "shell=/bin/sh"); code != 0 {
		t.Fatalf("set existing: %d %s", code, e)
	}
	want := "# accounts\nbob@example.test\tuid=1000|gid=1000|home=/home/bob|quota=20S|shell=/bin/sh\n\nalice@example.test\tuid=1001|gid=1001|home=/home/alice|mail=/home/alice/Maildir\n"
	if got := readFile(t, src); got != want {
		t.Fatalf("after set:\n%q\nwant\n%q", got, want)
	}
	if st, _ := os.Stat(src); st.Mode().Perm()&0o077 != 0 {
		t.Errorf("source mode %v: group or world may read password hashes", st.Mode().Perm())
	}
	courierUserdb(t, dir, "", "bob@example.test", "unset", "shell", "quota", "nosuchfield")
	courierUserdb(t, dir, "", "alice@example.test", "del")
	want = "# accounts\nbob@example.test\tuid=1000|gid=1000|home=/home/bob\n\n"
	if got := readFile(t, src); got != want {
		t.Fatalf("after unset and del:\n%q\nwant\n%q", got, want)
	}
	// Nothing to do is not an error, and leaves the file as it is.
	st0, _ := os.Stat(src)
	for _, args := range [][]string{{"nobody", "del"}, {"nobody", "unset", "uid"}, {"bob@example.test", "unset"}} {
		if _, e, code := courierUserdb(t, dir, "", args...); code != 0 {
			t.Errorf("%v: %d %s", args, code, e)
		}
	}
	if st1, _ := os.Stat(src); !st1.ModTime().Equal(st0.ModTime()) || readFile(t, src) != want {
		t.Error("a change with nothing to do rewrote the file")
	}
}

func TestUserdbValueFromStdinAndRefusals(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, SourceName)
	// The userdbpw pipe: the field's value is a line of stdin.
	if _, e, code := courierUserdb(t, dir, "$6$salt$hash\n", "carol", "set", "uid=5", "gid=5", "home=/h/carol", "systempw"); code != 0 {
		t.Fatalf("set from stdin: %d %s", code, e)
	}
	if got := readFile(t, src); got != "carol\tuid=5|gid=5|home=/h/carol|systempw=$6$salt$hash\n" {
		t.Fatalf("got %q", got)
	}
	before := readFile(t, src)
	for _, tc := range []struct {
		name, stdin string
		args        []string
		msg         string
	}{
		{"pipe in a value", "", []string{"carol", "set", "home=/a|uid=0"}, "Invalid field or value."},
		{"pipe in a value from stdin", "x|uid=0\n", []string{"carol", "set", "systempw"}, "Invalid value."},
		{"no value on stdin", "", []string{"carol", "set", "systempw"}, "no value for systempw"},
		{"uid the parser refuses", "", []string{"carol", "set", "uid=abc"}, "uid"},
		{"unknown verb", "", []string{"carol", "frob"}, "Usage:"},
		{"del with fields", "", []string{"carol", "del", "uid"}, "Usage:"},
		{"no verb", "", []string{"carol"}, "Usage:"},
		{"path out of the userdb", "", []string{"../etc/carol", "set", "uid=1"}, "not a file under"},
		{"subfile of a userdb that is a file", "", []string{"sub/carol", "set", "uid=1"}, ""},
	} {
		_, e, code := courierUserdb(t, dir, tc.stdin, tc.args...)
		if code == 0 || !strings.Contains(e, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want a failure saying %q", tc.name, code, e, tc.msg)
		}
		if got := readFile(t, src); got != before {
			t.Fatalf("%s changed the file: %q", tc.name, got)
		}
	}
}

func TestUserdbDirectorySourceAndShow(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, SourceName)
	os.MkdirAll(src, 0o700)
	// As Courier's: the userdb directory itself is not a file to edit;
	// PATH/NAME edits the file PATH in it.
	if _, e, code := courierUserdb(t, dir, "", "dave", "set", "uid=1"); code == 0 || !strings.Contains(e, "not a file") {
		t.Fatalf("edit a directory: %d %q", code, e)
	}
	if _, e, code := courierUserdb(t, dir, "", "users/dave", "set", "uid=7", "gid=7", "home=/h/dave"); code != 0 {
		t.Fatalf("users/dave: %d %s", code, e)
	}
	courierUserdb(t, dir, "", "users/erin", "set", "uid=8", "gid=8", "home=/h/erin")
	if got := readFile(t, filepath.Join(src, "users")); got != "dave\tuid=7|gid=7|home=/h/dave\nerin\tuid=8|gid=8|home=/h/erin\n" {
		t.Fatalf("users file: %q", got)
	}
	if o, _, _ := courierUserdb(t, dir, "", "-show", "users/"); o != "dave\nerin\n" {
		t.Errorf("-show users/: %q", o)
	}
	if o, _, _ := courierUserdb(t, dir, "", "-show", "users/erin"); o != "uid=8\ngid=8\nhome=/h/erin\n" {
		t.Errorf("-show users/erin: %q", o)
	}
	other := filepath.Join(t.TempDir(), "elsewhere")
	courierUserdb(t, dir, "", "-f", other, "frank", "set", "uid=9", "gid=9", "home=/h/frank")
	if o, _, _ := courierUserdb(t, dir, "", "-show", "-f", other); o != "frank\n" {
		t.Errorf("-show -f: %q", o)
	}
	// The whole source still compiles, and the accounts are there.
	entries, err := userdb.LoadSource(src)
	if err != nil || len(entries) != 2 {
		t.Fatalf("LoadSource: %v, %d entries", err, len(entries))
	}
}

func TestUserdbpw(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		prefix string
	}{{nil, "$6$"}, {[]string{"-md5"}, "$1$"}, {[]string{"-sha256"}, "$5$"}, {[]string{"-bcrypt"}, "$2"}} {
		var o, e bytes.Buffer
		if code := UserdbpwMain(tc.args, strings.NewReader("correct horse\n"), &o, &e); code != 0 {
			t.Fatalf("%v: %d %s", tc.args, code, e.String())
		}
		h := strings.TrimSuffix(o.String(), "\n")
		if !strings.HasPrefix(h, tc.prefix) || strings.Contains(h, "\n") {
			t.Errorf("%v: %q, want one line starting %s", tc.args, h, tc.prefix)
		}
		if ok, err := passwd.Verify(h, "correct horse"); !ok || err != nil {
			t.Errorf("%v: the hash does not verify: %v", tc.args, err)
		}
		if ok, _ := passwd.Verify(h, "correct horsE"); ok {
			t.Errorf("%v: a wrong password verifies", tc.args)
		}
	}
	for _, args := range [][]string{{"-hmac-md5"}, {"-hmac-sha1"}, {"-frob"}} {
		var o, e bytes.Buffer
		if code := UserdbpwMain(args, strings.NewReader("pw\n"), &o, &e); code == 0 || o.Len() != 0 {
			t.Errorf("%v: exit %d, output %q; want refused", args, code, o.String())
		}
	}
	var o, e bytes.Buffer
	if code := UserdbpwMain(nil, strings.NewReader(""), &o, &e); code == 0 {
		t.Error("an empty stdin gave a hash")
	}
}

// The pipe of Courier's manual, then makeuserdb: the account logs in with
// the password that went through userdbpw.
func TestUserdbpwPipeToLogin(t *testing.T) {
	dir := t.TempDir()
	var o, e bytes.Buffer
	UserdbpwMain([]string{"-md5"}, strings.NewReader("s3cret\n"), &o, &e)
	if _, e, code := courierUserdb(t, dir, o.String(), "gina@example.test", "set", "uid=10", "gid=10", "home="+dir+"/gina", "systempw"); code != 0 {
		t.Fatalf("userdb: %s", e)
	}
	if code := MakeuserdbMain(nil, &o, &e, dir); code != 0 {
		t.Fatalf("makeuserdb: %s", e.String())
	}
	db, err := userdb.Open(filepath.Join(dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if a, err := db.Authenticate(context.Background(), "imap", "gina@example.test", "s3cret"); err != nil || a.UID != 10 {
		t.Fatalf("login: %+v %v", a, err)
	}
}

// Side by side with Courier's userdb script (courier-authlib-userdb): the
// same commands on two copies of one file leave the same accounts with the
// same fields, the comments and blank lines where they were, the same exit
// status, and the same -show output. Courier's script writes a changed
// entry's fields in Perl's hash order, so fields are compared as sets.
func TestUserdbAgainstCourier(t *testing.T) {
	bin := "/usr/sbin/userdb"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Courier's userdb is missing; .ci/run installs courier-authlib-userdb")
		}
		t.Skip("Courier's userdb (courier-authlib-userdb) is not installed")
	}
	start := "# the accounts\nbob\tuid=1000|gid=1000|home=/home/bob|quota=10S\n\n# end\n"
	steps := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"alice", "set", "uid=1001", "gid=1001", "home=/home/alice"}},
		{"", []string{"bob", "set", "quota=20S", "shell=/bin/sh"}},
		{"$1$abc$def\n", []string{"alice", "set", "systempw"}},
		{"", []string{"bob", "unset", "shell"}},
		{"", []string{"bob", "unset", "quota=20S"}},
		{"", []string{"carol", "set", "uid=7", "gid=7", "home=/h/carol"}},
		{"", []string{"carol", "del"}},
		{"", []string{"nobody", "del"}},
		{"", []string{"nobody", "unset", "uid"}},
		{"", []string{"alice", "set", "home=/x|uid=0"}},
		{"", []string{"alice", "frob"}},
		{"", []string{"alice", "del", "uid"}},
	}
	cdir, pdir := t.TempDir(), t.TempDir()
	cfile, pfile := filepath.Join(cdir, "users"), filepath.Join(pdir, SourceName)
	os.WriteFile(cfile, []byte(start), 0o600)
	os.WriteFile(pfile, []byte(start), 0o600)
	for i, st := range steps {
		cmd := exec.Command(bin, append([]string{"-f", cfile}, st.args...)...)
		cmd.Stdin = strings.NewReader(st.stdin)
		var ce bytes.Buffer
		cmd.Stderr = &ce
		ccode := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			ccode = ee.ExitCode()
		}
		_, pe, pcode := courierUserdb(t, pdir, st.stdin, append([]string{"-f", pfile}, st.args...)...)
		if (ccode == 0) != (pcode == 0) {
			t.Errorf("step %d %v: Courier exit %d (%s), Postern %d (%s)", i, st.args, ccode, ce.String(), pcode, pe)
		}
		if c, p := normalizeUserdb(readFile(t, cfile)), normalizeUserdb(readFile(t, pfile)); !slices.Equal(c, p) {
			t.Fatalf("step %d %v: the files differ\nCourier: %q\nPostern: %q", i, st.args, c, p)
		}
	}
	for _, args := range [][]string{{"-show", "-f", "FILE"}, {"-show", "-f", "FILE", "alice"}, {"-show", "-f", "FILE", "bob"}, {"-show", "-f", "FILE", "nobody"}} {
		cout, _, ccode := runCourier(t, bin, fill(args, cfile))
		pout, _, pcode := courierUserdb(t, pdir, "", fill(args, pfile)...)
		cl, pl := strings.Split(cout, "\n"), strings.Split(pout, "\n")
		if args[len(args)-1] != "FILE" { // fields, in the file's order: compare as sets
			slices.Sort(cl)
			slices.Sort(pl)
		}
		if ccode != pcode || !slices.Equal(cl, pl) {
			t.Errorf("%v: Courier %d %q, Postern %d %q", args, ccode, cout, pcode, pout)
		}
	}
}

// A hash from Courier's userdbpw is one Postern checks.
func TestCourierUserdbpwHashVerifies(t *testing.T) {
	bin := "/usr/sbin/userdbpw"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Courier's userdbpw is missing; .ci/run installs courier-authlib-userdb")
		}
		t.Skip("Courier's userdbpw (courier-authlib-userdb) is not installed")
	}
	cmd := exec.Command(bin, "-md5")
	cmd.Stdin = strings.NewReader("tr0ub4dor\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(string(out))
	if ok, err := passwd.Verify(h, "tr0ub4dor"); !ok || err != nil {
		t.Fatalf("Courier's %q does not verify: %v", h, err)
	}
	if ok, _ := passwd.Verify(h, "tr0ub4dox"); ok {
		t.Fatal("a wrong password verifies")
	}
}

func fill(args []string, file string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == "FILE" {
			out[i] = file
		}
	}
	return out
}

func runCourier(t *testing.T, bin string, args []string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// normalizeUserdb gives each line of a userdb file with its fields sorted.
func normalizeUserdb(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		name, rest, found := strings.Cut(l, "\t")
		if !found || strings.HasPrefix(l, "#") {
			out = append(out, l)
			continue
		}
		f := strings.Split(rest, "|")
		slices.Sort(f)
		out = append(out, name+"\t"+strings.Join(f, "|"))
	}
	return out
}

// pw2userdb, side by side with Courier's on the same passwd and shadow
// files: the same lines (Courier's come out in hash order, so as sets);
// then the output compiles with makeuserdb and its accounts log in with
// their shadow passwords, while a locked one does not.
func TestPw2userdb(t *testing.T) {
	dir := t.TempDir()
	hash, err := passwd.Hash("letmein", passwd.SchemeSHA512Crypt)
	if err != nil {
		t.Fatal(err)
	}
	pwFile, shFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "shadow")
	os.WriteFile(pwFile, []byte("root:x:0:0:root:/root:/bin/bash\n# a comment\nhal:x:1000:1000:Hal 9000|HAL,,,:/home/hal:/bin/sh\nlocked:x:1001:1001::/home/locked:\n"), 0o644)
	os.WriteFile(shFile, []byte("root:*:19000:0:99999:7:::\nhal:"+hash+":19000:0:99999:7:::\nlocked:!:19000::::::\n"), 0o600)

	var o, e bytes.Buffer
	if code := Pw2userdbMain([]string{"--passwd=" + pwFile, "--shadow=" + shFile}, &o, &e); code != 0 {
		t.Fatalf("pw2userdb: %d %s", code, e.String())
	}
	want := "root\tuid=0|gid=0|home=/root|shell=/bin/bash|systempw=*|gecos=root\n0=\troot\n" +
		"hal\tuid=1000|gid=1000|home=/home/hal|shell=/bin/sh|systempw=" + hash + "|gecos=Hal 9000.HAL,,,\n1000=\thal\n" +
		"locked\tuid=1001|gid=1001|home=/home/locked|systempw=!\n1001=\tlocked\n"
	if o.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", o.String(), want)
	}
	if bin := "/usr/sbin/pw2userdb"; fileExists(bin) {
		cout, cerr, code := runCourier(t, bin, []string{"--passwd=" + pwFile, "--shadow=" + shFile})
		c, p := strings.Split(cout, "\n"), strings.Split(o.String(), "\n")
		slices.Sort(c)
		slices.Sort(p)
		if code != 0 || !slices.Equal(c, p) {
			t.Errorf("Courier's pw2userdb (%d, %s):\n%s\nPostern's:\n%s", code, cerr, cout, o.String())
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("Courier's pw2userdb is missing; .ci/run installs courier-authlib-userdb")
	}
	var d bytes.Buffer
	Pw2userdbMain([]string{"--passwd=" + pwFile, "--shadow=" + shFile, "--domain=example.test", "--nouid"}, &d, &e)
	if strings.Contains(d.String(), "=\t") || !strings.HasPrefix(d.String(), "root@example.test\t") {
		t.Errorf("--domain --nouid: %q", d.String())
	}

	cfg := t.TempDir()
	os.WriteFile(filepath.Join(cfg, SourceName), o.Bytes(), 0o600)
	if code := MakeuserdbMain(nil, &d, &e, cfg); code != 0 {
		t.Fatalf("makeuserdb of pw2userdb's output: %s", e.String())
	}
	db, err := userdb.Open(filepath.Join(cfg, DBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if a, err := db.Authenticate(context.Background(), "imap", "hal", "letmein"); err != nil || a.UID != 1000 || a.Home != "/home/hal" {
		t.Errorf("hal: %+v %v", a, err)
	}
	for _, name := range []string{"locked", "root"} {
		if _, err := db.Authenticate(context.Background(), "imap", name, "!"); err == nil {
			t.Errorf("%s (hash %q) logged in", name, "!")
		}
	}
	if code := Pw2userdbMain([]string{"--passwd=/nonexistent"}, &d, &e); code == 0 {
		t.Error("a missing passwd file is not an error")
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
