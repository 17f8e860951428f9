package outbound

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSResolverAnswers(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx1.example.test.",
		"example.test. 60 IN MX 20 mx2.example.test.",
		"alias.test. 60 IN CNAME example.test.",
		"mx1.example.test. 60 IN A 192.0.2.1",
		"mx1.example.test. 60 IN AAAA 2001:db8::1",
		"noaddr.test. 60 IN TXT \"x\"",
		"big.test. 60 IN A 192.0.2.9",
	)
	z.truncate["big.test."] = true
	r := NewDNSResolver([]string{startDNS(t, z)}, time.Second)
	ctx := context.Background()

	mxs, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("MX: %v %v", mxs, err)
	}
	// An MX query answered through a CNAME gives the target's records.
	if mxs, err := r.LookupMX(ctx, "alias.test"); err != nil || len(mxs) != 2 {
		t.Fatalf("MX via CNAME: %v %v", mxs, err)
	}
	// A name that exists without MX: no records, no error (implicit MX).
	if mxs, err := r.LookupMX(ctx, "noaddr.test"); err != nil || len(mxs) != 0 {
		t.Fatalf("no MX: %v %v", mxs, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mx1.example.test")
	if err != nil || len(ips) != 2 || !ips[0].IP.Equal(net.ParseIP("192.0.2.1")) || !ips[1].IP.Equal(net.ParseIP("2001:db8::1")) {
		t.Fatalf("addresses: %v %v", ips, err)
	}
	if ips, err := r.LookupIPAddr(ctx, "noaddr.test"); err != nil || len(ips) != 0 {
		t.Fatalf("no addresses: %v %v", ips, err)
	}
	// Truncated over UDP: asked again over TCP (RFC 7766).
	if ips, err := r.LookupIPAddr(ctx, "big.test"); err != nil || len(ips) != 1 {
		t.Fatalf("after truncation: %v %v", ips, err)
	}
}

func TestDNSResolverFailureClasses(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.servfail["broken.test."] = true
	z.silent["slow.test."] = true
	addr := startDNS(t, z)
	r := NewDNSResolver([]string{addr}, 200*time.Millisecond)
	ctx := context.Background()

	_, err := r.LookupMX(ctx, "missing.test")
	var de *DNSError
	if !errors.Is(err, ErrNoSuchDomain) || !errors.As(err, &de) || de.Type != "MX" || de.Name != "missing.test" {
		t.Errorf("NXDOMAIN: %v", err)
	}
	if _, err := r.LookupIPAddr(ctx, "missing.test"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("NXDOMAIN A/AAAA: %v", err)
	}
	if _, err := r.LookupMX(ctx, "broken.test"); !errors.Is(err, ErrDNSTemporary) || errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("SERVFAIL: %v", err)
	}
	if _, err := r.LookupMX(ctx, "slow.test"); !errors.Is(err, ErrDNSTemporary) {
		t.Errorf("timeout: %v", err)
	}
	if _, err := r.LookupMX(ctx, "bad..name"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("invalid name: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.LookupMX(cctx, "missing.test"); !errors.Is(err, ErrDNSTemporary) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestDNSResolverTriesNextServer(t *testing.T) {
	checkGoroutines(t)
	bad := newZone()
	bad.servfail["example.test."] = true
	good := newZone()
	good.add(t, "example.test. 60 IN MX 10 mx.example.test.")
	r := NewDNSResolver([]string{startDNS(t, bad), startDNS(t, good)}, time.Second)
	if mxs, err := r.LookupMX(context.Background(), "example.test"); err != nil || len(mxs) != 1 {
		t.Fatalf("%v %v", mxs, err)
	}
}

func TestNetDNSErrorClassified(t *testing.T) {
	// A resolver built on the standard library reports *net.DNSError.
	if !isNoSuchDomain(&net.DNSError{Err: "no such host", IsNotFound: true}) {
		t.Error("IsNotFound not taken as no such domain")
	}
	if isNoSuchDomain(&net.DNSError{Err: "timeout", IsTimeout: true}) {
		t.Error("timeout taken as no such domain")
	}
}

// --- DNSSEC-aware lookups ----------------------------------------------

// adZone answers from a dnsZone like a validating resolver: the AD bit is
// set on responses to the names in secure (lower-case FQDNs) and cleared on
// the others. It keeps the flags of the last query.
type adZone struct {
	*dnsZone
	adMu   sync.Mutex // guards the fields below (dnsZone has its own)
	secure map[string]bool
	lastDO bool
	lastAD bool
}

func newADZone() *adZone {
	return &adZone{dnsZone: newZone(), secure: map[string]bool{}}
}

func (z *adZone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	z.adMu.Lock()
	ad := len(q.Question) == 1 && z.secure[strings.ToLower(q.Question[0].Name)]
	z.lastDO = q.IsEdns0() != nil && q.IsEdns0().Do()
	z.lastAD = q.AuthenticatedData
	z.adMu.Unlock()
	z.dnsZone.ServeDNS(adWriter{ResponseWriter: w, ad: ad}, q)
}

// adWriter sets the AD bit of the response it writes.
type adWriter struct {
	dns.ResponseWriter
	ad bool
}

func (w adWriter) WriteMsg(m *dns.Msg) error {
	m.AuthenticatedData = w.ad
	return w.ResponseWriter.WriteMsg(m)
}

// startDNSHandler serves h over UDP on 127.0.0.1 and returns its address.
// startSecureDNS starts z and returns a resolver asking it.
func startSecureDNS(t *testing.T, z *adZone) SecureResolver {
	t.Helper()
	return NewDNSResolver([]string{startDNSHandler(t, z)}, time.Second)
}

// tlsaHex is a syntactically right SHA-256 association, for records whose
// content does not matter here.
const tlsaHex = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"

func TestSecureQueriesAskForDNSSEC(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.add(t, "example.test. 60 IN MX 10 mx.example.test.")
	r := startSecureDNS(t, z)
	if _, err := r.LookupMX(context.Background(), "example.test"); err != nil {
		t.Fatal(err)
	}
	z.adMu.Lock()
	defer z.adMu.Unlock()
	// RFC 3225 (DO) and RFC 6840 section 5.7 (AD=1 in the query).
	if !z.lastDO || !z.lastAD {
		t.Errorf("query flags: DO=%v AD=%v, want both set", z.lastDO, z.lastAD)
	}
}

func TestLookupMXSecure(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.add(t,
		"signed.test. 60 IN MX 10 mx.signed.test.",
		"unsigned.test. 60 IN MX 10 mx.unsigned.test.",
		"nomx.signed.test. 60 IN TXT \"x\"",
	)
	z.secure["signed.test."] = true
	z.secure["nomx.signed.test."] = true
	z.secure["gone.signed.test."] = true
	r := startSecureDNS(t, z)
	ctx := context.Background()

	if mxs, secure, err := r.LookupMXSecure(ctx, "signed.test"); err != nil || len(mxs) != 1 || !secure {
		t.Errorf("signed: %v %v %v", mxs, secure, err)
	}
	if mxs, secure, err := r.LookupMXSecure(ctx, "unsigned.test"); err != nil || len(mxs) != 1 || secure {
		t.Errorf("unsigned: %v %v %v", mxs, secure, err)
	}
	// A validated NODATA: the implicit MX, securely (RFC 7672 2.2.1).
	if mxs, secure, err := r.LookupMXSecure(ctx, "nomx.signed.test"); err != nil || len(mxs) != 0 || !secure {
		t.Errorf("secure NODATA: %v %v %v", mxs, secure, err)
	}
	// NXDOMAIN keeps its error class; the flag is the response's AD bit.
	if _, secure, err := r.LookupMXSecure(ctx, "gone.signed.test"); !errors.Is(err, ErrNoSuchDomain) || !secure {
		t.Errorf("secure NXDOMAIN: %v %v", secure, err)
	}
	if _, secure, err := r.LookupMXSecure(ctx, "gone.unsigned.test"); !errors.Is(err, ErrNoSuchDomain) || secure {
		t.Errorf("insecure NXDOMAIN: %v %v", secure, err)
	}
	// LookupMX answers the same, without the flag.
	if mxs, err := r.LookupMX(ctx, "signed.test"); err != nil || len(mxs) != 1 || mxs[0].Host != "mx.signed.test." {
		t.Errorf("LookupMX: %v %v", mxs, err)
	}
}

func TestLookupMXSecureServfail(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.servfail["broken.test."] = true
	z.secure["broken.test."] = true // AD on a SERVFAIL means nothing
	r := startSecureDNS(t, z)
	if _, secure, err := r.LookupMXSecure(context.Background(), "broken.test"); !errors.Is(err, ErrDNSTemporary) || secure {
		t.Errorf("SERVFAIL: %v %v", secure, err)
	}
}

func TestLookupIPAddrSecure(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.add(t,
		"mx.signed.test. 60 IN A 192.0.2.1",
		"mx.signed.test. 60 IN AAAA 2001:db8::1",
		"v4only.signed.test. 60 IN A 192.0.2.2",
		"mx.unsigned.test. 60 IN A 192.0.2.3",
	)
	z.secure["mx.signed.test."] = true
	z.secure["v4only.signed.test."] = true
	z.secure["gone.signed.test."] = true
	r := startSecureDNS(t, z)
	ctx := context.Background()

	if ips, _, secure, err := r.LookupIPAddrSecure(ctx, "mx.signed.test"); err != nil || len(ips) != 2 || !secure {
		t.Errorf("signed: %v %v %v", ips, secure, err)
	}
	// The AAAA NODATA is validated too.
	if ips, _, secure, err := r.LookupIPAddrSecure(ctx, "v4only.signed.test"); err != nil || len(ips) != 1 || !secure {
		t.Errorf("signed, IPv4 only: %v %v %v", ips, secure, err)
	}
	if ips, _, secure, err := r.LookupIPAddrSecure(ctx, "mx.unsigned.test"); err != nil || len(ips) != 1 || secure {
		t.Errorf("unsigned: %v %v %v", ips, secure, err)
	}
	if _, _, secure, err := r.LookupIPAddrSecure(ctx, "gone.signed.test"); !errors.Is(err, ErrNoSuchDomain) || !secure {
		t.Errorf("secure NXDOMAIN: %v %v", secure, err)
	}
}

func TestLookupTLSA(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.add(t,
		"_25._tcp.mx.signed.test. 60 IN TLSA 3 1 1 "+tlsaHex,
		"_25._tcp.mx.signed.test. 60 IN TLSA 2 0 1 "+tlsaHex,
		"_25._tcp.mx.unsigned.test. 60 IN TLSA 3 1 1 "+tlsaHex,
		"_25._tcp.nodata.signed.test. 60 IN TXT \"not TLSA\"",
	)
	z.secure["_25._tcp.mx.signed.test."] = true
	z.secure["_25._tcp.nodata.signed.test."] = true
	z.secure["_25._tcp.gone.signed.test."] = true
	z.servfail["_25._tcp.broken.signed.test."] = true
	z.secure["_25._tcp.broken.signed.test."] = true
	r := startSecureDNS(t, z)
	ctx := context.Background()

	recs, secure, err := r.LookupTLSA(ctx, 25, "mx.signed.test.")
	if err != nil || len(recs) != 2 || !secure {
		t.Fatalf("signed TLSA: %v %v %v", recs, secure, err)
	}
	if recs[0].Usage != 3 || recs[0].Selector != 1 || recs[0].MatchingType != 1 || recs[0].Certificate != tlsaHex {
		t.Errorf("record: %v", recs[0])
	}
	// Insecure records are returned, flagged: the caller must not use them
	// for DANE (RFC 7672 section 2.2).
	if recs, secure, err := r.LookupTLSA(ctx, 25, "mx.unsigned.test"); err != nil || len(recs) != 1 || secure {
		t.Errorf("unsigned TLSA: %v %v %v", recs, secure, err)
	}
	// Secure denial of existence, NXDOMAIN and NODATA (RFC 7672 2.1.1).
	if recs, secure, err := r.LookupTLSA(ctx, 25, "gone.signed.test"); err != nil || len(recs) != 0 || !secure {
		t.Errorf("secure NXDOMAIN: %v %v %v", recs, secure, err)
	}
	if recs, secure, err := r.LookupTLSA(ctx, 25, "nodata.signed.test"); err != nil || len(recs) != 0 || !secure {
		t.Errorf("secure NODATA: %v %v %v", recs, secure, err)
	}
	// An insecure denial: no records, not secure, no error.
	if recs, secure, err := r.LookupTLSA(ctx, 25, "gone.unsigned.test"); err != nil || len(recs) != 0 || secure {
		t.Errorf("insecure NXDOMAIN: %v %v %v", recs, secure, err)
	}
	// SERVFAIL: temporary, never "no records".
	if recs, secure, err := r.LookupTLSA(ctx, 25, "broken.signed.test"); !errors.Is(err, ErrDNSTemporary) || secure || len(recs) != 0 {
		t.Errorf("SERVFAIL: %v %v %v", recs, secure, err)
	}
	// The port is part of the name.
	if recs, _, err := r.LookupTLSA(ctx, 465, "mx.signed.test"); err != nil || len(recs) != 0 {
		t.Errorf("port 465: %v %v", recs, err)
	}
	for _, bad := range []struct {
		port int
		host string
	}{{0, "mx.signed.test"}, {70000, "mx.signed.test"}, {25, ""}, {25, "bad..name"}} {
		if _, secure, err := r.LookupTLSA(ctx, bad.port, bad.host); !errors.Is(err, ErrNoSuchDomain) || secure {
			t.Errorf("LookupTLSA(%d, %q): %v %v", bad.port, bad.host, secure, err)
		}
	}
}

func TestSecureCNAMEChain(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	// The test server answers an alias with the CNAME alone, so the
	// resolver asks for each target in turn.
	z.add(t,
		"_25._tcp.mx.a.test. 60 IN CNAME tlsa.b.test.",
		"tlsa.b.test. 60 IN CNAME tlsa.c.test.",
		"tlsa.c.test. 60 IN TLSA 3 1 1 "+tlsaHex,
		"mx.a.test. 60 IN CNAME mx.c.test.",
		"mx.c.test. 60 IN A 192.0.2.25",
	)
	z.secure["_25._tcp.mx.a.test."] = true
	z.secure["tlsa.c.test."] = true
	z.secure["mx.a.test."] = true
	z.secure["mx.c.test."] = true
	r := startSecureDNS(t, z)
	ctx := context.Background()

	// The middle link is not validated: the whole answer is insecure.
	if recs, secure, err := r.LookupTLSA(ctx, 25, "mx.a.test"); err != nil || len(recs) != 1 || secure {
		t.Errorf("one insecure link: %v %v %v", recs, secure, err)
	}
	z.adMu.Lock()
	z.secure["tlsa.b.test."] = true
	z.adMu.Unlock()
	if recs, secure, err := r.LookupTLSA(ctx, 25, "mx.a.test"); err != nil || len(recs) != 1 || !secure {
		t.Errorf("all links secure: %v %v %v", recs, secure, err)
	}
	if ips, canonical, secure, err := r.LookupIPAddrSecure(ctx, "mx.a.test"); err != nil || len(ips) != 1 || !secure || canonical != "mx.c.test" {
		t.Errorf("address via secure CNAME: %v %q %v %v", ips, canonical, secure, err)
	}
	if _, canonical, _, err := r.LookupIPAddrSecure(ctx, "MX.C.test."); err != nil || canonical != "" {
		t.Errorf("a name that is not an alias has no canonical name: %q %v", canonical, err)
	}
	// A secure alias to an insecure target.
	z.adMu.Lock()
	z.secure["mx.c.test."] = false
	z.adMu.Unlock()
	if ips, _, secure, err := r.LookupIPAddrSecure(ctx, "mx.a.test"); err != nil || len(ips) != 1 || secure {
		t.Errorf("address via insecure target: %v %v %v", ips, secure, err)
	}
}

func TestLookupTXT(t *testing.T) {
	checkGoroutines(t)
	z := newADZone()
	z.add(t,
		`_mta-sts.example.test. 60 IN TXT "v=STSv1; " "id=20250101T000000;"`,
		`multi.test. 60 IN TXT "one"`,
		`multi.test. 60 IN TXT "two" "parts"`,
		`escaped.test. 60 IN TXT "a\"b\\c\009d\255"`,
		`nodata.test. 60 IN MX 10 mx.nodata.test.`,
	)
	r := startSecureDNS(t, z)
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "_mta-sts.example.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=STSv1; id=20250101T000000;" {
		t.Errorf("joined strings: %q %v", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "multi.test")
	if err != nil || len(txt) != 2 || txt[0] != "one" || txt[1] != "twoparts" {
		t.Errorf("two records: %q %v", txt, err)
	}
	// Bytes come back as sent, not in presentation format.
	txt, err = r.LookupTXT(ctx, "escaped.test")
	if err != nil || len(txt) != 1 || txt[0] != "a\"b\\c\td\xff" {
		t.Errorf("escaped: %q %v", txt, err)
	}
	if txt, err := r.LookupTXT(ctx, "nodata.test"); err != nil || txt == nil || len(txt) != 0 {
		t.Errorf("NODATA: %q %v", txt, err)
	}
	if _, err := r.LookupTXT(ctx, "missing.test"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("NXDOMAIN: %v", err)
	}
}

func TestUnescapeTXT(t *testing.T) {
	for in, want := range map[string]string{
		"plain":  "plain",
		`a\"b`:   `a"b`,
		`a\\b`:   `a\b`,
		`\009x`:  "\tx",
		`\256`:   "256", // not a byte value: the backslash quotes '2'
		`\12`:    "12",
		`end\`:   `end\`,
		`\;\065`: ";A",
	} {
		if got := unescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzUnescapeTXT sends any bytes as a TXT character-string through
// miekg/dns's wire format and back: unescapeTXT must give the bytes sent.
func FuzzUnescapeTXT(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=1;", `a"b\c`, "\x00\xff\t", `\065`, "\\"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, sent []byte) {
		if len(sent) > 255 {
			sent = sent[:255]
		}
		// Build the wire form by hand: the RDATA is one length-prefixed
		// character-string holding exactly the bytes sent.
		m := new(dns.Msg)
		m.SetQuestion("x.test.", dns.TypeTXT)
		m.Answer = []dns.RR{&dns.RFC3597{
			Hdr:   dns.RR_Header{Name: "x.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Rdata: hex.EncodeToString(append([]byte{byte(len(sent))}, sent...)),
		}}
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var in dns.Msg
		if err := in.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		txt, ok := in.Answer[0].(*dns.TXT)
		if !ok || len(txt.Txt) != 1 {
			t.Fatalf("unpacked %v", in.Answer[0])
		}
		if got := unescapeTXT(txt.Txt[0]); got != string(sent) {
			t.Fatalf("sent %q, miekg gave %q, unescaped %q", sent, txt.Txt[0], got)
		}
	})
}
