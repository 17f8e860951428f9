package access

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"postern/policy"
)

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// courierDefault is Debian's courier-mta /etc/courier/smtpaccess/default
// policy in substance (our own words), plus commented examples made live.
const courierDefault = `# relaying for localhost and private networks
127.0.0.1	allow,RELAYCLIENT
:0000:0000:0000:0000:0000:0000:0000:0001	allow,RELAYCLIENT
10	allow,RELAYCLIENT
192.168	allow,RELAYCLIENT
192.168.5	deny
192.168.6	allow,BLOCK="550 Shoo! Go away!"
192.168.2.3	allow,BLOCK
`

func TestLoadCourierFormat(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"smtpaccess": courierDefault})
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "smtpaccess")
	cases := []struct {
		ip     string
		found  bool
		allow  bool
		relay  bool
		block  string
		origin int
	}{
		{"127.0.0.1", true, true, true, "", 2},
		{"::ffff:127.0.0.1", true, true, true, "", 2}, // mapped form: the IPv4 rule
		{"::1", true, true, true, "", 3},
		{"10.200.3.4", true, true, true, "", 4},
		{"192.168.77.1", true, true, true, "", 5},
		{"192.168.5.9", true, false, false, "", 6},
		{"192.168.6.1", true, true, false, "550 Shoo! Go away!", 7},
		{"192.168.2.3", true, true, false, "", 8},
		{"192.0.2.1", false, true, false, "", 0},
		{"2001:db8::1", false, true, false, "", 0},
	}
	for _, c := range cases {
		d, found := r.Lookup(netip.MustParseAddr(c.ip))
		if found != c.found || d.Allow != c.allow || d.Relay != c.relay || d.Block != c.block {
			t.Errorf("Lookup(%s) = %+v, %v", c.ip, d, found)
		}
		if c.origin > 0 && d.Origin != fmt.Sprintf("%s:%d", f, c.origin) {
			t.Errorf("Lookup(%s).Origin = %q, want line %d", c.ip, d.Origin, c.origin)
		}
	}
	// Only the most specific rule applies: 192.168.2.3 does not inherit
	// RELAYCLIENT from 192.168, and BLOCK is cleared.
	d, _ := r.Lookup(netip.MustParseAddr("192.168.2.3"))
	if !d.BlockCleared() || d.Relay {
		t.Errorf("192.168.2.3: %+v", d)
	}
	code, text, ok := mustLookup(t, r, "192.168.6.1").BlockReply()
	if !ok || code != 550 || text != "Shoo! Go away!" {
		t.Errorf("BlockReply = %d %q %v", code, text, ok)
	}
}

func mustLookup(t *testing.T, r *Rules, ip string) Decision {
	t.Helper()
	d, _ := r.Lookup(netip.MustParseAddr(ip))
	return d
}

func TestDirectoryFormAndFallback(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"smtpaccess/10-local": "127.0.0.1\tallow,RELAYCLIENT\n",
		"smtpaccess/20-nets":  "10.0.0.0/8  allow,RELAYCLIENT,SIZELIMIT=1000000,BOFHCHECKDNS=0\n2001:db8::/32\tdeny\n",
		"smtpaccess/99-rest":  "*\tdeny\n",
		"smtpaccess/99-rest~": "*\tallow\n", // editor backup: skipped
	})
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 4 {
		t.Errorf("Len = %d", r.Len())
	}
	d := mustLookup(t, r, "10.1.2.3")
	want := map[string]string{"RELAYCLIENT": "", "SIZELIMIT": "1000000", "BOFHCHECKDNS": "0"}
	if !d.Allow || !d.Relay || !reflect.DeepEqual(d.Vars, want) {
		t.Errorf("10.1.2.3 = %+v", d)
	}
	if d := mustLookup(t, r, "2001:db8:1::5"); d.Allow {
		t.Errorf("2001:db8:1::5 allowed: %+v", d)
	}
	d, found := r.Lookup(netip.MustParseAddr("198.51.100.1"))
	if !found || d.Allow || !strings.HasSuffix(d.Origin, "99-rest:1") {
		t.Errorf("fallback = %+v, %v", d, found)
	}
	if d, found := r.Lookup(netip.Addr{}); !found || d.Allow {
		t.Errorf("invalid address with '*' rule = %+v, %v", d, found)
	}
}

