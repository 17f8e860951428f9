package authdaemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"postern/auth"
	"postern/auth/sqlauth"
	"postern/auth/sqlauth/sqltest"
	"postern/policy"
)

// sqlModule opens an SQL module on table with the fixture's field names.
func sqlModule(t *testing.T, d sqlauth.Dialect, conn, table, extra string) auth.Module {
	t.Helper()
	p := strings.ToUpper(string(d)) + "_"
	rc := conn + p + "USER_TABLE " + table + "\n" + p + "CLEAR_PWFIELD pw\n" + p + "UID_FIELD uid\n" + p + "GID_FIELD gid\n" +
		p + "HOME_FIELD home\n" + p + "MAILDIR_FIELD maildir\n" + extra
	var lines []policy.Line
	for i, l := range strings.Split(rc, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, policy.Line{File: d.Setting(), Num: i + 1, Text: l})
		}
	}
	cfg, err := sqlauth.Parse(d, lines)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sqlauth.Open(cfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// As authconfig opens them: behind a cache.
	return auth.NewCache(m, auth.CacheConfig{TTL: time.Minute, Size: 100})
}

const usersColumns = "id VARCHAR(128) PRIMARY KEY, pw VARCHAR(64), uid VARCHAR(8), gid VARCHAR(8), home VARCHAR(128), maildir VARCHAR(128)"

// mysqlTable makes a table of the test's own in MariaDB's database test;
// the test is skipped (failed under CI) without MariaDB.
func mysqlTable(t *testing.T, rows ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:3306", time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no MariaDB on 127.0.0.1:3306")
		}
		t.Skip("no MariaDB on 127.0.0.1:3306")
	}
	c.Close()
	mc := mysql.NewConfig()
	mc.User, mc.Net, mc.Addr, mc.DBName = "root", "tcp", "127.0.0.1:3306", "test"
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("authd_enum_%d", time.Now().UnixNano())
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table); db.Close() })
	if _, err := db.Exec("CREATE TABLE " + table + " (" + usersColumns + ")"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := db.Exec("INSERT INTO " + table + " VALUES " + r); err != nil {
			t.Fatal(err)
		}
	}
	return table
}

func pgTable(t *testing.T, rows ...string) string {
	t.Helper()
	db, table := sqltest.PostgresTable(t, "authd_enum", usersColumns)
	for _, r := range rows {
		if _, err := db.Exec("INSERT INTO " + table + " VALUES " + r); err != nil {
			t.Fatal(err)
		}
	}
	return table
}

const (
	pgConn    = "PGSQL_CONNECTION " + sqltest.Conn + "\n"
	mysqlConn = "MYSQL_SERVER 127.0.0.1\nMYSQL_PORT 3306\nMYSQL_USERNAME root\nMYSQL_DATABASE test\n"
)

// TestEnumerateAllModules: ENUMERATE lists the userdb's accounts, then
// PostgreSQL's, then MariaDB's, each under its module's line; a name an
// earlier module has is left out, as a lookup finds the earlier module's
// account. Postern's own client module reads the same list.
func TestEnumerateAllModules(t *testing.T) {
	f := newFixture(t)
	pg := pgTable(t,
		"('carol@example.test', 'x', '2001', '2001', '/srv/carol', 'Mail')",
		"('bob@example.test', 'x', '2002', '2002', '/srv/bob-in-pg', NULL)")
	my := mysqlTable(t,
		"('dave@example.test', 'x', '3001', '3001', '/srv/dave', '/var/mail/dave')",
		"('carol@example.test', 'x', '3002', '3002', '/srv/carol-in-mysql', NULL)")
	f.svc.SetModules(f.db, sqlModule(t, sqlauth.Postgres, pgConn, pg, ""), sqlModule(t, sqlauth.MySQL, mysqlConn, my, ""))
	path, _ := f.serve(t, ServerOptions{})

	got := exchange(t, path, "ENUMERATE\n")
	want := "# userdb\n\n" +
		"alice@example.test\t1001\t1002\t/home/alice\t/home/alice/Maildir\tdisablepop3=1,group=staff\n" +
		"bob@example.test\t1003\t1003\t/home/bob\t\t\n" +
		"# authpgsql\n\n" +
		"carol@example.test\t2001\t2001\t/srv/carol\t/srv/carol/Mail\t\n" +
		"# authmysql\n\n" +
		"dave@example.test\t3001\t3001\t/srv/dave\t/var/mail/dave\t\n" +
		".\n"
	if got != want {
		t.Errorf("ENUMERATE:\n got %q\nwant %q", got, want)
	}
	// Each listed account is the one PRE finds.
	for _, c := range []struct{ name, uid string }{{"bob@example.test", "1003"}, {"carol@example.test", "2001"}, {"dave@example.test", "3001"}} {
		if got := exchange(t, path, "PRE . imap "+c.name+"\n"); !strings.HasPrefix(got, "UID="+c.uid+"\n") {
			t.Errorf("PRE %s: %q, want uid %s", c.name, got, c.uid)
		}
	}

	var names []string
	err := NewClient(path).Enumerate(context.Background(), func(a *auth.Account) error {
		names = append(names, a.Name)
		return nil
	})
	if err != nil || strings.Join(names, " ") != "alice@example.test bob@example.test carol@example.test dave@example.test" {
		t.Errorf("the client module's list: %v %v", names, err)
	}
}

