package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"postern/auth/ldapauth/ldaptest"
	"postern/auth/passwd"
	"postern/auth/sqlauth/sqltest"
	"postern/mailbox/maildir"
)

// TestSQLAccounts: accounts kept in PostgreSQL (authpgsql, configured by
// an authpgsqlrc as Courier's), added to a running server by a reload of
// authmodulelist. Such a user logs in over IMAP and gets mail over SMTP,
// next to the userdb's users; with the database unreachable the same
// recipient is deferred (4xx) and the login is refused for now, never
// "no such user".
func TestSQLAccounts(t *testing.T) {
	db, table := sqltest.PostgresTable(t, "postern_server_users", "id text PRIMARY KEY, crypt text, uid int, gid int, home text, quota text")
	h := newHarness(t)
	home, hash := sqlAccountHome(t, h, "sqlhome", "sql pass")
	if _, err := db.Exec("INSERT INTO "+table+" VALUES ($1, $2, $3, $4, $5, '')", "carol@example.test", hash, os.Getuid(), os.Getgid(), home); err != nil {
		t.Fatal(err)
	}
	rc := func(port int) string {
		return fmt.Sprintf("PGSQL_CONNECTION host=127.0.0.1 port=%d \\\n\tuser=postgres sslmode=disable\nPGSQL_DATABASE test\n"+
			"PGSQL_USER_TABLE %s\nPGSQL_CRYPT_PWFIELD crypt\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_LOGIN_FIELD id\n"+
			"PGSQL_HOME_FIELD home\nPGSQL_QUOTA_FIELD quota\n", port, table)
	}
	h.writeSetting("authpgsqlrc", rc(5432))
	h.writeSetting("authmodulelist", `authmodulelist="authuserdb authpgsql"`+"\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := len(h.srv.Auth().Modules()); got != 2 {
		t.Fatalf("%d modules after the reload, want 2", got)
	}

	login := func(user, pass string) error {
		c, err := imapclient.DialInsecure(h.addr("imap"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(user, pass).Wait()
	}
	if err := login("carol@example.test", "sql pass"); err != nil {
		t.Fatalf("IMAP login of the SQL account: %v", err)
	}
	if err := login("carol@example.test", "wrong"); err == nil {
		t.Fatal("IMAP login with a wrong password")
	}
	if err := login(h.user, h.pass); err != nil {
		t.Fatalf("the userdb's account after the reload: %v", err)
	}
	if err := h.send("bob@example.net", []string{"carol@example.test"}, testMessage("to sql", "hello carol\r\n")); err != nil {
		t.Fatalf("mail to the SQL account: %v", err)
	}
	h.settle()
	if n := countFiles(t, filepath.Join(home, "Maildir", "new")); n != 1 {
		t.Fatalf("%d messages in the SQL account's Maildir, want 1", n)
	}

	// The database goes away: a deferral, not a bounce.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	h.writeSetting("authpgsqlrc", rc(closed))
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	err = h.send("bob@example.net", []string{"carol@example.test"}, testMessage("db down", "x\r\n"))
	if !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("RCPT with the database down: %v, want 451", err)
	}
	if err := login("carol@example.test", "sql pass"); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Errorf("IMAP login with the database down: %v, want NO [UNAVAILABLE]", err)
	}
	if err := login(h.user, h.pass); err != nil {
		t.Errorf("the userdb's account with the database down: %v", err)
	}
	// A broken authpgsqlrc refuses the reload, as any bad setting.
	h.writeSetting("authpgsqlrc", "PGSQL_USER_TABLE\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "authpgsqlrc:1:") {
		t.Errorf("reload with a bad authpgsqlrc: %v", err)
	}
}

