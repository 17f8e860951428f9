package ldapauth

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"postern/auth"
	"postern/auth/ldapauth/ldaptest"
	"postern/auth/passwd"
	"postern/policy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func lines(text string) []policy.Line {
	var out []policy.Line
	for i, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, policy.Line{File: "authldaprc", Num: i + 1, Text: l})
		}
	}
	return out
}

func module(t *testing.T, rc string) *Module {
	t.Helper()
	cfg, err := Parse(lines(rc))
	if err != nil {
		t.Fatal(err)
	}
	m := Open(cfg, quiet)
	t.Cleanup(func() { m.Close() })
	return m
}

// directory starts slapd with three people under ou=people.
func directory(t *testing.T) *ldaptest.Server {
	s := ldaptest.Start(t)
	s.Add(t, "ou=people,"+s.BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}})
	md5, err := passwd.Hash("secret", passwd.SchemeMD5Crypt)
	if err != nil {
		t.Fatal(err)
	}
	person := func(uid, mail, pw string, extra map[string][]string) {
		attrs := map[string][]string{
			"objectClass": {"inetOrgPerson", "posixAccount"}, "uid": {uid}, "cn": {"Person " + uid}, "sn": {uid},
			"mail": {mail}, "uidNumber": {"1000"}, "gidNumber": {"1001"}, "homeDirectory": {"/srv/" + uid},
		}
		if pw != "" {
			attrs["userPassword"] = []string{pw}
		}
		for k, v := range extra {
			attrs[k] = v
		}
		s.Add(t, "uid="+uid+",ou=people,"+s.BaseDN, attrs)
	}
	person("alice", "alice@example.test", "{CRYPT}"+md5, map[string][]string{"description": {"Mail"}, "title": {"1"}})
	person("bob", "bob@example.test", "{SSHA}"+sshaOf(t, "bob pw"), nil)
	person("rel", "rel@example.test", "x", map[string][]string{"homeDirectory": {"rel"}})
	// Two entries with one address: ambiguous.
	person("twin1", "twin@example.test", "x", nil)
	person("twin2", "twin@example.test", "x", nil)
	return s
}

// sshaOf is OpenLDAP's default hash ({SSHA}: SHA-1 of password+salt, then
// the salt, base64), made here with a fixed salt.
func sshaOf(t *testing.T, pw string) string {
	salt := []byte("salt1234")
	sum := sha1.Sum(append([]byte(pw), salt...))
	return base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}

func rcFor(s *ldaptest.Server, extra string) string {
	return fmt.Sprintf(`LDAP_URI %s
LDAP_PROTOCOL_VERSION 3
LDAP_BASEDN ou=people,%s
LDAP_BINDDN %s
LDAP_BINDPW %s
LDAP_TIMEOUT 5
LDAP_INITBIND 1
LDAP_MAIL mail
LDAP_FILTER (objectClass=posixAccount)
LDAP_DOMAIN example.test
LDAP_HOMEDIR homeDirectory
LDAP_MAILDIR description
LDAP_FULLNAME cn
LDAP_CRYPTPW userPassword
LDAP_UID uidNumber
LDAP_GID gidNumber
LDAP_AUXOPTIONS title=disableimap
LDAP_DEREF never
LDAP_TLS 0
`, s.URI, s.BaseDN, s.AdminDN, s.AdminPW) + extra
}

