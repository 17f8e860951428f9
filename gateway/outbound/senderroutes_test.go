package outbound

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/policy"
)

func senderLines(texts ...string) []policy.Line {
	var out []policy.Line
	for i, s := range texts {
		out = append(out, policy.Line{File: "/etc/postern/senderroutes", Num: i + 1, Text: s})
	}
	return out
}

func mustSenderRoutes(t *testing.T, texts ...string) *SenderRoutes {
	t.Helper()
	sr, err := ParseSenderRoutes(senderLines(texts...))
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

// The lookup order is Postfix's: the full address, then the domain, then
// parent domains (the longest first); "<>" is the null sender only.
func TestSenderRoutesLookupOrder(t *testing.T) {
	sr := mustSenderRoutes(t,
		"Boss@Cust1.Example: [192.0.2.1] /auth=boss",
		"@cust1.example: [192.0.2.2],587 /SECURITY=STARTTLS /auth=l1",
		"cust2.example: relay.cust2.example",
		".cust3.example: [192.0.2.3]",
		"*.deep.cust3.example: [192.0.2.4]",
		"<>: [192.0.2.5] /auth=bounces",
		"direct.cust4.example:",
	)
	if sr.Len() != 7 {
		t.Fatalf("Len %d", sr.Len())
	}
	cases := []struct{ sender, pattern string }{
		{"boss@cust1.example", "boss@cust1.example"},
		{"BOSS@CUST1.EXAMPLE.", "boss@cust1.example"},
		{"other@cust1.example", "cust1.example"},
		{"a@cust2.example", "cust2.example"},
		{"a@x.cust3.example", ".cust3.example"},
		{"a@x.deep.cust3.example", ".deep.cust3.example"},
		{"a@deep.cust3.example", ".cust3.example"},
		{"", "<>"},
		{"<>", "<>"},
		{"a@direct.cust4.example", "direct.cust4.example"},
	}
	for _, c := range cases {
		r, ok := sr.Lookup(c.sender)
		if !ok || r.Pattern != c.pattern {
			t.Errorf("Lookup(%q) = %q, %v; want %q", c.sender, r.Pattern, ok, c.pattern)
		}
	}
	for _, s := range []string{"a@cust3.example", "a@sub.cust2.example", "a@elsewhere.example", "nodomain", "a@", "a@bad..example"} {
		if r, ok := sr.Lookup(s); ok {
			t.Errorf("Lookup(%q) matched %q", s, r.Pattern)
		}
	}
	r, _ := sr.Lookup("x@cust1.example")
	if r.Port != 587 || r.Security != SecurityStartTLS || r.AuthName != "l1" || r.RelayAddr.String() != "192.0.2.2" {
		t.Errorf("options not parsed as routes does: %+v", r)
	}
	if r, ok := sr.Lookup("a@direct.cust4.example"); !ok || !r.UsesMX() {
		t.Errorf("an empty relay is by MX: %+v", r)
	}
	var nilSR *SenderRoutes
	if _, ok := nilSR.Lookup("a@cust1.example"); ok || nilSR.Len() != 0 {
		t.Error("nil table matched")
	}
}

func TestSenderRoutesErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ line, want string }{
		{"cust1.example [192.0.2.1]", "no ':' found"},
		{": [192.0.2.1]", "empty sender"},
		{"*: [192.0.2.1]", "no '*' sender"},
		{"a@.cust1.example: [192.0.2.1]", "subdomains are written"},
		{"a b@cust1.example: [192.0.2.1]", "not allowed"},
		{strings.Repeat("x", 65) + "@cust1.example: [192.0.2.1]", "longer than 64"},
		{"a@cust1..example: [192.0.2.1]", "empty label"},
		{"cust1.example: [192.0.2.1] /bogus", `unknown option "/bogus"`},
		{"cust1.example: 192.0.2.1", "write an address in brackets"},
		{"cust1.example: [192.0.2.1],70000", "not 1-65535"},
		{"cust1.example: /lmtp", "/lmtp needs a relay"},
	}
	for _, c := range cases {
		_, err := ParseSenderRoutes(senderLines("ok.example: [192.0.2.9]", c.line))
		if err == nil {
			t.Errorf("%q: accepted", c.line)
			continue
		}
		if !strings.Contains(err.Error(), "/etc/postern/senderroutes:2") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q, want file:line and %q", c.line, err, c.want)
		}
	}
	_, err := ParseSenderRoutes(senderLines("@cust1.example: [192.0.2.1]", "CUST1.example: [192.0.2.2]"))
	if err == nil || !strings.Contains(err.Error(), "senderroutes:2") || !strings.Contains(err.Error(), "already given at /etc/postern/senderroutes:1") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestLoadSenderRoutesFromDirectory(t *testing.T) {
	dir := t.TempDir()
	if sr, err := LoadSenderRoutes(dir); err != nil || sr.Len() != 0 {
		t.Fatalf("missing setting: %v, %d rules", err, sr.Len())
	}
	d := filepath.Join(dir, SenderRoutesSetting)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "10-cust1"), []byte("# customer 1\n@cust1.example: [192.0.2.1] /auth=l1\n"), 0o644)
	os.WriteFile(filepath.Join(d, "20-cust2"), []byte("cust2.example: [192.0.2.2]\ncust2.example: [192.0.2.3]\n"), 0o644)
	_, err := LoadSenderRoutes(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(d, "20-cust2")+":2") {
		t.Fatalf("want the duplicate with its file and line, got %v", err)
	}
}

