package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// --- certificates made at test time ------------------------------------

var (
	testNow  = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	validFor = [2]time.Time{testNow.Add(-24 * time.Hour), testNow.Add(365 * 24 * time.Hour)}
	expired  = [2]time.Time{testNow.Add(-400 * 24 * time.Hour), testNow.Add(-24 * time.Hour)}
)

type certSpec struct {
	cn       string
	dnsNames []string
	ca       bool
	validity [2]time.Time // zero: validFor
}

type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

// issue makes a certificate for spec signed by parent, or self-signed when
// parent is nil.
func issue(t *testing.T, spec certSpec, parent *issued) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if spec.validity[0].IsZero() {
		spec.validity = validFor
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: spec.cn},
		DNSNames:              spec.dnsNames,
		NotBefore:             spec.validity[0],
		NotAfter:              spec.validity[1],
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
	}
	if spec.ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: c, key: key}
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
func sum512(b []byte) []byte { s := sha512.Sum512(b); return s[:] }

func rec(usage, selector, matching uint8, data []byte) Record {
	return Record{Usage: usage, Selector: selector, MatchingType: matching, Data: data}
}

func chainOf(certs ...*issued) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		out = append(out, c.cert)
	}
	return out
}

// --- DANE-EE(3) --------------------------------------------------------

func TestVerifyDANEEE(t *testing.T) {
	ca := issue(t, certSpec{cn: "Test CA", ca: true}, nil)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}}, ca)
	chain := chainOf(leaf, ca)
	names := []string{"mx.example.test"}

	for _, tc := range []struct {
		name string
		r    Record
	}{
		{"3 1 1 SPKI SHA-256", rec(UsageDANEEE, SelectorSPKI, MatchSHA256, sum256(leaf.cert.RawSubjectPublicKeyInfo))},
		{"3 0 2 certificate SHA-512", rec(UsageDANEEE, SelectorCert, MatchSHA512, sum512(leaf.cert.Raw))},
		{"3 0 0 full certificate", rec(UsageDANEEE, SelectorCert, MatchFull, leaf.cert.Raw)},
		{"3 1 0 full SPKI", rec(UsageDANEEE, SelectorSPKI, MatchFull, leaf.cert.RawSubjectPublicKeyInfo)},
	} {
		if err := Verify(chain, []Record{tc.r}, names, testNow); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	// DANE-EE is about the server's own certificate only: a record
	// matching the CA does not authenticate.
	err := Verify(chain, []Record{rec(UsageDANEEE, SelectorCert, MatchSHA256, sum256(ca.cert.Raw))}, names, testNow)
	if !errors.Is(err, ErrNoMatch) {
		t.Errorf("EE record for the CA: %v", err)
	}
}

func TestVerifyDANEEEIgnoresNamesAndDates(t *testing.T) {
	// RFC 7672 section 3.1.1: a self-signed, expired certificate for
	// another name passes when its key is the one published.
	leaf := issue(t, certSpec{cn: "localhost", dnsNames: []string{"localhost"}, validity: expired}, nil)
	r := rec(UsageDANEEE, SelectorSPKI, MatchSHA256, sum256(leaf.cert.RawSubjectPublicKeyInfo))
	if err := Verify(chainOf(leaf), []Record{r}, []string{"mx.example.test"}, testNow); err != nil {
		t.Fatal(err)
	}
	// Not yet valid, and no names given at all: still fine.
	future := issue(t, certSpec{cn: "x", validity: [2]time.Time{testNow.Add(time.Hour), testNow.Add(2 * time.Hour)}}, nil)
	r = rec(UsageDANEEE, SelectorCert, MatchSHA256, sum256(future.cert.Raw))
	if err := Verify(chainOf(future), []Record{r}, nil, testNow); err != nil {
		t.Fatal(err)
	}
}

// --- DANE-TA(2) --------------------------------------------------------