func TestSearchAndPasswords(t *testing.T) {
	s := directory(t)
	m := module(t, rcFor(s, ""))
	ctx := context.Background()
	a, err := m.Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice@example.test" || a.UID != 1000 || a.GID != 1001 || a.Home != "/srv/alice" ||
		a.Maildir != "/srv/alice/Mail" || a.Fields["gecos"] != "Person alice" || a.Options["disableimap"] != "1" ||
		a.Fields["dn"] != "uid=alice,ou=people,"+s.BaseDN || a.Module != "authldap" {
		t.Errorf("alice: %+v", a)
	}
	if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", "secret"); err != nil {
		t.Errorf("{CRYPT} password: %v", err)
	}
	if _, err := m.Authenticate(ctx, "pop3", "alice", "secret"); err != nil {
		t.Errorf("bare name with LDAP_DOMAIN: %v", err)
	}
	if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", "Secret"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := m.Authenticate(ctx, "pop3", "bob@example.test", "bob pw"); err != nil {
		t.Errorf("{SSHA} password: %v", err)
	}
	if _, err := auth.NewService(m).Authenticate(ctx, "imap", "alice@example.test", "secret"); !errors.Is(err, auth.ErrDisabled) {
		t.Errorf("LDAP_AUXOPTIONS title=disableimap: imap login %v, want disabled", err)
	}
	for _, name := range []string{"nobody@example.test", "*", "alice@example.test)(mail=*", "a\x00b", "\xff"} {
		if _, err := m.Lookup(ctx, name); !errors.Is(err, auth.ErrNoSuchUser) {
			t.Errorf("%q: %v, want no such user", name, err)
		}
	}
	if _, err := m.Lookup(ctx, "rel@example.test"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("a relative home without LDAP_MAILROOT: %v, want a temporary failure", err)
	}
	if _, err := m.Lookup(ctx, "twin@example.test"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("two entries with one address: %v, want a temporary failure", err)
	}
	// The kept connection is reused: many lookups, one search connection.
	for i := 0; i < 20; i++ {
		if _, err := m.Lookup(ctx, "bob@example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.pool); n < 1 || n > poolSize {
		t.Errorf("%d kept connections", n)
	}

	mr := module(t, rcFor(s, "LDAP_MAILROOT /var/vmail\n"))
	if a, err := mr.Lookup(ctx, "rel@example.test"); err != nil || a.Home != "/var/vmail/rel" || a.Maildir != "" {
		t.Errorf("LDAP_MAILROOT: %v %+v", err, a)
	}
}

// TestAuthBind: LDAP_AUTHBIND checks the password by binding as the
// entry; an empty password (an unauthenticated bind, which servers accept)
// is refused before it reaches the server.
func TestAuthBind(t *testing.T) {
	s := directory(t)
	rc := strings.Replace(rcFor(s, "LDAP_AUTHBIND 1\n"), "LDAP_CRYPTPW userPassword\n", "", 1)
	m := module(t, rc)
	ctx := context.Background()
	if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", "secret"); err != nil {
		t.Errorf("bind as alice: %v", err)
	}
	for _, pw := range []string{"wrong", ""} {
		if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", pw); !errors.Is(err, auth.ErrBadPassword) {
			t.Errorf("bind with %q: %v, want a wrong password", pw, err)
		}
	}
}

func TestDirectoryDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "ldap://" + l.Addr().String()
	l.Close()
	m := module(t, "LDAP_URI "+uri+"\nLDAP_BASEDN dc=x\nLDAP_HOMEDIR h\nLDAP_GLOB_UID 5000\nLDAP_GLOB_GID 5000\nLDAP_CLEARPW c\nLDAP_TIMEOUT 2\n")
	start := time.Now()
	if _, err := m.Authenticate(context.Background(), "imap", "a@example.test", "pw"); !errors.Is(err, auth.ErrTemporary) {
		t.Errorf("directory down: %v, want a temporary failure", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestFailover: the second URI of LDAP_URI serves when the first is down.
func TestFailover(t *testing.T) {
	s := directory(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "ldap://" + l.Addr().String()
	l.Close()
	m := module(t, strings.Replace(rcFor(s, ""), "LDAP_URI "+s.URI, "LDAP_URI "+down+", "+s.URI, 1))
	if _, err := m.Authenticate(context.Background(), "pop3", "alice@example.test", "secret"); err != nil {
		t.Errorf("with the first server down: %v", err)
	}
}

func TestParse(t *testing.T) {
	c, err := Parse(lines("LDAP_SERVER ldap.example.test\nLDAP_PORT 1389\nLDAP_BASEDN o=x\nLDAP_HOMEDIR home\nLDAP_GLOB_UID 5000\nLDAP_GLOB_GID root\nLDAP_AUTHBIND 1\nLDAP_INITBIND 0\nLDAP_DEFAULTDELIVERY dd\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.URIs) != 1 || c.URIs[0] != "ldap://ldap.example.test:1389" || c.GlobUID != 5000 || c.GlobGID != 0 || !c.AuthBind || c.InitBind {
		t.Errorf("parsed: %+v", c)
	}
	base := "LDAP_URI ldap://a\nLDAP_BASEDN o=x\nLDAP_HOMEDIR h\nLDAP_UID u\nLDAP_GID g\nLDAP_CRYPTPW p\n"
	for _, bad := range []struct{ text, want string }{
		{base + "LDAP_PROTOCOL_VERSION 2\n", "authldaprc:7: LDAP_PROTOCOL_VERSION: only LDAP version 3 is spoken"},
		{base + "LDAP_URI ldap://b\n", "authldaprc:7: LDAP_URI set twice (first at line 1)"},
		{base + "LDAP_DEREF sometimes\n", `authldaprc:7: LDAP_DEREF: "sometimes" is not never, searching, finding or always`},
		{base + "LDAP_TLS yes\n", `authldaprc:7: LDAP_TLS: "yes" is not 0 or 1`},
		{base + "LDAP_EMAILMAP (mail=@user@)\n", "authldaprc:7: LDAP_EMAILMAP: the two-step e-mail map is not supported; search by LDAP_MAIL and LDAP_FILTER"},
		{base + "LDAP_FILTER (objectClass=\n", "authldaprc: LDAP_FILTER: LDAP Result Code 201 \"Filter Compile Error\": ldap: unexpected end of filter"},
		{base + "LDAP_URI_X a\n", "authldaprc:7: unknown setting LDAP_URI_X"},
		{"LDAP_URI http://a\n", `authldaprc:1: LDAP_URI: "http://a" is not an ldap://, ldaps:// or ldapi:// URI`},
		{strings.Replace(base, "LDAP_UID u\n", "", 1), "authldaprc: give LDAP_UID and LDAP_GID (attributes), or LDAP_GLOB_UID and LDAP_GLOB_GID"},
		{strings.Replace(base, "LDAP_CRYPTPW p\n", "", 1), "authldaprc: LDAP_CRYPTPW or LDAP_CLEARPW is required, unless LDAP_AUTHBIND is 1"},
		{"LDAP_BASEDN o=x\n", "authldaprc: LDAP_URI is required"},
	} {
		_, err := Parse(lines(bad.text))
		if err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%q:\n got %v\nwant %s", bad.text, err, bad.want)
		}
	}
}

// TestSetPassword: the entry's hash attribute replaced, bound as
// LDAP_BINDDN; the directory then takes the new password for a bind too.
func TestSetPassword(t *testing.T) {
	s := directory(t)
	m := module(t, rcFor(s, ""))
	ctx := context.Background()
	a, err := m.Authenticate(ctx, "pop3", "alice@example.test", "secret")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPassword(ctx, a, "pop3", "new secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", "secret"); !errors.Is(err, auth.ErrBadPassword) {
		t.Errorf("the old password after the change: %v", err)
	}
	if _, err := m.Authenticate(ctx, "pop3", "alice@example.test", "new secret"); err != nil {
		t.Errorf("the new password: %v", err)
	}
	bind := module(t, strings.Replace(rcFor(s, "LDAP_AUTHBIND 1\n"), "LDAP_CRYPTPW userPassword\n", "", 1))
	if _, err := bind.Authenticate(ctx, "pop3", "alice@example.test", "new secret"); err != nil {
		t.Errorf("a bind with the new password: %v", err)
	}
	if err := bind.SetPassword(ctx, a, "pop3", "x"); err == nil {
		t.Error("changed a password without LDAP_CRYPTPW or LDAP_CLEARPW")
	}
}