func TestMissingSettingAllowsAll(t *testing.T) {
	r, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, found := r.Lookup(netip.MustParseAddr("192.0.2.1"))
	if found || !d.Allow || d.Relay {
		t.Errorf("empty rules: %+v, %v", d, found)
	}
	var none *Rules
	if d, found := none.Lookup(netip.MustParseAddr("192.0.2.1")); found || !d.Allow {
		t.Errorf("nil rules: %+v, %v", d, found)
	}
}

func TestParseAddressForms(t *testing.T) {
	good := map[string]string{
		"10":         "10.0.0.0/8",
		"192.168":    "192.168.0.0/16",
		"192.168.1":  "192.168.1.0/24",
		"1.2.3.4":    "1.2.3.4/32",
		"0":          "0.0.0.0/8",
		":3ffe":      "3ffe::/16",
		":2002:C0A8": "2002:c0a8::/32",
		":0000:0000:0000:0000:0000:0000:0000:0001": "::1/128",
		"10.0.0.0/8":           "10.0.0.0/8",
		"0.0.0.0/0":            "0.0.0.0/0",
		"2001:db8::/32":        "2001:db8::/32",
		"::/0":                 "::/0",
		"2001:db8::1":          "2001:db8::1/128",
		"::1":                  "::1/128",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
	}
	for in, want := range good {
		p, err := ParseAddress(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseAddress(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "256", "1.2.3.4.25", "1..2", "1.2.", "10.0.0.1/8", ":3ff", ":zzzz", ":1:2", "example.com", "fe80::1%eth0", "1.2.3.4/33", "0001.2", "*.25"} {
		if p, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) = %v, want error", bad, p)
		}
	}
}

func TestBadLinesAllReported(t *testing.T) {
	dir := t.TempDir()
	src := strings.Join([]string{
		"10\tallow,RELAYCLIENT",            // 1 good
		"11",                               // 2 no action
		"12\tpermit",                       // 3 unknown action
		"13\tdeny,RELAYCLIENT",             // 4 deny with vars
		"14\tallow,,X",                     // 5 empty variable
		"15\tallow,1BAD=x",                 // 6 bad name
		"16\tallow,BLOCK=\"open",           // 7 unterminated quote
		"17\tallow,X=a\"b",                 // 8 stray quote
		"10.0.0.0/8\tdeny",                 // 9 duplicate of line 1
		"*\tallow",                         // 10 good
		"*\tdeny",                          // 11 second *
		"300\tallow",                       // 12 bad octet
		"18\tallow,X=1,X=2",                // 13 variable twice
		"19\tallow,X=\"a\"b",               // 14 text after quote
		"20\tallow,BLOCK=\"a, \\\"b\\\"\"", // 15 good: quoted comma and quotes
	}, "\n") + "\n"
	writeFiles(t, dir, map[string]string{"smtpaccess": src})
	_, err := Load(dir)
	if err == nil {
		t.Fatal("bad rules accepted")
	}
	f := filepath.Join(dir, "smtpaccess")
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *policy.Error
		if !errors.As(e, &pe) || pe.Line == 0 {
			t.Errorf("problem %v has no FILE:LINE", e)
		}
		got = append(got, e.Error())
	}
	for _, line := range []int{2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14} {
		prefix := fmt.Sprintf("%s:%d: ", f, line)
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, prefix)
		}
		if !found {
			t.Errorf("line %d not reported; got:\n%s", line, strings.Join(got, "\n"))
		}
	}
	if len(got) != 12 {
		t.Errorf("%d problems, want 12:\n%s", len(got), strings.Join(got, "\n"))
	}
	if !strings.Contains(strings.Join(got, "\n"), "the first is at "+f+":1") {
		t.Errorf("duplicate does not name the first rule:\n%s", strings.Join(got, "\n"))
	}

	// The quoted value of line 15 on its own.
	r, err := Parse([]policy.Line{{File: "x", Num: 1, Text: src[strings.Index(src, "20\t"):strings.LastIndex(src, "\n")]}})
	if err != nil {
		t.Fatal(err)
	}
	if d := mustLookup(t, r, "20.1.1.1"); d.Block != `a, "b"` {
		t.Errorf("quoted BLOCK = %q", d.Block)
	}
}

