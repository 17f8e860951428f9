package ldapauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"postern/auth"
)

func pagedRC(uri, extra string) string {
	return "LDAP_URI " + uri + "\nLDAP_BASEDN ou=people,dc=example,dc=test\nLDAP_BINDDN cn=admin,dc=example,dc=test\nLDAP_BINDPW pw\n" +
		"LDAP_HOMEDIR homeDirectory\nLDAP_UID uidNumber\nLDAP_GID gidNumber\nLDAP_CRYPTPW userPassword\nLDAP_TIMEOUT 5\n" + extra
}

func list(t *testing.T, m *Module) []*auth.Account {
	t.Helper()
	var got []*auth.Account
	if err := m.Enumerate(context.Background(), func(a *auth.Account) error { got = append(got, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestEnumeratePaged: a directory larger than a page is read page by
// page, every entry once, in the directory's order; an entry with two
// addresses is two accounts; one a lookup could not use is logged and
// left out.
func TestEnumeratePaged(t *testing.T) {
	entries := people(1000)
	setAttr := func(e *ldap.Entry, name string, values ...string) {
		for _, a := range e.Attributes {
			if a.Name == name {
				a.Values = values
			}
		}
	}
	setAttr(entries[10], "mail", "u00010@example.test", "alias@example.test")
	setAttr(entries[20], "homeDirectory", "relative")
	d := startPagedDirectory(t, entries)
	var logs bytes.Buffer
	cfg, err := Parse(lines(pagedRC(d.URI, "LDAP_MAILDIR description\nLDAP_AUXOPTIONS title=sharedgroup\n")))
	if err != nil {
		t.Fatal(err)
	}
	m := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	defer m.Close()
	got := list(t, m)
	if len(got) != 1000 {
		t.Fatalf("listed %d accounts, want 1000 (999 entries, one with two addresses)", len(got))
	}
	if got[10].Name != "u00010@example.test" || got[11].Name != "alias@example.test" || got[11].UID != 2010 || got[12].Name != "u00011@example.test" {
		t.Errorf("the entry with two addresses: %+v %+v", got[10], got[11])
	}
	for _, a := range got {
		if a.Name == "u00020@example.test" {
			t.Errorf("the entry with a relative home was listed: %+v", a)
		}
		if _, has := a.Fields["systempw"]; has || a.Module != "authldap" || !strings.HasPrefix(a.Fields["dn"], "uid=") {
			t.Errorf("listed %+v", a)
		}
	}
	if !strings.Contains(logs.String(), "uid=u00020,ou=people") {
		t.Errorf("the left-out entry was not logged:\n%s", logs.String())
	}
	if searches, pages, filters := d.seen(); searches != 3 || fmt.Sprint(pages) != "[400 400 400]" || filters[0] != "(mail=*)" {
		t.Errorf("searches %d, pages %v, filters %v; want 3 pages of 400 with (mail=*)", searches, pages, filters)
	}

	// A consumer that stops early: its error, and no more pages.
	stop := errors.New("enough")
	n := 0
	err = m.Enumerate(context.Background(), func(*auth.Account) error {
		if n++; n == 450 {
			return stop
		}
		return nil
	})
	if searches, _, _ := d.seen(); err != stop || searches != 2 {
		t.Errorf("stopping at 450: %v after %d searches", err, searches)
	}
	// The module still answers afterwards (its connection was not kept).
	if got := list(t, m); len(got) != 1000 {
		t.Errorf("after an early stop: %d accounts", len(got))
	}
}

// TestEnumerateLimits: a size limit that cuts the list short is a
// temporary failure, not a short list; a server without paging sends
// everything at once; the filter is Courier's choice.
func TestEnumerateLimits(t *testing.T) {
	d := startPagedDirectory(t, people(1000))
	m := module(t, pagedRC(d.URI, ""))
	d.set(500, false)
	err := m.Enumerate(context.Background(), func(*auth.Account) error { return nil })
	if !errors.Is(err, auth.ErrTemporary) || !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Errorf("a size limit at 500: %v, want a temporary failure", err)
	}
	d.set(0, true)
	d.seen()
	if got := list(t, m); len(got) != 1000 {
		t.Errorf("without paging: %d accounts", len(got))
	}
	if searches, _, _ := d.seen(); searches != 1 {
		t.Errorf("without paging: %d searches", searches)
	}
	d.set(0, false)
	for _, c := range []struct{ rc, want string }{
		{"", "(mail=*)"},
		{"LDAP_MAIL rfc822Mailbox\n", "(rfc822Mailbox=*)"},
		{"LDAP_FILTER (objectClass=posixAccount)\n", "(objectClass=posixAccount)"},
		{"LDAP_FILTER (objectClass=posixAccount)\nLDAP_ENUMERATE_FILTER objectClass=mailUser\n", "(objectClass=mailUser)"},
		{"LDAP_ENUMERATE_FILTER (&(mail=*)(!(title=noshare)))\n", "(&(mail=*)(!(title=noshare)))"},
	} {
		m := module(t, pagedRC(d.URI, c.rc))
		m.Enumerate(context.Background(), func(*auth.Account) error { return nil })
		if _, _, filters := d.seen(); len(filters) == 0 || filters[0] != c.want {
			t.Errorf("%q: searched with %v, want %s", c.rc, filters, c.want)
		}
	}
	if _, err := Parse(lines(pagedRC(d.URI, "LDAP_ENUMERATE_FILTER (mail=*\n"))); err == nil || !strings.Contains(err.Error(), "LDAP_ENUMERATE_FILTER") {
		t.Errorf("a broken LDAP_ENUMERATE_FILTER: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "ldap://" + l.Addr().String()
	l.Close()
	if err := module(t, pagedRC(down, "")).Enumerate(context.Background(), func(*auth.Account) error { return nil }); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("directory down: %v, want a temporary failure", err)
	}
}

// TestEnumerateSlapd: OpenLDAP's slapd lists the directory's people by
// LDAP_FILTER (there is no LDAP_ENUMERATE_FILTER), each as a lookup finds
// it, and pages through a directory larger than a page.
func TestEnumerateSlapd(t *testing.T) {
	s := directory(t)
	var logs bytes.Buffer
	cfg, err := Parse(lines(rcFor(s, "LDAP_MAILROOT /var/vmail\n")))
	if err != nil {
		t.Fatal(err)
	}
	m := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	defer m.Close()
	var names []string
	for _, a := range list(t, m) {
		names = append(names, a.Name)
		if a.Name == "twin@example.test" {
			continue // two entries: a lookup refuses it
		}
		l, err := m.Lookup(context.Background(), a.Name)
		if err != nil || l.UID != a.UID || l.GID != a.GID || l.Home != a.Home || l.Maildir != a.Maildir || l.Fields["options"] != a.Fields["options"] {
			t.Errorf("lookup of listed %s: %v %+v, listed %+v", a.Name, err, l, a)
		}
	}
	if got := strings.Join(names, " "); got != "alice@example.test bob@example.test rel@example.test twin@example.test twin@example.test" {
		t.Errorf("listed %s", got)
	}

	for i := 0; i < 2*enumeratePageSize+10; i++ {
		u := fmt.Sprintf("p%04d", i)
		s.Add(t, "uid="+u+",ou=people,"+s.BaseDN, map[string][]string{
			"objectClass": {"inetOrgPerson", "posixAccount"}, "uid": {u}, "cn": {u}, "sn": {u}, "mail": {u + "@example.test"},
			"uidNumber": {"3000"}, "gidNumber": {"3000"}, "homeDirectory": {"/srv/" + u},
		})
	}
	if got := len(list(t, m)); got != 5+2*enumeratePageSize+10 {
		t.Errorf("a directory of three pages: %d accounts", got)
	}
}
