package sqlauth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"postern/auth"
	"postern/auth/passwd"
	"postern/policy"
)

// The databases this machine kind runs on 127.0.0.1 (see .ci/run): the
// tests make their own tables in database "test" and drop them.
const (
	pgConn    = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
	mysqlAddr = "127.0.0.1:3306"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// needDB skips (or, under CI, fails) when the database is not running.
func needDB(t *testing.T, addr string) {
	t.Helper()
	if !reachable(addr) {
		if os.Getenv("CI") != "" {
			t.Fatalf("no database on %s; .ci/run should have started it", addr)
		}
		t.Skipf("no database on %s", addr)
	}
}

// fixture is one dialect's database with a fresh users table.
type fixture struct {
	d     Dialect
	db    *sql.DB
	table string
	// rc is the start of an authmysqlrc/authpgsqlrc that reaches the
	// database.
	rc string
}

func newFixture(t *testing.T, d Dialect) *fixture {
	t.Helper()
	f := &fixture{d: d, table: fmt.Sprintf("postern_users_%d", time.Now().UnixNano())}
	var err error
	switch d {
	case Postgres:
		needDB(t, "127.0.0.1:5432")
		f.db, err = sql.Open("pgx", pgConn)
		f.rc = "PGSQL_CONNECTION host=127.0.0.1 port=5432 \\\n  user=postgres sslmode=disable\nPGSQL_DATABASE test\n"
	case MySQL:
		needDB(t, mysqlAddr)
		mc := mysql.NewConfig()
		mc.User, mc.Net, mc.Addr, mc.DBName = "root", "tcp", mysqlAddr, "test"
		f.db, err = sql.Open("mysql", mc.FormatDSN())
		f.rc = "MYSQL_SERVER 127.0.0.1\nMYSQL_PORT 3306\nMYSQL_USERNAME root\nMYSQL_PASSWORD\nMYSQL_DATABASE test\n"
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.db.Exec("DROP TABLE IF EXISTS " + f.table)
		f.db.Close()
	})
	f.exec(t, "CREATE TABLE "+f.table+` (
		id VARCHAR(128) NOT NULL PRIMARY KEY,
		crypt VARCHAR(128) NOT NULL DEFAULT '',
		clear VARCHAR(128) NOT NULL DEFAULT '',
		uid VARCHAR(16) NOT NULL, gid VARCHAR(16) NOT NULL,
		home VARCHAR(255) NOT NULL,
		maildir VARCHAR(255),
		quota VARCHAR(64),
		name VARCHAR(128),
		auxoptions VARCHAR(255),
		server VARCHAR(64) NOT NULL DEFAULT 'here')`)
	return f
}

func (f *fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if f.d == Postgres {
		for i := range args {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i+1), 1)
		}
	}
	if _, err := f.db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// module parses rc (after the connection lines) and opens the module.
func (f *fixture) module(t *testing.T, rc string) *Module {
	t.Helper()
	cfg, err := Parse(f.d, lines("authrc", f.rc+rc))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func lines(file, text string) []policy.Line {
	var out []policy.Line
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, policy.Line{File: file, Num: i + 1, Text: l})
	}
	return out
}

func (f *fixture) fields(p string) string {
	return strings.ReplaceAll(`P_USER_TABLE `+f.table+`
P_CRYPT_PWFIELD crypt
P_CLEAR_PWFIELD clear
P_UID_FIELD uid
P_GID_FIELD gid
P_LOGIN_FIELD id
P_HOME_FIELD home
P_NAME_FIELD name
P_MAILDIR_FIELD maildir
P_QUOTA_FIELD quota
P_AUXOPTIONS_FIELD auxoptions
P_WHERE_CLAUSE server='here'
P_DEFAULT_DOMAIN example.test
`, "P_", p)
}

func forEachDialect(t *testing.T, run func(t *testing.T, f *fixture)) {
	for _, d := range []Dialect{Postgres, MySQL} {
		t.Run(string(d), func(t *testing.T) { run(t, newFixture(t, d)) })
	}
}

