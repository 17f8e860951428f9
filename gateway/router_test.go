package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"postern/auth"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/policy"
	"postern/policy/aliases"
)

// newTestRouter builds a Router over a real configuration: postern init,
// accounts added with "postern user add", and a compiled alias table.
func newTestRouter(t *testing.T, aliasSource string, users ...string) *Router {
	t.Helper()
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "acceptmailfor"), []byte("example.test\nvirt.test\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "hosteddomains"), []byte("alias.test\texample.test\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "esmtpacceptmailfor"), []byte("relay.test\n.sub.test\nexample.test\nlisted.test\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "relayrecipients"), []byte("Carol@Listed.test\n"), 0o644)
	for _, u := range users {
		var out bytes.Buffer
		args := []string{"add", u, "--password", "pw", "--no-maildir"}
		if !strings.Contains(u, "@") {
			args = append(args, "--home", filepath.Join(dir, "home", u))
		}
		if code := authtool.UserMain(args, strings.NewReader(""), &out, &out, etc); code != 0 {
			t.Fatalf("user add %s: %s", u, out.String())
		}
	}
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(etc, "aliases"), []byte(aliasSource), 0o644)
	dbPath := filepath.Join(etc, aliases.DefaultDBName)
	if err := aliases.Compile(etc, dbPath); err != nil {
		t.Fatal(err)
	}
	adb, err := aliases.OpenDB(dbPath, aliases.WithLocalDomains(cfg.HasDomain))
	if err != nil {
		t.Fatal(err)
	}
	udb, err := userdb.Open(cfg.UserdbDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adb.Close(); udb.Close() })
	return &Router{Config: func() *policy.Config { return cfg }, Auth: auth.NewService(udb), Aliases: adb}
}