func TestBlockReply(t *testing.T) {
	cases := []struct {
		block string
		code  int
		text  string
		ok    bool
	}{
		{"", 0, "", false},
		{"550 Go away", 550, "Go away", true},
		{"421-Later", 421, "Later", true},
		{"554", 554, "Access denied", true},
		{"Go away", 550, "Go away", true},
		{"250 ok", 550, "250 ok", true}, // never a success code
		{"5501 x", 550, "5501 x", true},
	}
	for _, c := range cases {
		code, text, ok := Decision{Block: c.block}.BlockReply()
		if code != c.code || text != c.text || ok != c.ok {
			t.Errorf("BlockReply(%q) = %d %q %v", c.block, code, text, ok)
		}
	}
}

// randomRules makes n distinct rules over IPv4 and IPv6 with mixed prefix
// lengths, as Parse lines.
func randomRules(rng *rand.Rand, n int) ([]policy.Line, []netip.Prefix) {
	seen := map[netip.Prefix]bool{}
	var lines []policy.Line
	var prefixes []netip.Prefix
	for len(lines) < n {
		var p netip.Prefix
		if rng.IntN(4) == 0 {
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				a[i] = byte(rng.UintN(256))
			}
			bits := []int{32, 48, 56, 64, 96, 128}[rng.IntN(6)]
			p = netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
		} else {
			a := [4]byte{byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))}
			p = netip.PrefixFrom(netip.AddrFrom4(a), 8+rng.IntN(25)).Masked()
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		action := "allow,RELAYCLIENT"
		if rng.IntN(3) == 0 {
			action = "deny"
		}
		lines = append(lines, policy.Line{File: "rules", Num: len(lines) + 1, Text: p.String() + "\t" + action})
		prefixes = append(prefixes, p)
	}
	return lines, prefixes
}

// TestLongestPrefixMatchesBruteForce checks Lookup against a linear scan.
func TestLongestPrefixMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lines, prefixes := randomRules(rng, 2000)
	r, err := Parse(lines)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		var ip netip.Addr
		base := prefixes[rng.IntN(len(prefixes))].Addr()
		b := base.AsSlice()
		for j := len(b) - 1 - rng.IntN(len(b)/2); j < len(b); j++ {
			b[j] = byte(rng.UintN(256)) // near a rule, so hits are common
		}
		ip, _ = netip.AddrFromSlice(b)
		best := -1
		for k, p := range prefixes {
			if p.Contains(ip) && (best < 0 || p.Bits() > prefixes[best].Bits()) {
				best = k
			}
		}
		d, found := r.Lookup(ip)
		if (best >= 0) != found {
			t.Fatalf("%d: Lookup(%s) found=%v, brute force %d", i, ip, found, best)
		}
		if found && d.Origin != fmt.Sprintf("rules:%d", best+1) {
			t.Fatalf("Lookup(%s) = %s, want rules:%d (%s)", ip, d.Origin, best+1, prefixes[best])
		}
	}
}

// BenchmarkLookup100k: 100,000 rules, IPv4 and IPv6 of many lengths.
func BenchmarkLookup100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	lines, prefixes := randomRules(rng, 100000)
	r, err := Parse(lines)
	if err != nil {
		b.Fatal(err)
	}
	ips := make([]netip.Addr, 4096)
	for i := range ips {
		a := prefixes[rng.IntN(len(prefixes))].Addr().AsSlice()
		a[len(a)-1] ^= byte(rng.UintN(256))
		ips[i], _ = netip.AddrFromSlice(a)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.Lookup(ips[i&4095])
	}
}

// BenchmarkLoad100k: parsing 100,000 rules from a file.
func BenchmarkLoad100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	lines, _ := randomRules(rng, 100000)
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString(l.Text + "\n")
	}
	dir := b.TempDir()
	writeFiles(b, dir, map[string]string{"smtpaccess": sb.String()})
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
