package outbound

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"postern/policy"
)

func lines(texts ...string) []policy.Line {
	var out []policy.Line
	for i, s := range texts {
		out = append(out, policy.Line{File: "/etc/postern/routes", Num: i + 1, Text: s})
	}
	return out
}

func TestParseRoutesFormat(t *testing.T) {
	rt, err := ParseRoutes(lines(
		"example.org: mail.example.net,2525 /SECURITY=REQUIRED /ipv4only",
		".sub.example.org: [192.0.2.7]",
		"*.deep.sub.example.org: [2001:db8::25],587 /security=smtps /auth=isp",
		"direct.example.org:",
		"*: smarthost.isp.test,587 /SECURITY=STARTTLS /auth=isp",
	))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Len() != 5 {
		t.Fatalf("Len %d", rt.Len())
	}
	cases := []struct {
		domain   string
		relay    string
		addr     string
		port     int
		security Security
		pattern  string
	}{
		{"example.org", "mail.example.net", "", 2525, SecurityRequired, "example.org"},
		{"EXAMPLE.ORG.", "mail.example.net", "", 2525, SecurityRequired, "example.org"},
		{"a.sub.example.org", "", "192.0.2.7", 0, SecurityOpportunistic, ".sub.example.org"},
		{"x.y.sub.example.org", "", "192.0.2.7", 0, SecurityOpportunistic, ".sub.example.org"},
		{"a.deep.sub.example.org", "", "2001:db8::25", 587, SecuritySMTPS, ".deep.sub.example.org"},
		{"deep.sub.example.org", "", "192.0.2.7", 0, SecurityOpportunistic, ".sub.example.org"}, // longest match
		{"sub.example.org", "smarthost.isp.test", "", 587, SecurityStartTLS, ""},                // .sub is subdomains only
		{"direct.example.org", "", "", 0, SecurityOpportunistic, "direct.example.org"},
		{"elsewhere.test", "smarthost.isp.test", "", 587, SecurityStartTLS, ""},
	}
	for _, c := range cases {
		r, ok := rt.Lookup(c.domain)
		if !ok {
			t.Errorf("%s: no route", c.domain)
			continue
		}
		addr := ""
		if r.RelayAddr.IsValid() {
			addr = r.RelayAddr.String()
		}
		if r.Relay != c.relay || addr != c.addr || r.Port != c.port || r.Security != c.security || r.Pattern != c.pattern {
			t.Errorf("%s: got relay=%q addr=%q port=%d sec=%v pattern=%q", c.domain, r.Relay, addr, r.Port, r.Security, r.Pattern)
		}
	}
	r, _ := rt.Lookup("example.org")
	if !r.IPv4Only || r.IPv6Only {
		t.Errorf("ipv4only lost: %+v", r)
	}
	if r, _ := rt.Lookup("x.test"); r.AuthName != "isp" || r.Origin.Num != 5 {
		t.Errorf("auth name / origin: %+v", r)
	}
	if r, _ := rt.Lookup("direct.example.org"); !r.UsesMX() {
		t.Error("empty relay should mean MX")
	}
}