func resolved(ts []Target) string {
	var s []string
	for _, t := range ts {
		kind := "remote"
		if t.Recipient.Local {
			kind = "local:" + t.Account.Name
		}
		s = append(s, t.Recipient.Addr+"="+kind)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func TestRouterResolve(t *testing.T) {
	r := newTestRouter(t, `
postmaster: alice
larry: larry@example.test, moe@example.test
team: alice, bob@elsewhere.example
@virt.test: john
`, "alice@example.test", "larry@example.test", "moe@example.test", "john", "mary-ann@example.test")
	ctx := context.Background()
	cases := []struct {
		addr  string
		relay bool
		want  string // resolved targets, or "NNN" for a refusal code
	}{
		{"alice@example.test", false, "alice@example.test=local:alice@example.test"},
		{"ALICE@Example.TEST", false, "ALICE@example.test=local:alice@example.test"},
		{"alice-lists@example.test", false, "alice-lists@example.test=local:alice@example.test"},
		{"alice+tag@example.test", false, "alice+tag@example.test=local:alice@example.test"},
		{"mary-ann@example.test", false, "mary-ann@example.test=local:mary-ann@example.test"},
		{"mary-ann-news@example.test", false, "mary-ann-news@example.test=local:mary-ann@example.test"},
		{"postmaster@example.test", false, "alice@example.test=local:alice@example.test"},
		// RFC 5321 4.5.1: a bare postmaster is this host's domain's.
		{"postmaster", false, "alice@example.test=local:alice@example.test"},
		{"POSTMASTER", false, "alice@example.test=local:alice@example.test"},
		{"root", false, "501"},
		// An alias domain shares its target's mailboxes and aliases.
		{"Alice@Alias.test", false, "Alice@example.test=local:alice@example.test"},
		{"alice-lists@alias.test", false, "alice-lists@example.test=local:alice@example.test"},
		{"postmaster@alias.test", false, "alice@example.test=local:alice@example.test"},
		{"nobody@alias.test", false, "550"},
		// Domains we relay for (esmtpacceptmailfor) go on, whoever asks;
		// the receiving server judges their local parts.
		{"Bob@relay.test", false, "Bob@relay.test=remote"},
		{"bob@mx.sub.test", false, "bob@mx.sub.test=remote"},
		{"bob@sub.test", false, "554"},
		// relayrecipients lists listed.test's addresses: others are
		// refused now (no backscatter), unless the client may relay.
		{"carol@listed.test", false, "carol@listed.test=remote"},
		{"dave@listed.test", false, "550"},
		{"dave@listed.test", true, "dave@listed.test=remote"},
		{"bob@relay.test.", false, "554"},
		{"bob@[127.0.0.1]", false, "554"},
		{"larry@example.test", false, "larry@example.test=local:larry@example.test moe@example.test=local:moe@example.test"},
		{"team@example.test", false, "alice@example.test=local:alice@example.test bob@elsewhere.example=remote"},
		{"sales@virt.test", false, "john-sales@virt.test=local:john"},
		{"nobody@example.test", false, "550"},
		{"bob@elsewhere.example", false, "554"},
		{"bob@elsewhere.example", true, "bob@elsewhere.example=remote"},
		{"alice@[127.0.0.1]", true, "554"},
		{"alice@example.test.", true, "554"},
		{"bob@elsewhere.example.", true, "554"},
		{"alice%bob@example.test", false, "550"},
		{"\"bob@elsewhere\"@example.test", false, "550"},
		{"no-at-sign", false, "501"},
	}
	for _, c := range cases {
		ts, ref := r.Resolve(ctx, c.addr, c.relay)
		got := resolved(ts)
		if ref != nil {
			got = strings.Fields(ref.Error())[0]
		}
		if got != c.want {
			t.Errorf("Resolve(%q, relay=%v) = %s, want %s", c.addr, c.relay, got, c.want)
		}
	}
}

// The domain a bare postmaster belongs to: me when accepted, else its
// parent, else the first accepted domain.
func TestPostmasterDomain(t *testing.T) {
	cases := []struct {
		me, accept, want string
	}{
		{"example.org", "example.org b.example", "example.org"},
		{"mail.example.org", "example.org b.example", "example.org"},
		{"mx.other.example", "c.example b.example", "b.example"},
		{"mx.other.example", "", ""},
	}
	for _, c := range cases {
		cfg := &policy.Config{Me: c.me, AcceptMailFor: map[string]bool{}}
		for _, d := range strings.Fields(c.accept) {
			cfg.AcceptMailFor[d] = true
		}
		if got := PostmasterDomain(cfg); got != c.want {
			t.Errorf("me %s, acceptmailfor %q: %q, want %q", c.me, c.accept, got, c.want)
		}
	}
}

// Courier's locals: the domain is taken off an address of a local domain
// before its account is looked up. Without the file, me is local.
func TestRouterLocals(t *testing.T) {
	r := newTestRouter(t, "root: john\n", "alice@example.test", "john")
	ctx := context.Background()
	check := func(addr, want string) {
		t.Helper()
		ts, ref := r.Resolve(ctx, addr, false)
		got := resolved(ts)
		if ref != nil {
			got = strconv.Itoa(ref.Code)
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", addr, got, want)
		}
	}
	// No locals file: me (mail.example.test) is the local domain.
	check("john@mail.example.test", "john@mail.example.test=local:john")
	check("John@Mail.Example.Test", "John@mail.example.test=local:john")
	check("john-ext@mail.example.test", "john-ext@mail.example.test=local:john")
	check("root@mail.example.test", "john@mail.example.test=local:john")
	check("alice@mail.example.test", "550") // alice is alice@example.test
	check("nobody@mail.example.test", "550")
	check("postmaster", "550")        // still example.test's, which has none here
	check("john@example.test", "550") // hosted: the whole address only

	etc := r.Config().Dir
	os.WriteFile(filepath.Join(etc, "locals"), []byte("lan.test\n.corp.test\n!mx.corp.test\nexample.test\n"), 0o644)
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	r.Config = func() *policy.Config { return cfg }
	// The server's alias table asks the current configuration.
	adb, err := aliases.OpenDB(filepath.Join(etc, aliases.DefaultDBName), aliases.WithLocalDomains(func(d string) bool { return r.Config().HasDomain(d) }))
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	r.Aliases = adb
	check("john@lan.test", "john@lan.test=local:john")
	check("john@host.corp.test", "john@host.corp.test=local:john")
	check("john@a.b.corp.test", "john@a.b.corp.test=local:john")
	check("john@corp.test", "554")         // ".corp.test" is its subdomains only
	check("john@mx.corp.test", "554")      // excluded
	check("john@mail.example.test", "554") // the file replaces the default
	check("root@lan.test", "john@lan.test=local:john")
	// Hosted and local: the whole address first, then the bare name.
	check("alice@example.test", "alice@example.test=local:alice@example.test")
	check("john@example.test", "john@example.test=local:john")
	if ts, ref := r.Resolve(ctx, "john@mx.corp.test", true); ref != nil || resolved(ts) != "john@mx.corp.test=remote" {
		t.Errorf("an excluded host is relayed for a relay client: %v %v", resolved(ts), ref)
	}
}
