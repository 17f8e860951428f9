package authconfig

import (
	"os"
	"path/filepath"
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
		{"authuserdb\nauthpam\n", false, "authmodulelist:2: authpam: Courier has this module; Postern does not have it yet (available: authuserdb, authmysql, authpgsql, authldap)"},
		{"authfoo\n", false, `authmodulelist:1: unknown authentication module "authfoo" (available: authuserdb, authmysql, authpgsql, authldap)`},
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