func TestVerifyDANETA(t *testing.T) {
	root := issue(t, certSpec{cn: "Root", ca: true}, nil)
	inter := issue(t, certSpec{cn: "Intermediate", ca: true}, root)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test", "mail.example.test"}}, inter)
	wild := issue(t, certSpec{cn: "wildcard", dnsNames: []string{"*.example.test"}}, inter)
	full := chainOf(leaf, inter, root)

	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		r     Record
		names []string
	}{
		{"root cert SHA-256", full, rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(root.cert.Raw)), []string{"mx.example.test"}},
		{"root SPKI SHA-512", full, rec(UsageDANETA, SelectorSPKI, MatchSHA512, sum512(root.cert.RawSubjectPublicKeyInfo)), []string{"mx.example.test"}},
		{"intermediate as anchor, root not sent", chainOf(leaf, inter), rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(inter.cert.Raw)), []string{"mx.example.test"}},
		{"intermediate SPKI in full", full, rec(UsageDANETA, SelectorSPKI, MatchFull, inter.cert.RawSubjectPublicKeyInfo), []string{"mx.example.test"}},
		{"second reference identifier", full, rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(root.cert.Raw)), []string{"example.test", "mail.example.test."}},
		{"wildcard", chainOf(wild, inter, root), rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(root.cert.Raw)), []string{"mx.example.test"}},
		// RFC 7671 section 5.2.2: a "2 0 0" record carries the anchor,
		// which the server need not send then.
		{"2 0 0 anchor from DNS only", chainOf(leaf, inter), rec(UsageDANETA, SelectorCert, MatchFull, root.cert.Raw), []string{"mx.example.test"}},
	} {
		if err := Verify(tc.chain, []Record{tc.r}, tc.names, testNow); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestVerifyDANETAWrongName(t *testing.T) {
	ca := issue(t, certSpec{cn: "CA", ca: true}, nil)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}}, ca)
	r := rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(ca.cert.Raw))
	for _, names := range [][]string{{"mx.other.test"}, {"example.test"}, {"a.mx.example.test"}, nil} {
		if err := Verify(chainOf(leaf, ca), []Record{r}, names, testNow); !errors.Is(err, ErrName) {
			t.Errorf("names %q: %v", names, err)
		}
	}
	// The wildcard covers one label, not two, not the parent.
	wild := issue(t, certSpec{cn: "wildcard", dnsNames: []string{"*.example.test"}}, ca)
	for _, n := range []string{"a.b.example.test", "example.test"} {
		if err := Verify(chainOf(wild, ca), []Record{r}, []string{n}, testNow); !errors.Is(err, ErrName) {
			t.Errorf("wildcard for %q: %v", n, err)
		}
	}
}

func TestVerifyDANETACommonName(t *testing.T) {
	ca := issue(t, certSpec{cn: "CA", ca: true}, nil)
	r := rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(ca.cert.Raw))
	// No DNS names: the common name is the host name (RFC 6125 6.4.4).
	cnOnly := issue(t, certSpec{cn: "mx.example.test"}, ca)
	if err := Verify(chainOf(cnOnly, ca), []Record{r}, []string{"mx.example.test"}, testNow); err != nil {
		t.Errorf("CN only: %v", err)
	}
	// With DNS names, the common name is not looked at.
	both := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"other.example.test"}}, ca)
	if err := Verify(chainOf(both, ca), []Record{r}, []string{"mx.example.test"}, testNow); !errors.Is(err, ErrName) {
		t.Errorf("CN beside DNS names: %v", err)
	}
}