// TestEnumerateModuleDown: a module that cannot list (its database is
// down) makes the answer end without its "." line, which Courier's
// clients and Postern's read as a failure, not as a shorter list.
func TestEnumerateModuleDown(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	down := sqlModule(t, sqlauth.Postgres, fmt.Sprintf("PGSQL_CONNECTION host=127.0.0.1 port=%d user=postgres sslmode=disable connect_timeout=2\n", port), "t", "")
	f.svc.SetModules(f.db, down)
	path, _ := f.serve(t, ServerOptions{})
	got := exchange(t, path, "ENUMERATE\n")
	if !strings.HasPrefix(got, "# userdb\n\nalice@example.test\t") || strings.HasSuffix(got, ".\n") {
		t.Errorf("ENUMERATE with a module down: %q", got)
	}
	err = NewClient(path).Enumerate(context.Background(), func(*auth.Account) error { return nil })
	if err == nil {
		t.Error("the client module took a cut-short list for a whole one")
	}
}

// TestEnumerateLongListing: a listing that takes longer than the
// per-request Timeout is answered whole, as long as the client reads; and
// Postern's client module, whose reads each have its Timeout, gets it
// whole as long as it keeps coming: each module's list is sent when the
// module is done.
func TestEnumerateLongListing(t *testing.T) {
	f := newFixture(t)
	pg1 := pgTable(t, "('slow1@example.test', 'x', '2001', '2001', '/srv/slow1', NULL)")
	pg2 := pgTable(t, "('slow2@example.test', 'x', '2002', '2002', '/srv/slow2', NULL)")
	slow := func(table string) auth.Module {
		return sqlModule(t, sqlauth.Postgres, pgConn, table, "PGSQL_ENUMERATE_CLAUSE SELECT id, uid, gid, home FROM "+table+" CROSS JOIN pg_sleep(1.2)\n")
	}
	f.svc.SetModules(f.db, slow(pg1), slow(pg2))
	path, _ := f.serve(t, ServerOptions{Timeout: time.Second})
	start := time.Now()
	got := exchange(t, path, "ENUMERATE\n")
	if !strings.HasSuffix(got, "# authpgsql\n\nslow1@example.test\t2001\t2001\t/srv/slow1\t\t\n# authpgsql\n\nslow2@example.test\t2002\t2002\t/srv/slow2\t\t\n.\n") {
		t.Errorf("a listing of %v with a 1 s Timeout: %q", time.Since(start), got)
	}
	c := NewClient(path)
	c.Timeout = 2 * time.Second
	var names []string
	start = time.Now()
	err := c.Enumerate(context.Background(), func(a *auth.Account) error { names = append(names, a.Name); return nil })
	if err != nil || strings.Join(names, " ") != "alice@example.test bob@example.test slow1@example.test slow2@example.test" {
		t.Errorf("the client with a 2 s Timeout, after %v: %v %v", time.Since(start), names, err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("the listing took %v; the test wants it longer than the client's Timeout", d)
	}
}

// TestClientEnumerateSilentDaemon: a daemon that stops sending in the
// middle of its list is a temporary failure after the client's Timeout,
// not a wait for the whole EnumerateTimeout.
func TestClientEnumerateSilentDaemon(t *testing.T) {
	base, err := os.MkdirTemp("", "authd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	path := base + "/socket"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Read(make([]byte, 100))
		c.Write([]byte("# userdb\n\na@example.test\t1\t1\t/a\t\t\n"))
		time.Sleep(3 * time.Second) // then nothing
	}()
	client := NewClient(path)
	client.Timeout = 500 * time.Millisecond
	start := time.Now()
	n := 0
	err = client.Enumerate(context.Background(), func(*auth.Account) error { n++; return nil })
	if !errors.Is(err, auth.ErrTemporary) || n != 1 {
		t.Errorf("a daemon gone silent: %v after %d accounts", err, n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v, want about the 0.5 s Timeout", d)
	}
}