// relays starts the two customers' smarthosts (each with its own login,
// STARTTLS) and an MX for remote.example, and returns them with the DNS
// server's address.
func senderRelays(t *testing.T) (relay1, relay2, mx *testServer, dnsAddr string) {
	t.Helper()
	cert, _ := selfSigned(t, "relay.test")
	relay1 = startSMTP(t, serverConfig{ip: "127.0.0.1", tls: serverTLS(cert), users: map[string]string{"L1": "pw1"}})
	relay2 = startSMTP(t, serverConfig{ip: "127.0.0.2", tls: serverTLS(cert), users: map[string]string{"L2": "pw2"}})
	mx = startSMTP(t, serverConfig{ip: "127.0.0.2"})
	z := newZone()
	z.add(t,
		"remote.example. 60 IN MX 10 mx.remote.example.",
		"mx.remote.example. 60 IN A 127.0.0.2",
		"special.example. 60 IN MX 10 mx.remote.example.",
	)
	return relay1, relay2, mx, startDNS(t, z)
}

func senderRulesFor(relay1, relay2 *testServer) []string {
	return []string{
		"@cust1.example: [127.0.0.1]," + itoa(relay1.port()) + " /SECURITY=STARTTLS /auth=cust1",
		"cust2.example: [127.0.0.2]," + itoa(relay2.port()) + " /SECURITY=STARTTLS /auth=cust2",
		"<>: [127.0.0.2]," + itoa(relay2.port()) + " /SECURITY=STARTTLS /auth=cust2",
	}
}

var senderAuth = map[string]Credentials{"cust1": {User: "L1", Password: "pw1"}, "cust2": {User: "L2", Password: "pw2"}}

func fromOf(msgs []received) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.From+"/"+m.AuthUser+"/"+m.Rcpts[0].To)
	}
	return out
}