func TestRoutesWithoutDefault(t *testing.T) {
	rt, err := ParseRoutes(lines("example.org: [192.0.2.1]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Lookup("other.org"); ok {
		t.Error("matched a domain with no rule")
	}
	var nilRoutes *Routes
	if r, ok := nilRoutes.Lookup("x.org"); ok || !r.UsesMX() {
		t.Error("nil Routes must route by MX")
	}
}

func TestRoutesIDN(t *testing.T) {
	rt, err := ParseRoutes(lines("bücher.test: [192.0.2.1]"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bücher.test", "xn--bcher-kva.test", "BÜCHER.test"} {
		if r, ok := rt.Lookup(d); !ok || r.RelayAddr != netip.MustParseAddr("192.0.2.1") {
			t.Errorf("%s: not routed", d)
		}
	}
}

func TestParseRoutesErrorsNameFileAndLine(t *testing.T) {
	bad := []struct{ text, want string }{
		{"example.org [1.2.3.4]", "no ':'"},
		{"example.org: 1.2.3.4", "brackets"},
		{"example.org: [1.2.3.4", "missing ']'"},
		{"example.org: [1.2.3]", "not an IP address"},
		{"example.org: [1.2.3.4],0", "port"},
		{"example.org: [1.2.3.4],70000", "port"},
		{"example.org: relay.test,", "port"},
		{"example.org: relay.test,abc", "port"},
		{"example.org: relay.test /SECURITY=MAYBE", "/SECURITY=MAYBE"},
		{"example.org: relay.test /SECURITY", "needs a value"},
		{"example.org: relay.test /frobnicate", "unknown option"},
		{"example.org: relay.test extra", "options start with '/'"},
		{"example.org: /ipv4only /ipv6only", "exclude each other"},
		{"example.org: [2001:db8::1] /ipv4only", "contradicts"},
		{"example.org: /SECURITY=SMTPS", "needs a relay"},
		{"exa mple.org: relay.test", "not allowed"},
		{"a..b: relay.test", "empty label"},
		{"example.org: bad_host!.test", "not allowed"},
		{"example.org: relay.test /auth=", "/auth needs"},
		{strings.Repeat("a", 64) + ".org: x.test", "63"},
	}
	for _, b := range bad {
		_, err := ParseRoutes([]policy.Line{{File: "/etc/postern/routes", Num: 7, Text: b.text}})
		if err == nil {
			t.Errorf("%q: accepted", b.text)
			continue
		}
		var pe *policy.Error
		if !errors.As(err, &pe) || pe.File != "/etc/postern/routes" || pe.Line != 7 {
			t.Errorf("%q: error %v does not name the file and line", b.text, err)
		}
		if !strings.Contains(err.Error(), b.want) || !strings.HasPrefix(err.Error(), "/etc/postern/routes:7: ") {
			t.Errorf("%q: error %q, want it to mention %q", b.text, err, b.want)
		}
	}
}

func TestParseRoutesDuplicates(t *testing.T) {
	_, err := ParseRoutes(lines("example.org: [192.0.2.1]", "*.x.org: a.test", "EXAMPLE.org.: [192.0.2.2]", ".x.org: b.test", ": c.test", "*: d.test"))
	if err == nil {
		t.Fatal("duplicates accepted")
	}
	for _, want := range []string{"routes:3: ", "routes:4: ", "routes:6: ", "already given at /etc/postern/routes:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoadRoutesFromConfigDir(t *testing.T) {
	dir := t.TempDir()
	if rt, err := LoadRoutes(dir); err != nil || rt.Len() != 0 {
		t.Fatalf("missing routes: %v %v", rt, err)
	}
	os.Mkdir(filepath.Join(dir, "routes.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "routes.d", "10-default"), []byte("# smarthost\n*: relay.isp.test,587 /SECURITY=STARTTLS\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "routes.d", "20-bad"), []byte("\nexample.org: [999.1.1.1]\n"), 0o644)
	_, err := LoadRoutes(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "routes.d", "20-bad")+":2: ") {
		t.Fatalf("error %v does not point at 20-bad:2", err)
	}
	os.Remove(filepath.Join(dir, "routes.d", "20-bad"))
	rt, err := LoadRoutes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := rt.Lookup("anything.test"); !ok || r.Relay != "relay.isp.test" || r.Port != 587 {
		t.Errorf("route %+v", r)
	}
}

func TestParseAuth(t *testing.T) {
	auth, err := ParseAuth(lines("isp  user@isp.test  pass word with spaces", "Relay.Example.NET\tbob\tpw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := auth["isp"]; c.User != "user@isp.test" || c.Password != "pass word with spaces" {
		t.Errorf("isp: %+v", c)
	}
	if c := auth["relay.example.net"]; c.User != "bob" || c.Password != "pw" {
		t.Errorf("relay: %+v", c)
	}
	_, err = ParseAuth(lines("isp user", "ok u p", "ok u2 p2"), nil)
	if err == nil || !strings.Contains(err.Error(), "routes:1: want NAME USER PASSWORD") || !strings.Contains(err.Error(), "routes:3: ") {
		t.Errorf("error %v", err)
	}
}

func TestLoadAuthWarnsWhenReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "smarthostauth")
	if err := os.WriteFile(p, []byte("isp u p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	auth, err := LoadAuth(dir, log)
	if err != nil || auth["isp"].User != "u" {
		t.Fatalf("%v %v", auth, err)
	}
	if !strings.Contains(buf.String(), "readable by others") || !strings.Contains(buf.String(), p) {
		t.Errorf("no warning for a 0644 credentials file: %q", buf.String())
	}
	buf.Reset()
	os.Chmod(p, 0o600)
	if _, err := LoadAuth(dir, log); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("warned about a 0600 file: %q", buf.String())
	}
	if a, err := LoadAuth(t.TempDir(), log); err != nil || len(a) != 0 {
		t.Errorf("missing setting: %v %v", a, err)
	}
}

func TestOrderMX(t *testing.T) {
	names, null := orderMX(nil)
	if names != nil || null {
		t.Error("empty MX set")
	}
	if _, null := orderMX(mxList("0 .")); !null {
		t.Error("null MX not seen")
	}
	// A "." among real records is ignored.
	if names, null := orderMX(mxList("0 .", "10 mx.test.")); null || len(names) != 1 || names[0] != "mx.test" {
		t.Errorf("%v %v", names, null)
	}
	// Preference order, duplicates removed, case folded.
	names, _ = orderMX(mxList("30 c.test.", "10 A.test.", "20 b.test", "20 b.test."))
	if strings.Join(names, " ") != "a.test b.test c.test" {
		t.Errorf("order %v", names)
	}
	// Equal preferences are shuffled: over many runs both orders appear.
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		names, _ := orderMX(mxList("10 x.test.", "10 y.test.", "5 first.test."))
		if names[0] != "first.test" {
			t.Fatalf("lowest preference not first: %v", names)
		}
		seen[strings.Join(names, " ")] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal preferences not randomised: %v", seen)
	}
}

func FuzzParseRoutes(f *testing.F) {
	for _, s := range []string{
		"example.org: mail.example.net,2525 /SECURITY=REQUIRED /ipv4only",
		".sub.example.org: [192.0.2.7]",
		"*.x.org: [2001:db8::25],587 /security=smtps /auth=isp",
		"*: smarthost.test,587 /SECURITY=STARTTLS /auth=isp",
		": [::1]",
		"direct.example.org:",
		"bücher.test: [192.0.2.1] /ipv6only",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var pl []policy.Line
		for i, l := range strings.Split(text, "\n") {
			pl = append(pl, policy.Line{File: "routes", Num: i + 1, Text: strings.TrimSpace(l)})
		}
		rt, err := ParseRoutes(pl)
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		for _, l := range pl {
			domain, _, _ := strings.Cut(l.Text, ":")
			domain = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(domain), "*"), ".")
			r, _ := rt.Lookup("a." + domain)
			if r.RelayAddr.IsValid() && r.Relay != "" {
				t.Fatalf("route has both an address and a name: %+v", r)
			}
			if r.Port < 0 || r.Port > 65535 {
				t.Fatalf("port %d", r.Port)
			}
		}
	})
}

func FuzzParseAuth(f *testing.F) {
	f.Add("isp user password")
	f.Add("relay.test\tu\tp w")
	f.Fuzz(func(t *testing.T, text string) {
		auth, err := ParseAuth([]policy.Line{{File: "smarthostauth", Num: 1, Text: strings.TrimSpace(text)}}, nil)
		if err != nil {
			return
		}
		for k, c := range auth {
			if k == "" || c.User == "" || c.Password == "" || strings.ContainsAny(c.User, " \t") {
				t.Fatalf("bad entry %q: %+v", k, c)
			}
		}
	})
}

func mxList(specs ...string) []*net.MX {
	var out []*net.MX
	for _, s := range specs {
		pref, host, _ := strings.Cut(s, " ")
		n, _ := strconv.Atoi(pref)
		out = append(out, &net.MX{Host: host, Pref: uint16(n)})
	}
	return out
}