func TestVerifyDANETABrokenChain(t *testing.T) {
	ta := issue(t, certSpec{cn: "Published CA", ca: true}, nil)
	other := issue(t, certSpec{cn: "Other CA", ca: true}, nil)
	r := rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(ta.cert.Raw))
	names := []string{"mx.example.test"}

	// The server sends the published CA, but its certificate was signed
	// by another one.
	forged := issue(t, certSpec{cn: "mx.example.test", dnsNames: names}, other)
	err := Verify(chainOf(forged, ta), []Record{r}, names, testNow)
	var unknown x509.UnknownAuthorityError
	if !errors.Is(err, ErrChain) || !errors.As(err, &unknown) {
		t.Errorf("leaf not signed by the anchor: %v", err)
	}

	// An expired server certificate under the right anchor.
	old := issue(t, certSpec{cn: "mx.example.test", dnsNames: names, validity: expired}, ta)
	err = Verify(chainOf(old, ta), []Record{r}, names, testNow)
	var invalid x509.CertificateInvalidError
	if !errors.Is(err, ErrChain) || !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired leaf: %v", err)
	}

	// An expired anchor fails too, as the leaf under it is checked
	// against the anchor's validity like any chain.
	oldCA := issue(t, certSpec{cn: "Old CA", ca: true, validity: expired}, nil)
	under := issue(t, certSpec{cn: "mx.example.test", dnsNames: names}, oldCA)
	r2 := rec(UsageDANETA, SelectorSPKI, MatchSHA256, sum256(oldCA.cert.RawSubjectPublicKeyInfo))
	if err := Verify(chainOf(under, oldCA), []Record{r2}, names, testNow); !errors.Is(err, ErrChain) {
		t.Errorf("expired anchor: %v", err)
	}

	// A missing intermediate cannot be made up.
	inter := issue(t, certSpec{cn: "Intermediate", ca: true}, ta)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: names}, inter)
	if err := Verify(chainOf(leaf, ta), []Record{r}, names, testNow); !errors.Is(err, ErrChain) {
		t.Errorf("missing intermediate: %v", err)
	}
}

func TestVerifyNoMatch(t *testing.T) {
	ca := issue(t, certSpec{cn: "CA", ca: true}, nil)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}}, ca)
	stranger := issue(t, certSpec{cn: "Stranger", ca: true}, nil)
	records := []Record{
		rec(UsageDANEEE, SelectorSPKI, MatchSHA256, sum256(stranger.cert.RawSubjectPublicKeyInfo)),
		rec(UsageDANETA, SelectorCert, MatchSHA512, sum512(stranger.cert.Raw)),
		// The 2 0 0 anchor from DNS, not the server's issuer.
		rec(UsageDANETA, SelectorCert, MatchFull, stranger.cert.Raw),
	}
	// The 2 0 0 record names its anchor in full, which the server's
	// certificate does not chain to.
	err := Verify(chainOf(leaf, ca), records, []string{"mx.example.test"}, testNow)
	if !errors.Is(err, ErrChain) {
		t.Errorf("foreign 2 0 0 anchor: %v", err)
	}
	// Without the 2 0 0 record nothing matches at all.
	if err := Verify(chainOf(leaf, ca), records[:2], []string{"mx.example.test"}, testNow); !errors.Is(err, ErrNoMatch) {
		t.Errorf("no match: %v", err)
	}
	if err := Verify(nil, records, nil, testNow); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("no certificate: %v", err)
	}
	if err := Verify(chainOf(leaf), nil, nil, testNow); !errors.Is(err, ErrNoMatch) {
		t.Errorf("no records: %v", err)
	}
}

func TestVerifyFirstGoodRecordWins(t *testing.T) {
	ca := issue(t, certSpec{cn: "CA", ca: true}, nil)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}}, ca)
	records := []Record{
		// Matches, but the name is wrong for this host.
		rec(UsageDANETA, SelectorCert, MatchSHA256, sum256(ca.cert.Raw)),
		// Matches the server's key: authenticates.
		rec(UsageDANEEE, SelectorSPKI, MatchSHA256, sum256(leaf.cert.RawSubjectPublicKeyInfo)),
	}
	if err := Verify(chainOf(leaf, ca), records, []string{"mx.other.test"}, testNow); err != nil {
		t.Fatal(err)
	}
	// Without the EE record, the TA record's failure is what is reported.
	if err := Verify(chainOf(leaf, ca), records[:1], []string{"mx.other.test"}, testNow); !errors.Is(err, ErrName) {
		t.Fatalf("TA failure: %v", err)
	}
}