// sqlAccountHome makes a home with a Maildir under the harness's
// directory for an account kept in a database, and the hash of its
// password.
func sqlAccountHome(t *testing.T, h *harness, name, password string) (home, hash string) {
	t.Helper()
	home = filepath.Join(h.dir, name)
	if err := maildir.Make(filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	hash, err := passwd.Hash(password, passwd.SchemeSHA512Crypt)
	if err != nil {
		t.Fatal(err)
	}
	return home, hash
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestLDAPAccounts: accounts in an LDAP directory (authldap, configured by
// an authldaprc as Courier's) against a real slapd: an entry's user logs
// in over IMAP and gets mail over SMTP; an address no module knows is
// refused (550).
func TestLDAPAccounts(t *testing.T) {
	dir := ldaptest.Start(t)
	h := newHarness(t)
	home := filepath.Join(h.dir, "ldaphome")
	if err := maildir.Make(filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	hash, err := passwd.Hash("ldap pass", passwd.SchemeSHA512Crypt)
	if err != nil {
		t.Fatal(err)
	}
	dir.Add(t, "uid=dora,"+dir.BaseDN, map[string][]string{
		"objectClass": {"inetOrgPerson", "posixAccount"}, "uid": {"dora"}, "cn": {"Dora"}, "sn": {"D"},
		"mail": {"dora@example.test"}, "uidNumber": {fmt.Sprint(os.Getuid())}, "gidNumber": {fmt.Sprint(os.Getgid())},
		"homeDirectory": {home}, "userPassword": {"{CRYPT}" + hash},
	})
	h.writeSetting("authldaprc", fmt.Sprintf("LDAP_URI %s\nLDAP_BASEDN %s\nLDAP_BINDDN %s\nLDAP_BINDPW %s\n"+
		"LDAP_MAIL mail\nLDAP_HOMEDIR homeDirectory\nLDAP_UID uidNumber\nLDAP_GID gidNumber\nLDAP_CRYPTPW userPassword\n",
		dir.URI, dir.BaseDN, dir.AdminDN, dir.AdminPW))
	h.writeSetting("authmodulelist", "authuserdb authldap\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(h.addr("imap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("dora@example.test", "ldap pass").Wait(); err != nil {
		t.Fatalf("IMAP login of the LDAP account: %v", err)
	}
	if err := h.send("bob@example.net", []string{"dora@example.test"}, testMessage("to ldap", "hello dora\r\n")); err != nil {
		t.Fatalf("mail to the LDAP account: %v", err)
	}
	h.settle()
	if n := countFiles(t, filepath.Join(home, "Maildir", "new")); n != 1 {
		t.Fatalf("%d messages in the LDAP account's Maildir, want 1", n)
	}
	var se *smtp.SMTPError
	if err := h.send("bob@example.net", []string{"nobody@example.test"}, testMessage("x", "x\r\n")); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("an address in no module: %v, want 550", err)
	}
}

// TestReloadRefusedByAModuleThatCannotBeOpened: settings that parse but
// cannot make a module (a TLS authority file that is not there) refuse
// the whole reload, as any bad setting does; the modules in force stay.
func TestReloadRefusedByAModuleThatCannotBeOpened(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("authmysqlrc", "MYSQL_SERVER 127.0.0.1\nMYSQL_USERNAME root\nMYSQL_SSL_CACERT "+filepath.Join(h.dir, "missing.pem")+
		"\nMYSQL_USER_TABLE u\nMYSQL_CLEAR_PWFIELD c\nMYSQL_UID_FIELD uid\nMYSQL_GID_FIELD gid\nMYSQL_HOME_FIELD home\n")
	h.writeSetting("authmodulelist", "authuserdb authmysql\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "MYSQL_SSL_CACERT") {
		t.Fatalf("reload with an authority file that is not there: %v", err)
	}
	if mods := h.srv.Auth().Modules(); len(mods) != 1 || mods[0].Name() != "userdb" {
		t.Errorf("modules after the refused reload: %v", mods)
	}
	c, err := imapclient.DialInsecure(h.addr("imap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(h.user, h.pass).Wait(); err != nil {
		t.Errorf("the userdb's account after the refused reload: %v", err)
	}
}

// TestAuthCacheWithSQL: with authcache, the PostgreSQL module's answers
// are kept: an account deleted from the table still gets mail and logs
// in until its entry expires, a reload forgets at once, and an unknown
// address stays unknown for the negative TTL even after the row appears.
func TestAuthCacheWithSQL(t *testing.T) {
	db, table := sqltest.PostgresTable(t, "postern_server_cache", "id text PRIMARY KEY, crypt text, uid int, gid int, home text")
	h := newHarness(t)
	home, hash := sqlAccountHome(t, h, "cachehome", "cached pass")
	insert := func(id string) {
		if _, err := db.Exec("INSERT INTO "+table+" VALUES ($1, $2, $3, $4, $5)", id, hash, os.Getuid(), os.Getgid(), home); err != nil {
			t.Fatal(err)
		}
	}
	insert("dora@example.test")
	h.writeSetting("authpgsqlrc", fmt.Sprintf("PGSQL_CONNECTION host=127.0.0.1 port=5432 user=postgres sslmode=disable\nPGSQL_DATABASE test\n"+
		"PGSQL_USER_TABLE %s\nPGSQL_CRYPT_PWFIELD crypt\nPGSQL_UID_FIELD uid\nPGSQL_GID_FIELD gid\nPGSQL_LOGIN_FIELD id\nPGSQL_HOME_FIELD home\n", table))
	h.writeSetting("authmodulelist", "authuserdb authpgsql\n")
	h.writeSetting("authcache", "ttl 1h\nnegativettl 1h\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	login := func(user, pass string) error {
		c, err := imapclient.DialInsecure(h.addr("imap"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(user, pass).Wait()
	}
	mail := func(to string) error {
		return h.send("bob@example.net", []string{to}, testMessage("cache", "x\r\n"))
	}
	if err := login("dora@example.test", "cached pass"); err != nil {
		t.Fatalf("login: %v", err)
	}
	if err := mail("dora@example.test"); err != nil {
		t.Fatalf("mail: %v", err)
	}
	if err := mail("eve@example.test"); err == nil {
		t.Fatal("mail to an address in no module accepted")
	}
	// The database changes behind the server's back.
	if _, err := db.Exec("DELETE FROM " + table); err != nil {
		t.Fatal(err)
	}
	insert("eve@example.test")
	if err := login("dora@example.test", "cached pass"); err != nil {
		t.Errorf("login of the deleted account within its TTL: %v, want the cached answer", err)
	}
	if err := mail("dora@example.test"); err != nil {
		t.Errorf("mail to the deleted account within its TTL: %v, want the cached answer", err)
	}
	if err := mail("eve@example.test"); err == nil {
		t.Error("the new account is accepted within the negative TTL of its unknown answer")
	}
	if err := login("dora@example.test", "wrong"); err == nil {
		t.Error("a wrong password logged in through the cache")
	}
	resp, err := http.Get("http://" + h.addr("web") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := string(body); !strings.Contains(m, `postern_auth_cache_hits_total{module="authpgsql"}`) || strings.Contains(m, `postern_auth_cache_hits_total{module="authpgsql"} 0`) {
		t.Errorf("no authcache hits in /metrics:\n%s", grepLines(m, "postern_auth_cache"))
	}
	// A reload forgets.
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := mail("dora@example.test"); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("mail to the deleted account after a reload: %v, want 550", err)
	}
	if err := login("dora@example.test", "cached pass"); err == nil {
		t.Error("the deleted account logs in after a reload")
	}
	if err := mail("eve@example.test"); err != nil {
		t.Errorf("mail to the new account after a reload: %v", err)
	}
	// A bad authcache refuses the reload.
	h.writeSetting("authcache", "ttl forever\n")
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), "authcache:1:") {
		t.Errorf("reload with a bad authcache: %v", err)
	}
}
