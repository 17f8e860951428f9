package sqlauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/auth"
)

// logBuffer collects a module's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listAll(t *testing.T, m *Module) []*auth.Account {
	t.Helper()
	var got []*auth.Account
	if err := m.Enumerate(context.Background(), func(a *auth.Account) error { got = append(got, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func names(as []*auth.Account) string {
	var n []string
	for _, a := range as {
		n = append(n, a.Name)
	}
	return strings.Join(n, " ")
}

// TestEnumerate: the default query from the table's fields and
// X_WHERE_CLAUSE lists the rows a lookup finds, with their Maildir and
// options; rows a lookup could not use are logged and left out.
func TestEnumerate(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		ins := "INSERT INTO " + f.table + " (id, clear, uid, gid, home, maildir, auxoptions, server) VALUES (?, 'pw', ?, ?, ?, ?, ?, ?)"
		f.exec(t, ins, "alice@example.test", "1000", "1001", "/srv/alice", "Mail", "disableshared=0,sharedgroup=x", "here")
		f.exec(t, ins, "bob@example.test", "1002", "1002", "/srv/bob", nil, nil, "here")
		f.exec(t, ins, "carol@example.test", "1003", "1003", "/srv/carol", nil, nil, "elsewhere")
		f.exec(t, ins, "dave@example.test", "root", "1004", "/srv/dave", nil, nil, "here")
		f.exec(t, ins, "erin@example.test", "1005", "1005", "", nil, nil, "here")
		f.exec(t, ins, "frank@example.test", "1006", "1006", "relative/home", nil, nil, "here")
		f.exec(t, ins, "", "1007", "1007", "/srv/nameless", nil, nil, "here")
		f.exec(t, ins, "gina@example.test", "1008", "1008", "/srv/gina", "/var/mail/gina", "", "here")

		var logs logBuffer
		cfg, err := Parse(f.d, lines("authrc", f.rc+f.fields(f.d.prefix())))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		got := listAll(t, m)
		byName := map[string]*auth.Account{}
		for _, a := range got {
			byName[a.Name] = a
		}
		if len(got) != 3 || byName["alice@example.test"] == nil || byName["bob@example.test"] == nil || byName["gina@example.test"] == nil {
			t.Fatalf("listed %q, want alice, bob and gina", names(got))
		}
		a := byName["alice@example.test"]
		if a.UID != 1000 || a.GID != 1001 || a.Home != "/srv/alice" || a.Maildir != "/srv/alice/Mail" ||
			a.Options["sharedgroup"] != "x" || a.Options["disableshared"] != "0" || a.Fields["options"] != "disableshared=0,sharedgroup=x" || a.Module != m.Name() {
			t.Errorf("alice: %+v", a)
		}
		if b := byName["bob@example.test"]; b.Maildir != "" || len(b.Options) != 0 || b.MaildirPath() != "/srv/bob/Maildir" {
			t.Errorf("bob: %+v", b)
		}
		if g := byName["gina@example.test"]; g.Maildir != "/var/mail/gina" {
			t.Errorf("gina: %+v", g)
		}
		// What is listed is what a lookup finds.
		for _, l := range got {
			a, err := m.Lookup(context.Background(), l.Name)
			if err != nil || a.UID != l.UID || a.GID != l.GID || a.Home != l.Home || a.Maildir != l.Maildir {
				t.Errorf("lookup of listed %s: %v %+v, listed %+v", l.Name, err, a, l)
			}
		}
		out := logs.String()
		for _, want := range []string{"dave@example.test", "erin@example.test", "frank@example.test", `reason="no name"`, "left_out=4"} {
			if !strings.Contains(out, want) {
				t.Errorf("the log does not mention %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, "carol") {
			t.Errorf("carol, left out by the WHERE clause, was logged:\n%s", out)
		}
	})
}

// TestEnumerateClause: the admin's X_ENUMERATE_CLAUSE, with Courier's
// values for the variables, and only the four required columns; a
// configuration that only has a SELECT_CLAUSE lists nothing; a query with
// the wrong columns is an error.
func TestEnumerateClause(t *testing.T) {
	forEachDialect(t, func(t *testing.T, f *fixture) {
		ins := "INSERT INTO " + f.table + " (id, uid, gid, home, server) VALUES (?, '5', '6', ?, ?)"
		f.exec(t, ins, "a@example.test", "/srv/a", "enumerate")
		f.exec(t, ins, "b@example.test", "/srv/b", "imap")
		f.exec(t, ins, "c@other.test", "/srv/c", "enumerate")
		p := f.d.prefix()
		sel := p + "SELECT_CLAUSE SELECT id, crypt, clear, uid, gid, home FROM " + f.table + " WHERE id = '$(local_part)@$(domain)'\n"
		m := f.module(t, p+"DEFAULT_DOMAIN example.test\n"+sel+p+"ENUMERATE_CLAUSE SELECT id, uid, gid, home FROM "+f.table+
			" \\\n  WHERE server = '$(service)' AND id LIKE '%@$(domain)' AND '$(local_part)' = '*' ORDER BY id\n")
		got := listAll(t, m)
		if names(got) != "a@example.test" || got[0].UID != 5 || got[0].GID != 6 || got[0].Home != "/srv/a" || got[0].Maildir != "" {
			t.Errorf("ENUMERATE_CLAUSE listed %q %+v, want a@example.test", names(got), got)
		}
		// Without a default domain, $(domain) is "*", as Courier's.
		m = f.module(t, sel+p+"ENUMERATE_CLAUSE SELECT id, uid, gid, home, '', '' FROM "+f.table+" WHERE '$(domain)' = '*' ORDER BY id\n")
		if got := names(listAll(t, m)); got != "a@example.test b@example.test c@other.test" {
			t.Errorf("$(domain) without a default domain: listed %q", got)
		}
		if got := listAll(t, f.module(t, sel)); len(got) != 0 {
			t.Errorf("SELECT_CLAUSE alone listed %q", names(got))
		}
		for _, q := range []string{"SELECT id, uid, gid FROM " + f.table, "SELECT id, uid, gid, home, '', '', '' FROM " + f.table} {
			m := f.module(t, sel+p+"ENUMERATE_CLAUSE "+q+"\n")
			err := m.Enumerate(context.Background(), func(*auth.Account) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "want 4 to 6") {
				t.Errorf("%s: %v", q, err)
			}
		}
		m = f.module(t, sel+p+"ENUMERATE_CLAUSE SELECT id, uid, gid, home FROM no_such_table_here\n")
		if err := m.Enumerate(context.Background(), func(*auth.Account) error { return nil }); !errors.Is(err, auth.ErrTemporary) {
			t.Errorf("a query the database refuses: %v, want a temporary failure", err)
		}
	})
}

// TestEnumerateLarge: a large table is streamed to the end, and a consumer
// that stops early gets its own error back at once, leaving the module
// able to answer.
func TestEnumerateLarge(t *testing.T) {
	const rows = 20000
	forEachDialect(t, func(t *testing.T, f *fixture) {
		for start := 0; start < rows; start += 1000 {
			var b strings.Builder
			b.WriteString("INSERT INTO " + f.table + " (id, uid, gid, home) VALUES ")
			for i := start; i < start+1000; i++ {
				if i > start {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "('u%05d@example.test', '%d', '100', '/srv/u%05d')", i, 2000+i, i)
			}
			f.exec(t, b.String())
		}
		m := f.module(t, f.fields(f.d.prefix()))
		ctx := context.Background()
		seen := map[string]bool{}
		err := m.Enumerate(ctx, func(a *auth.Account) error {
			if seen[a.Name] || a.UID < 2000 || a.Home != "/srv/"+strings.TrimSuffix(a.Name, "@example.test") {
				return fmt.Errorf("bad or repeated account %+v", a)
			}
			seen[a.Name] = true
			return nil
		})
		if err != nil || len(seen) != rows {
			t.Fatalf("listed %d of %d: %v", len(seen), rows, err)
		}

		stop := errors.New("enough")
		n := 0
		start := time.Now()
		err = m.Enumerate(ctx, func(*auth.Account) error {
			if n++; n == 10 {
				return stop
			}
			return nil
		})
		if err != stop || n != 10 {
			t.Errorf("stopping after 10: %v after %d", err, n)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stopping early took %v", d)
		}
		if _, err := m.Lookup(ctx, "u00042@example.test"); err != nil {
			t.Errorf("a lookup after an early stop: %v", err)
		}
	})
}

// TestEnumerateDatabaseDown: a database that cannot be reached is a
// temporary failure, not an empty list.
func TestEnumerateDatabaseDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg, err := Parse(Postgres, lines("rc", fmt.Sprintf("PGSQL_CONNECTION host=127.0.0.1 port=%d user=postgres sslmode=disable\n", port)+
		"PGSQL_USER_TABLE t\nPGSQL_CLEAR_PWFIELD c\nPGSQL_UID_FIELD u\nPGSQL_GID_FIELD g\nPGSQL_HOME_FIELD h\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	called := false
	err = m.Enumerate(context.Background(), func(*auth.Account) error { called = true; return nil })
	if !errors.Is(err, auth.ErrTemporary) || called {
		t.Errorf("database down: %v (called %v), want a temporary failure", err, called)
	}
}

// TestEnumerateQuery: the default query names Courier's columns in
// Courier's order, with the defaults for fields a SELECT_CLAUSE
// configuration leaves out.
func TestEnumerateQuery(t *testing.T) {
	cfg, err := Parse(MySQL, lines("authmysqlrc", "MYSQL_USER_TABLE users\nMYSQL_CRYPT_PWFIELD pw\nMYSQL_UID_FIELD u\nMYSQL_GID_FIELD g\nMYSQL_HOME_FIELD h\nMYSQL_LOGIN_FIELD login\nMYSQL_MAILDIR_FIELD md\nMYSQL_WHERE_CLAUSE active=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := &Module{cfg: cfg}
	if got, want := m.enumerateQuery(), "SELECT login, u, g, h, md, '' FROM users WHERE (active=1)"; got != want {
		t.Errorf("default query:\n got %s\nwant %s", got, want)
	}
	cfg, err = Parse(MySQL, lines("authmysqlrc", "MYSQL_USER_TABLE users\nMYSQL_SELECT_CLAUSE SELECT 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	m = &Module{cfg: cfg}
	if got, want := m.enumerateQuery(), "SELECT id, uid, gid, home, '', '' FROM users"; got != want {
		t.Errorf("with a SELECT_CLAUSE:\n got %s\nwant %s", got, want)
	}
}
