package authconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"postern/auth/pamauth"
	"strings"
	"testing"
	"time"
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
		{"authuserdb\nauthshadow\n", false, "authmodulelist:2: authshadow: Courier has this module; Postern does not have it yet (available: authuserdb, authmysql, authpgsql, authldap, authpam, authdaemon)"},
		{"authfoo\n", false, `authmodulelist:1: unknown authentication module "authfoo" (available: authuserdb, authmysql, authpgsql, authldap, authpam, authdaemon)`},
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

func TestReadCache(t *testing.T) {
	for _, c := range []struct {
		file string // "" leaves authcache out
		want string // the settings, or the error's end
	}{
		{"", "0s 0s 0 false"},
		{"# defaults\n", "5m0s 30s 10000 true"},
		{"ttl 1h\nnegativettl 0\nsize 50\n", "1h0m0s 0s 50 true"},
		{"size 0\n", "5m0s 30s 0 false"},
		{"ttl 0\nnegativettl 0\n", "0s 0s 10000 false"},
		{"ttl forever\n", `authcache:1: ttl "forever": want a duration such as 5m (0 keeps nothing)`},
		{"ttl -1s\n", `authcache:1: ttl "-1s": want a duration such as 5m (0 keeps nothing)`},
		{"size many\n", `authcache:1: size "many": want a number of entries, 0 to 10000000`},
		{"ttl\n", "authcache:1: want NAME VALUE (ttl 5m, negativettl 30s, size 10000)"},
		{"size 1\ncolour blue\n", `authcache:2: unknown setting "colour" (ttl, negativettl, size)`},
	} {
		dir := t.TempDir()
		if c.file != "" {
			os.WriteFile(filepath.Join(dir, CacheSetting), []byte(c.file), 0o600)
		}
		cfg, err := ReadCache(dir)
		got := fmt.Sprintf("%v %v %d %v", cfg.TTL, cfg.NegativeTTL, cfg.Size, cfg.Enabled())
		if err != nil {
			got = strings.TrimPrefix(err.Error(), dir+"/")
		}
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.file, got, c.want)
		}
	}
	// Read gives the cache to every module but the userdb.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ModuleListSetting), []byte("authuserdb authpgsql\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "authpgsqlrc"), []byte("PGSQL_CONNECTION host=127.0.0.1\nPGSQL_USER_TABLE u\nPGSQL_CLEAR_PWFIELD c\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_HOME_FIELD home\n"), 0o600)
	os.WriteFile(filepath.Join(dir, CacheSetting), []byte("ttl 2m\n"), 0o600)
	specs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].cache.Enabled() || specs[1].cache.TTL != 2*time.Minute {
		t.Errorf("caches: userdb %+v, pgsql %+v", specs[0].cache, specs[1].cache)
	}
}

// TestAuthdaemonListed: authdaemon asks the socket of authdaemonclient
// (authdaemon.DefaultSocket without it), and may not ask this server's
// own authdaemonsocket.
func TestAuthdaemonListed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ModuleListSetting), []byte("authuserdb authdaemon\n"), 0o600)
	specs, err := Read(dir)
	if err != nil || len(specs) != 2 || specs[1].daemon != "/run/courier/authdaemon/socket" {
		t.Fatalf("default socket: %+v, %v", specs, err)
	}
	os.WriteFile(filepath.Join(dir, ClientSetting), []byte("# the other one\nsock/authd\n"), 0o600)
	specs, err = Read(dir)
	if err != nil || specs[1].daemon != filepath.Join(dir, "sock/authd") {
		t.Fatalf("authdaemonclient: %+v, %v", specs, err)
	}
	mods, closeAll, err := Open(specs, nil, nil)
	if err != nil || len(mods) != 1 || mods[0].Name() != "authdaemon" {
		t.Fatalf("Open: %v, %v", mods, err)
	}
	closeAll()
	os.WriteFile(filepath.Join(dir, "authdaemonsocket"), []byte(filepath.Join(dir, "sock/authd")+"\n"), 0o600)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "own socket") {
		t.Errorf("authdaemon asking the server's own socket: %v", err)
	}
}