// --- usable and unusable records ---------------------------------------

func TestUsable(t *testing.T) {
	h256 := make([]byte, 32)
	h512 := make([]byte, 64)
	good := []Record{
		rec(UsageDANEEE, SelectorSPKI, MatchSHA256, h256),
		rec(UsageDANETA, SelectorCert, MatchSHA512, h512),
		rec(UsageDANETA, SelectorCert, MatchFull, []byte{0x30}),
	}
	bad := []Record{
		rec(UsagePKIXTA, SelectorCert, MatchSHA256, h256), // RFC 7672 3.1.3
		rec(UsagePKIXEE, SelectorSPKI, MatchSHA256, h256), // RFC 7672 3.1.3
		rec(4, SelectorSPKI, MatchSHA256, h256),           // unknown usage
		rec(UsageDANEEE, 2, MatchSHA256, h256),            // unknown selector
		rec(UsageDANEEE, SelectorSPKI, 3, h256),           // unknown matching type
		rec(UsageDANEEE, SelectorSPKI, MatchSHA256, h256[:31]),
		rec(UsageDANEEE, SelectorSPKI, MatchSHA256, h512), // SHA-512 length for SHA-256
		rec(UsageDANEEE, SelectorSPKI, MatchSHA512, h256),
		rec(UsageDANEEE, SelectorSPKI, MatchFull, nil),
	}
	got := Usable(append(append([]Record{}, bad...), good...))
	if len(got) != len(good) {
		t.Fatalf("usable: %v", got)
	}
	for i := range good {
		if got[i].String() != good[i].String() {
			t.Errorf("usable[%d] = %v, want %v", i, got[i], good[i])
		}
	}

	// An unusable record that would match is not used.
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}}, nil)
	pkixEE := rec(UsagePKIXEE, SelectorSPKI, MatchSHA256, sum256(leaf.cert.RawSubjectPublicKeyInfo))
	if err := Verify(chainOf(leaf), []Record{pkixEE}, []string{"mx.example.test"}, testNow); !errors.Is(err, ErrNoMatch) {
		t.Errorf("PKIX-EE record used: %v", err)
	}
}

func TestClassify(t *testing.T) {
	tlsa := func(usage, selector, matching uint8, data string) *dns.TLSA {
		return &dns.TLSA{Hdr: dns.RR_Header{Name: "_25._tcp.mx.example.test.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET},
			Usage: usage, Selector: selector, MatchingType: matching, Certificate: data}
	}
	h := hex.EncodeToString(make([]byte, 32))
	ee := tlsa(3, 1, 1, h)
	pkix := tlsa(1, 1, 1, h)
	badHex := tlsa(3, 1, 1, "zz")
	for _, tc := range []struct {
		name   string
		rrs    []*dns.TLSA
		secure bool
		want   Requirement
		usable int
	}{
		{"insecure records", []*dns.TLSA{ee}, false, Opportunistic, 0},
		{"secure denial", nil, true, Opportunistic, 0},
		{"insecure denial", nil, false, Opportunistic, 0},
		{"secure, all unusable", []*dns.TLSA{pkix, badHex}, true, EncryptOnly, 0},
		{"secure, one usable", []*dns.TLSA{pkix, ee}, true, Authenticate, 1},
	} {
		got, usable := Classify(tc.rrs, tc.secure)
		if got != tc.want || len(usable) != tc.usable {
			t.Errorf("%s: %v with %d usable, want %v with %d", tc.name, got, len(usable), tc.want, tc.usable)
		}
	}
}

func TestFromRR(t *testing.T) {
	rr, err := dns.NewRR("_25._tcp.mx.example.test. 3600 IN TLSA 3 1 1 ( 8D02536C887482BC34FF54E41D2BA659 BF85B341A0A20AFADB5813DCFBCF286D )")
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromRR(rr.(*dns.TLSA))
	if err != nil {
		t.Fatal(err)
	}
	if r.Usage != 3 || r.Selector != 1 || r.MatchingType != 1 || len(r.Data) != 32 || r.Data[0] != 0x8d {
		t.Errorf("record: %v", r)
	}
	if r.String() != "3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d" {
		t.Errorf("String: %s", r)
	}
	for _, bad := range []string{"zz", "abc", "0x12"} {
		if _, err := FromRR(&dns.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Certificate: bad}); err == nil {
			t.Errorf("hex %q accepted", bad)
		}
	}
	if _, err := FromRR(nil); err == nil {
		t.Error("nil record accepted")
	}
}