func TestTableQuery(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		md5, _ := passwd.Hash("secret", passwd.SchemeMD5Crypt)
		f.exec(t, "INSERT INTO "+f.table+" (id, crypt, uid, gid, home, maildir, quota, name, auxoptions) VALUES (?, ?, '1000', '1000', '/srv/alice', 'Mail', '5000000S', 'Alice A', 'disablepop3=1,sharedgroup=x')", "alice@example.test", md5)
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home) VALUES (?, 'clear one', '1001', '1001', '/srv/bob')", "bob@example.test")
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home, server) VALUES (?, 'x', '1002', '1002', '/srv/carol', 'elsewhere')", "carol@example.test")
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home) VALUES (?, 'x', 'root', '1003', '/srv/dave')", "dave@example.test")
		f.exec(t, "INSERT INTO "+f.table+" (id, uid, gid, home) VALUES (?, '1004', '1004', '/srv/erin')", "erin@example.test")
		m := f.module(t, f.fields(f.d.prefix()))
		ctx := context.Background()

		a, err := m.Lookup(ctx, "alice@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != "alice@example.test" || a.UID != 1000 || a.GID != 1000 || a.Home != "/srv/alice" ||
			a.Maildir != "/srv/alice/Mail" || a.Quota != "5000000S" || a.Options["disablepop3"] != "1" ||
			a.Options["sharedgroup"] != "x" || a.Fields["gecos"] != "Alice A" || a.Module != "auth"+string(f.d) {
			t.Errorf("alice: %+v", a)
		}
		if _, err := m.Authenticate(ctx, "imap", "alice@example.test", "secret"); err != nil {
			t.Errorf("alice's crypted password: %v", err)
		}
		if _, err := m.Authenticate(ctx, "imap", "alice@example.test", "Secret"); !errors.Is(err, auth.ErrBadPassword) {
			t.Errorf("wrong password: %v", err)
		}
		// MYSQL_DEFAULT_DOMAIN: a bare name is looked up in it.
		if a, err := m.Authenticate(ctx, "imap", "alice", "secret"); err != nil || a.Name != "alice@example.test" {
			t.Errorf("bare name with the default domain: %v %+v", err, a)
		}
		if _, err := m.Authenticate(ctx, "imap", "bob@example.test", "clear one"); err != nil {
			t.Errorf("bob's clear password: %v", err)
		}
		if _, err := m.Authenticate(ctx, "imap", "bob@example.test", "clear"); !errors.Is(err, auth.ErrBadPassword) {
			t.Errorf("bob's wrong clear password: %v", err)
		}
		if _, err := m.Lookup(ctx, "carol@example.test"); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("carol is excluded by the WHERE clause: %v", err)
		}
		if _, err := m.Lookup(ctx, "dave@example.test"); !errors.Is(err, auth.ErrTemporary) {
			t.Errorf("a non-numeric uid: %v, want a temporary failure", err)
		}
		if _, err := m.Authenticate(ctx, "imap", "erin@example.test", ""); !errors.Is(err, auth.ErrBadPassword) {
			t.Errorf("an account without a password logged in: %v", err)
		}
		if _, err := m.Lookup(ctx, "nobody@example.test"); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("unknown: %v", err)
		}
		// Through the service, as the servers ask: the options'
		// disablepop3 refuses POP3 only.
		svc := auth.NewService(m)
		if _, err := svc.Authenticate(ctx, "pop3", "alice@example.test", "secret"); !errors.Is(err, auth.ErrDisabled) {
			t.Errorf("pop3 for alice: %v", err)
		}
		if _, err := svc.Authenticate(ctx, "imap", "alice@example.test", "secret"); err != nil {
			t.Errorf("imap for alice: %v", err)
		}
	})
}

// TestHostileNames: names that would break out of a quoted string in some
// dialect or mode are unknown users and never reach the database; the
// table is still there afterwards.
func TestHostileNames(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home) VALUES (?, 'pw', '1', '1', '/srv/a')", "a@example.test")
		p := f.d.prefix()
		m := f.module(t, p+"SELECT_CLAUSE SELECT id, crypt, clear, uid, gid, home FROM "+f.table+" WHERE id = '$(local_part)@$(domain)'\n")
		for _, name := range []string{
			// Would match every row if it reached the query unquoted:
			// id = 'x' OR id<>'@'.
			"x' OR id<>'",
			"x' OR '1'='1", `x\' OR 1=1 -- @example.test`, "a@example.test'; DROP TABLE " + f.table + "; --",
			"a\x00@example.test", "a\n@example.test", `a"@example.test`, "a`@example.test", "a b@example.test",
			"@example.test", "a@", "\xff@example.test", strings.Repeat("a", 400) + "@example.test",
		} {
			if _, err := m.Authenticate(context.Background(), "imap", name, "pw"); !errors.Is(err, auth.ErrNoSuchUser) {
				t.Errorf("%q: %v, want no such user", name, err)
			}
		}
		if _, err := m.Authenticate(context.Background(), "imap", "a@example.test", "pw"); err != nil {
			t.Errorf("the table or its row is gone: %v", err)
		}
	})
}