// Mail from a@cust1.example and from b@cust2.example to the same recipient
// leaves through each customer's relay with its login; other senders go
// by MX; a bounce follows the "<>" rule. Sessions are cached, so the
// second cust1 message reuses relay 1's session, never relay 2's.
func TestSenderRoutesChooseRelayAndLogin(t *testing.T) {
	checkGoroutines(t)
	relay1, relay2, mx, dnsAddr := senderRelays(t)
	c := newTestClient(t, dnsAddr, mx.port(), func(o *Options) {
		o.SenderRoutes = mustSenderRoutes(t, senderRulesFor(relay1, relay2)...)
		o.Auth = senderAuth
		o.ConnCacheIdle = 5e9
	})
	to := rcpts("x@remote.example")
	wantDelivered(t, deliver(t, c, env("a@cust1.example"), to, testMessage)[0])
	wantDelivered(t, deliver(t, c, env("b@cust2.example"), to, testMessage)[0])
	wantDelivered(t, deliver(t, c, env("c@CUST1.example"), to, testMessage)[0])
	wantDelivered(t, deliver(t, c, env("d@other.example"), to, testMessage)[0])
	wantDelivered(t, deliver(t, c, env(""), to, testMessage)[0])

	if got := strings.Join(fromOf(relay1.messages()), " "); got != "a@cust1.example/L1/x@remote.example c@CUST1.example/L1/x@remote.example" {
		t.Errorf("relay 1 got %s", got)
	}
	if got := strings.Join(fromOf(relay2.messages()), " "); got != "b@cust2.example/L2/x@remote.example /L2/x@remote.example" {
		t.Errorf("relay 2 got %s", got)
	}
	if got := strings.Join(fromOf(mx.messages()), " "); got != "d@other.example//x@remote.example" {
		t.Errorf("MX got %s", got)
	}
	for _, m := range append(relay1.messages(), relay2.messages()...) {
		if !m.TLS {
			t.Errorf("message from %q to a relay without TLS", m.From)
		}
	}
}

// A sender rule overrides the routes default (the smarthost) but not a
// routes rule naming the recipient's domain, as Postfix's transport(5)
// beats sender_dependent_relayhost_maps, which beats relayhost.
func TestSenderRoutesPrecedence(t *testing.T) {
	checkGoroutines(t)
	relay1, relay2, mx, dnsAddr := senderRelays(t)
	smarthost := startSMTP(t, serverConfig{ip: "127.0.0.4"})
	c := newTestClient(t, dnsAddr, mx.port(), func(o *Options) {
		o.Routes = mustRoutes(t, "*: [127.0.0.4],"+itoa(smarthost.port()), "special.example:")
		o.SenderRoutes = mustSenderRoutes(t, senderRulesFor(relay1, relay2)...)
		o.Auth = senderAuth
	})
	wantDelivered(t, deliver(t, c, env("a@cust1.example"), rcpts("x@remote.example"), testMessage)[0])
	wantDelivered(t, deliver(t, c, env("a@cust1.example"), rcpts("x@special.example"), testMessage)[0])
	wantDelivered(t, deliver(t, c, env("d@other.example"), rcpts("x@remote.example"), testMessage)[0])
	if got := strings.Join(fromOf(relay1.messages()), " "); got != "a@cust1.example/L1/x@remote.example" {
		t.Errorf("relay 1 got %s", got)
	}
	if got := strings.Join(fromOf(mx.messages()), " "); got != "a@cust1.example//x@special.example" {
		t.Errorf("MX got %s", got)
	}
	if got := strings.Join(fromOf(smarthost.messages()), " "); got != "d@other.example//x@remote.example" {
		t.Errorf("smarthost got %s", got)
	}
	if len(relay2.messages()) != 0 {
		t.Errorf("relay 2 got %v", fromOf(relay2.messages()))
	}

	ctx := context.Background()
	for _, c2 := range []struct {
		sender, domain string
		source         RouteSource
		pattern        string
	}{
		{"a@cust1.example", "remote.example", SourceSender, "cust1.example"},
		{"a@cust1.example", "special.example", SourceRecipient, "special.example"},
		{"d@other.example", "remote.example", SourceRecipientDefault, ""},
		{"", "remote.example", SourceSender, "<>"},
	} {
		p := c.PlanFrom(ctx, c2.sender, c2.domain)
		if p.Source != c2.source || p.Route.Pattern != c2.pattern || !p.Matched || p.Err != nil {
			t.Errorf("PlanFrom(%q, %q) = %v %q %v", c2.sender, c2.domain, p.Source, p.Route.Pattern, p.Err)
		}
	}
	if p := c.Plan(ctx, "remote.example"); p.Source != SourceRecipientDefault {
		t.Errorf("Plan without a sender used %v", p.Source)
	}
}