// --- in a real handshake -----------------------------------------------

// TestVerifyInHandshake shows the intended use: the client skips PKIX
// verification and has Verify judge the chain the server presented.
func TestVerifyInHandshake(t *testing.T) {
	now := time.Now()
	today := [2]time.Time{now.Add(-time.Hour), now.Add(time.Hour)}
	ca := issue(t, certSpec{cn: "CA", ca: true, validity: today}, nil)
	leaf := issue(t, certSpec{cn: "mx.example.test", dnsNames: []string{"mx.example.test"}, validity: today}, ca)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverCfg := &tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{leaf.cert.Raw, ca.cert.Raw},
		PrivateKey:  leaf.key,
	}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, serverCfg)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			tc.Handshake() // the client's verdict shows on its side
			tc.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()

	dial := func(records []Record, names []string) error {
		cfg := &tls.Config{
			ServerName:         "mx.example.test",
			InsecureSkipVerify: true, // Verify replaces PKIX (RFC 7672 section 3)
			VerifyConnection: func(cs tls.ConnectionState) error {
				return Verify(cs.PeerCertificates, records, names, time.Now())
			},
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		return c.Close()
	}
	ta := []Record{rec(UsageDANETA, SelectorSPKI, MatchSHA256, sum256(ca.cert.RawSubjectPublicKeyInfo))}
	if err := dial(ta, []string{"mx.example.test"}); err != nil {
		t.Errorf("DANE-TA handshake: %v", err)
	}
	if err := dial(ta, []string{"mx.other.test"}); !errors.Is(err, ErrName) {
		t.Errorf("DANE-TA handshake, wrong name: %v", err)
	}
	ee := []Record{rec(UsageDANEEE, SelectorSPKI, MatchSHA256, sum256(ca.cert.RawSubjectPublicKeyInfo))}
	if err := dial(ee, nil); !errors.Is(err, ErrNoMatch) {
		t.Errorf("DANE-EE handshake with the CA's key: %v", err)
	}
}

// RFC 7671 section 9: with SHA-256 and SHA-512 records for the same usage
// and selector, only the SHA-512 ones count: a SHA-256 record that would
// match is not enough once a SHA-512 one is published.
func TestDigestAgility(t *testing.T) {
	sha256Rec := Record{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: make([]byte, 32)}
	sha512Rec := Record{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA512, Data: make([]byte, 64)}
	full := Record{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchFull, Data: []byte{1}}
	otherSel := Record{Usage: UsageDANEEE, Selector: SelectorCert, MatchingType: MatchSHA256, Data: make([]byte, 32)}
	got := Usable([]Record{sha256Rec, sha512Rec, full, otherSel})
	if len(got) != 3 || got[0].MatchingType != MatchSHA512 || got[1].MatchingType != MatchFull || got[2].Selector != SelectorCert {
		t.Fatalf("Usable kept %v", got)
	}
	if got := Usable([]Record{sha256Rec}); len(got) != 1 {
		t.Fatalf("a lone SHA-256 record dropped: %v", got)
	}
}
