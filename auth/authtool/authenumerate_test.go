package authtool

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/sqlauth"
	"postern/auth/sqlauth/sqltest"
	"postern/auth/userdb"
	"postern/policy"
)

func runAuthenumerate(svc *auth.Service, args ...string) result {
	var out, errOut bytes.Buffer
	code := AuthenumerateMain(args, &out, &errOut, svc)
	return result{code, out.String(), errOut.String()}
}

// pgModule opens authpgsql on table (columns id, uid, gid, home, maildir,
// options), or on a database that is not there when table is "".
func pgModule(t *testing.T, table string) auth.Module {
	t.Helper()
	conn := sqltest.Conn
	if table == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres sslmode=disable", l.Addr().(*net.TCPAddr).Port)
		l.Close()
		table = "t"
	}
	var lines []policy.Line
	for i, l := range []string{"PGSQL_CONNECTION " + conn, "PGSQL_USER_TABLE " + table, "PGSQL_CLEAR_PWFIELD ''",
		"PGSQL_UID_FIELD uid", "PGSQL_GID_FIELD gid", "PGSQL_HOME_FIELD home", "PGSQL_MAILDIR_FIELD maildir", "PGSQL_AUXOPTIONS_FIELD options"} {
		lines = append(lines, policy.Line{File: "authpgsqlrc", Num: i + 1, Text: l})
	}
	cfg, err := sqlauth.Parse(sqlauth.Postgres, lines)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sqlauth.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestAuthenumerate: the userdb's accounts, then PostgreSQL's, in
// Courier's authenumerate layout; -o adds the options, -s leaves out
// accounts with disableshared; uid 0 and repeated names are left out; a
// module that cannot list fails the command.
func TestAuthenumerate(t *testing.T) {
	configDir, _ := newConfig(t)
	p := PathsFor(configDir)
	entries := []userdb.Entry{
		{Name: "alice@example.test", Fields: map[string]string{"uid": "1001", "gid": "1001", "home": "/home/alice", "mail": "/home/alice/Mail", "options": "disableshared=1,group=x"}},
		{Name: "bob@example.test", Fields: map[string]string{"uid": "1002", "gid": "1002", "home": "/home/bob"}},
		{Name: "root@example.test", Fields: map[string]string{"uid": "0", "gid": "0", "home": "/root"}},
	}
	if err := userdb.WriteDB(entries, p.DB, p.Source); err != nil {
		t.Fatal(err)
	}
	db, table := sqltest.PostgresTable(t, "authenum", "id TEXT PRIMARY KEY, uid TEXT, gid TEXT, home TEXT, maildir TEXT, options TEXT")
	for _, q := range []string{
		"INSERT INTO " + table + " VALUES ('carol@example.test', '2001', '2001', '/srv/carol', '', 'disableshared=0')",
		"INSERT INTO " + table + " VALUES ('bob@example.test', '2002', '2002', '/srv/bob', '', '')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	svc := openService(t, configDir)
	svc.SetModules(append(svc.Modules(), auth.NewCache(pgModule(t, table), auth.CacheConfig{TTL: time.Minute, Size: 10}))...)

	r := runAuthenumerate(svc)
	want := "alice@example.test\t1001\t1001\t/home/alice\t/home/alice/Mail\n" +
		"bob@example.test\t1002\t1002\t/home/bob\t\n" +
		"carol@example.test\t2001\t2001\t/srv/carol\t\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("authenumerate: exit %d\n%q\nwant %q\nstderr %s", r.code, r.stdout, want, r.stderr)
	}
	r = runAuthenumerate(svc, "-o", "-s")
	want = "bob@example.test\t1002\t1002\t/home/bob\t\t\n" +
		"carol@example.test\t2001\t2001\t/srv/carol\t\tdisableshared=0\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("authenumerate -o -s: exit %d\n%q\nwant %q\nstderr %s", r.code, r.stdout, want, r.stderr)
	}

	svc.SetModules(append(svc.Modules()[:1], pgModule(t, ""))...)
	r = runAuthenumerate(svc)
	if r.code != ExitError || !strings.Contains(r.stderr, "the list is incomplete") || !strings.Contains(r.stderr, "authpgsql") {
		t.Errorf("a module down: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runAuthenumerate(svc, "extra"); r.code != ExitUsage {
		t.Errorf("an argument: exit %d", r.code)
	}
	if r := runAuthenumerate(svc, "--help"); r.code != ExitOK || !strings.Contains(r.stdout, "Usage: postern authenumerate") {
		t.Errorf("--help: exit %d %q", r.code, r.stdout)
	}
}