// FuzzParseSenderRoutes: any senderroutes text is either refused with a
// file and line or parsed into rules that every sender of the text can
// be looked up against, each rule found by the sender it was written for.
func FuzzParseSenderRoutes(f *testing.F) {
	for _, s := range []string{
		"a@cust1.example: [192.0.2.1],587 /SECURITY=STARTTLS /auth=l1",
		"@cust1.example: relay.cust1.example\ncust2.example: [2001:db8::1]",
		".cust3.example: [192.0.2.3]\n*.x.example: [192.0.2.4] /ipv4only",
		"<>: [192.0.2.5] /auth=bounces",
		"a@b@c.example: [192.0.2.1]",
		"Jörg@bücher.test: [192.0.2.1]",
		"direct.example:",
		"*: [192.0.2.1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var pl []policy.Line
		for i, l := range strings.Split(text, "\n") {
			pl = append(pl, policy.Line{File: "senderroutes", Num: i + 1, Text: strings.TrimSpace(l)})
		}
		sr, err := ParseSenderRoutes(pl)
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		for _, l := range pl {
			sender, _, _ := strings.Cut(l.Text, ":")
			sender = strings.TrimSpace(sender)
			var probe string
			switch {
			case sender == "<>":
				probe = ""
			case strings.Contains(sender, "@"):
				probe = sender
			case strings.HasPrefix(sender, "*."), strings.HasPrefix(sender, "."):
				probe = "x@a." + strings.TrimPrefix(strings.TrimPrefix(sender, "*"), ".")
			default:
				probe = "x@" + sender
			}
			r, ok := sr.Lookup(probe)
			if !ok {
				t.Fatalf("rule %q not found for %q", l.Text, probe)
			}
			if r.RelayAddr.IsValid() && r.Relay != "" {
				t.Fatalf("route has both an address and a name: %+v", r)
			}
		}
	})
}

// Two customers sharing one relay with their own logins: a session cached
// after one customer's message is never reused for the other's, so each
// message is sent under its sender's login.
func TestSenderRoutesOneRelayTwoLogins(t *testing.T) {
	checkGoroutines(t)
	cert, _ := selfSigned(t, "relay.test")
	relay := startSMTP(t, serverConfig{ip: "127.0.0.1", tls: serverTLS(cert), users: map[string]string{"L1": "pw1", "L2": "pw2"}})
	c := newTestClient(t, startDNS(t, newZone()), 25, func(o *Options) {
		o.SenderRoutes = mustSenderRoutes(t,
			"cust1.example: [127.0.0.1],"+itoa(relay.port())+" /SECURITY=STARTTLS /auth=cust1",
			"cust2.example: [127.0.0.1],"+itoa(relay.port())+" /SECURITY=STARTTLS /auth=cust2")
		o.Auth = senderAuth
		o.ConnCacheIdle = 5e9
	})
	to := rcpts("x@remote.example")
	for _, from := range []string{"a@cust1.example", "b@cust2.example", "c@cust1.example", "d@cust2.example"} {
		wantDelivered(t, deliver(t, c, env(from), to, testMessage)[0])
	}
	want := "a@cust1.example/L1/x@remote.example b@cust2.example/L2/x@remote.example c@cust1.example/L1/x@remote.example d@cust2.example/L2/x@remote.example"
	if got := strings.Join(fromOf(relay.messages()), " "); got != want {
		t.Errorf("relay got %s\nwant %s", got, want)
	}
}
