package dane

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fixedChain reads testdata/chain.pem: a server certificate for
// mx.example and the CA that issued it, valid from 2025 to 2125, so that
// the committed seeds (TLSA records for them) keep their meaning.
func fixedChain(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "chain.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) != 2 {
		tb.Fatalf("chain.pem: %d certificates, want 2", len(chain))
	}
	return chain
}

var fixedNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// verifyPresentation takes a TLSA record's text after the type, as in a
// zone file, through FromRR, Usable and Verify against chain.
func verifyPresentation(t *testing.T, chain []*x509.Certificate, text string) (parsed bool, err error) {
	rr, perr := dns.NewRR("_25._tcp.mx.example. 3600 IN TLSA " + text)
	if perr != nil || rr == nil {
		return false, nil
	}
	tlsa, ok := rr.(*dns.TLSA)
	if !ok {
		return false, nil
	}
	r, ferr := FromRR(tlsa)
	if ferr != nil {
		return false, nil
	}
	usable := Usable([]Record{r})
	if len(usable) == 1 && !usable[0].usableForTest() {
		t.Fatalf("Usable kept %v", r)
	}
	err = Verify(chain, []Record{r}, []string{"mx.example"}, fixedNow)
	if err == nil && len(usable) == 0 {
		t.Fatalf("unusable record %v authenticated", r)
	}
	if err != nil && !errors.Is(err, ErrNoMatch) && !errors.Is(err, ErrChain) && !errors.Is(err, ErrName) {
		t.Fatalf("record %v: error of no known kind: %v", r, err)
	}
	return true, err
}

// usableForTest restates the rules of Usable independently.
func (r Record) usableForTest() bool {
	lengths := map[uint8]int{MatchSHA256: 32, MatchSHA512: 64}
	if r.Usage < 2 || r.Usage > 3 || r.Selector > 1 || r.MatchingType > 2 {
		return false
	}
	if n, ok := lengths[r.MatchingType]; ok {
		return len(r.Data) == n
	}
	return len(r.Data) > 0
}

// FuzzTLSA feeds TLSA presentation text through FromRR, Usable and Verify
// against a fixed chain: nothing may panic, an unusable record never
// authenticates, and every failure says why.
func FuzzTLSA(f *testing.F) {
	chain := fixedChain(f)
	// More seeds, matching the fixed chain, are in testdata/fuzz/FuzzTLSA.
	for _, s := range []string{"3 1 1 00", "2 0 0 ", "0 0 0 ff", "3 1 1 ( ab cd )"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		verifyPresentation(t, chain, text)
	})
}

// TestFuzzSeeds checks that the committed seeds mean what their names
// promise: seed00 to seed07 authenticate the fixed chain, the others
// (unusable, or not even parsed) do not.
func TestFuzzSeeds(t *testing.T) {
	chain := fixedChain(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzTLSA", "seed*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("seeds: %v %v", files, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		line := strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[1])
		text, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(file), "seed"))
		parsed, err := verifyPresentation(t, chain, text)
		if want, got := n <= 7, parsed && err == nil; want != got {
			t.Errorf("%s %q: parsed %v, %v", filepath.Base(file), text, parsed, err)
		}
	}
}
