package authconfig

import (
	"os"
	"path/filepath"
	"postern/auth/pamauth"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	const rc = "PGSQL_CONNECTION host=127.0.0.1\nPGSQL_USER_TABLE u\nPGSQL_CLEAR_PWFIELD c\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_HOME_FIELD home\n"
	for _, c := range []struct {
		list  string // "" leaves authmodulelist out
		pgsql bool   // write authpgsqlrc
		want  string // module names, or the error's end
	}{
		{"", false, "authuserdb"},
		{"authuserdb authpgsql\n", true, "authuserdb authpgsql"},
		{`authmodulelist="authpgsql authuserdb"` + "\n", true, "authpgsql authuserdb"},
		{"pgsql\nuserdb\n", true, "authpgsql authuserdb"},
		{"authuserdb authpgsql\n", false, "authmodulelist:1: authpgsql is listed, but authpgsqlrc is missing"},
		{"authuserdb authuserdb\n", false, "authmodulelist:1: authuserdb listed twice"},
		{"authuserdb authldap\n", false, "authmodulelist:1: authldap is listed, but authldaprc is missing"},
		{"authuserdb\nauthshadow\n", false, "authmodulelist:2: authshadow: Courier has this module; Postern does not have it yet (available: authuserdb, authmysql, authpgsql, authldap, authpam)"},
		{"authfoo\n", false, `authmodulelist:1: unknown authentication module "authfoo" (available: authuserdb, authmysql, authpgsql, authldap, authpam)`},
		{"# nothing\n\"\"\n", false, "authmodulelist: no module listed"},
	} {
		dir := t.TempDir()
		if c.list != "" {
			os.WriteFile(filepath.Join(dir, ModuleListSetting), []byte(c.list), 0o600)
		}
		if c.pgsql {
			os.WriteFile(filepath.Join(dir, "authpgsqlrc"), []byte(rc), 0o600)
		}
		specs, err := Read(dir)
		var got string
		if err != nil {
			got = strings.TrimPrefix(err.Error(), dir+"/")
		} else {
			var names []string
			for _, s := range specs {
				names = append(names, s.name)
			}
			got = strings.Join(names, " ")
		}
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.list, got, c.want)
		}
	}
}

// TestOpenAndEqual: the userdb stands where it is listed (left out when
// there is none), and Equal tells a changed SQL file from an unchanged one.
func TestOpenAndEqual(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ModuleListSetting), []byte("authpgsql authuserdb\n"), 0o600)
	rc := "PGSQL_CONNECTION host=127.0.0.1 port=1\nPGSQL_USER_TABLE u\nPGSQL_CLEAR_PWFIELD c\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_HOME_FIELD home\n"
	os.WriteFile(filepath.Join(dir, "authpgsqlrc"), []byte(rc), 0o600)
	a, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	mods, closeAll, err := Open(a, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if len(mods) != 1 || mods[0].Name() != "authpgsql" {
		t.Errorf("modules without a userdb: %v", mods)
	}
	b, _ := Read(dir)
	if !Equal(a, b) {
		t.Error("the same files read twice are not Equal")
	}
	os.WriteFile(filepath.Join(dir, "authpgsqlrc"), []byte(strings.Replace(rc, "port=1", "port=2", 1)), 0o600)
	c, _ := Read(dir)
	if Equal(a, c) {
		t.Error("a changed authpgsqlrc is Equal to the old one")
	}
}

// TestPAMListed: authpam is a module when the binary has PAM, and a
// configuration error saying how to get it when not.
func TestPAMListed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ModuleListSetting), []byte("authuserdb authpam\n"), 0o600)
	specs, err := Read(dir)
	if pamauth.Available {
		if err != nil || len(specs) != 2 || !specs[1].pam {
			t.Fatalf("with PAM: %v %+v", err, specs)
		}
		mods, closeAll, err := Open(specs, nil, nil)
		if err != nil || len(mods) != 1 || mods[0].Name() != "authpam" {
			t.Errorf("open: %v %v", err, mods)
		}
		closeAll()
	} else if err == nil || !strings.Contains(err.Error(), "authmodulelist:1: authpam: this postern was built without PAM") {
		t.Errorf("without PAM: %v", err)
	}
}