// TestSelectClause: the admin's own query, with the variables filled in
// and only the six required columns.
func TestSelectClause(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home, server) VALUES (?, 'pw', '7', '8', '/srv/z', 'imap')", "z@example.test")
		p := f.d.prefix()
		m := f.module(t, p+"DEFAULT_DOMAIN example.test\n"+p+"SELECT_CLAUSE SELECT id, '', clear, uid, gid, home \\\n  FROM "+f.table+" \\\n  WHERE id = '$(local_part)@$(domain)' AND server = '$(service)'\n")
		a, err := m.Authenticate(context.Background(), "imap", "z", "pw")
		if err != nil || a.Name != "z@example.test" || a.UID != 7 || a.GID != 8 || a.Home != "/srv/z" || a.Maildir != "" {
			t.Fatalf("z over imap: %v %+v", err, a)
		}
		if _, err := m.Authenticate(context.Background(), "pop3", "z@example.test", "pw"); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("$(service) was not filled in: %v", err)
		}
	})
}

// TestDatabaseDown: a database that cannot be reached is a temporary
// failure, soon, and the module works once it can be reached.
func TestDatabaseDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	for _, c := range []struct {
		d  Dialect
		rc string
	}{
		{Postgres, fmt.Sprintf("PGSQL_CONNECTION host=127.0.0.1 port=%d user=postgres sslmode=disable\n", port)},
		{MySQL, fmt.Sprintf("MYSQL_SERVER 127.0.0.1\nMYSQL_PORT %d\nMYSQL_USERNAME root\n", port)},
	} {
		p := c.d.prefix()
		cfg, err := Parse(c.d, lines("rc", c.rc+p+"USER_TABLE t\n"+p+"CLEAR_PWFIELD c\n"+p+"UID_FIELD u\n"+p+"GID_FIELD g\n"+p+"HOME_FIELD h\n"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Open(cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = m.Authenticate(context.Background(), "imap", "a@example.test", "pw")
		if !errors.Is(err, auth.ErrTemporary) || errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("%s down: %v, want a temporary failure", c.d, err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("%s down: took %v", c.d, d)
		}
		m.Close()
	}
}

func TestParse(t *testing.T) {
	good := "MYSQL_SERVER db.example.test\nMYSQL_PORT 3307\nMYSQL_USERNAME admin\nMYSQL_PASSWORD s3cret pass\nMYSQL_OPT 0\n" +
		"MYSQL_DATABASE mail\nMYSQL_USER_TABLE passwd\nMYSQL_CRYPT_PWFIELD crypt\nMYSQL_UID_FIELD uid\nMYSQL_GID_FIELD gid\n" +
		"MYSQL_LOGIN_FIELD id\nMYSQL_HOME_FIELD home\nMYSQL_WHERE_CLAUSE server='mx1' \\\n  AND active=1\n"
	c, err := Parse(MySQL, lines("authmysqlrc", good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "db.example.test" || c.Port != 3307 || c.Password != "s3cret pass" || c.Database != "mail" ||
		c.WhereClause != "server='mx1' AND active=1" || c.LoginField != "id" {
		t.Errorf("parsed: %+v", c)
	}
	mc, err := mysqlConfig(c)
	if err != nil || mc.Net != "tcp" || mc.Addr != "db.example.test:3307" || mc.User != "admin" || mc.DBName != "mail" {
		t.Errorf("mysql config: %v %+v", err, mc)
	}
	for _, bad := range []struct{ text, want string }{
		{"MYSQL_SERVER a\nMYSQL_SERVER b\n", "authmysqlrc:2: MYSQL_SERVER set twice (first at line 1)"},
		{"MYSQL_SERVR a\n", "authmysqlrc:1: unknown setting MYSQL_SERVR"},
		{"PGSQL_USER_TABLE a\n", `authmysqlrc:1: "PGSQL_USER_TABLE" is not a authmysqlrc setting (they start with MYSQL_)`},
		{"MYSQL_PORT 99999\n", `authmysqlrc:1: MYSQL_PORT: "99999" is not a port number`},
		{"MYSQL_USER_TABLE\n", "authmysqlrc:1: MYSQL_USER_TABLE has no value"},
		{"MYSQL_SERVER a\n", "authmysqlrc: MYSQL_USER_TABLE (or MYSQL_SELECT_CLAUSE) is required"},
		{"MYSQL_USER_TABLE t\nMYSQL_UID_FIELD u\n", "authmysqlrc: MYSQL_CRYPT_PWFIELD or MYSQL_CLEAR_PWFIELD is required"},
		{"MYSQL_USER_TABLE t\nMYSQL_CLEAR_PWFIELD c\nMYSQL_UID_FIELD u\nMYSQL_GID_FIELD g\n", "authmysqlrc: MYSQL_HOME_FIELD is required"},
	} {
		_, err := Parse(MySQL, lines("authmysqlrc", bad.text))
		if err == nil || err.Error() != bad.want {
			t.Errorf("%q: %v, want %q", bad.text, err, bad.want)
		}
	}
	if _, err := Parse(Postgres, lines("authpgsqlrc", "PGSQL_CONNECTION host=a port=notaport\nPGSQL_SELECT_CLAUSE SELECT 1\n")); err == nil || !strings.HasPrefix(err.Error(), "authpgsqlrc: PGSQL_CONNECTION: ") {
		t.Errorf("a PGSQL_CONNECTION libpq cannot read: %v", err)
	}
	if _, err := Parse(Postgres, lines("authpgsqlrc", "PGSQL_SERVER x\nPGSQL_SELECT_CLAUSE SELECT 1\n")); err == nil {
		t.Error("PGSQL_SERVER was accepted; PostgreSQL's host goes in PGSQL_CONNECTION")
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"local_part": "a", "domain": "example.test", "service": "imap"}
	for in, want := range map[string]string{
		"WHERE u='$(local_part)' AND d='$(domain)' AND s='$(service)'": "WHERE u='a' AND d='example.test' AND s='imap'",
		"$(local_part)$(local_part)":                                   "aa",
		"$(unknown) $(domain":                                          "$(unknown) $(domain",
		"no variables":                                                 "no variables",
	} {
		if got := Substitute(in, vars); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestSetPassword: authtest's third argument and Courier's authpasswd: the
// row's hash (and clear field) by the table's fields, or the admin's
// X_CHPASS_CLAUSE.
func TestSetPassword(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		f.exec(t, "INSERT INTO "+f.table+" (id, clear, uid, gid, home) VALUES (?, 'old', '1', '1', '/srv/a')", "a@example.test")
		p := f.d.prefix()
		ctx := context.Background()
		m := f.module(t, f.fields(p))
		a, err := m.Authenticate(ctx, "imap", "a@example.test", "old")
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetPassword(ctx, a, "imap", "new one"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Authenticate(ctx, "imap", "a@example.test", "old"); !errors.Is(err, auth.ErrBadPassword) {
			t.Errorf("the old password after the change: %v", err)
		}
		if _, err := m.Authenticate(ctx, "imap", "a@example.test", "new one"); err != nil {
			t.Errorf("the new password: %v", err)
		}
		var crypt, clear string
		q := "SELECT crypt, clear FROM " + f.table + " WHERE id = 'a@example.test'"
		if err := f.db.QueryRow(q).Scan(&crypt, &clear); err != nil || !strings.HasPrefix(crypt, "$6$") || clear != "new one" {
			t.Errorf("the row: %q %q %v", crypt, clear, err)
		}

		// The admin's statement, with the variables filled in.
		mc := f.module(t, f.fields(p)+p+"CHPASS_CLAUSE UPDATE "+f.table+" SET crypt = '$(newpass_crypt)', clear = '' WHERE id = '$(local_part)@$(domain)'\n")
		if err := mc.SetPassword(ctx, a, "imap", "third"); err != nil {
			t.Fatal(err)
		}
		if err := f.db.QueryRow(q).Scan(&crypt, &clear); err != nil || !strings.HasPrefix(crypt, "$6$") || clear != "" {
			t.Errorf("the row after CHPASS_CLAUSE: %q %q %v", crypt, clear, err)
		}
		if _, err := mc.Authenticate(ctx, "imap", "a@example.test", "third"); err != nil {
			t.Errorf("the password set by CHPASS_CLAUSE: %v", err)
		}
		if err := mc.SetPassword(ctx, a, "imap", "it's"); err == nil {
			t.Error("CHPASS_CLAUSE took a password with a quote")
		}
		ms := f.module(t, p+"SELECT_CLAUSE SELECT id, crypt, clear, uid, gid, home FROM "+f.table+" WHERE id = '$(local_part)@$(domain)'\n")
		if err := ms.SetPassword(ctx, a, "imap", "x"); err == nil || !strings.Contains(err.Error(), "CHPASS_CLAUSE") {
			t.Errorf("SELECT_CLAUSE without CHPASS_CLAUSE: %v", err)
		}
	})
}
