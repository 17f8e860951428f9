// Package dane authenticates the TLS certificates of SMTP servers with DANE
// TLSA records (RFC 7672, "SMTP Security via Opportunistic DANE TLS", on the
// TLSA record of RFC 6698 as updated by RFC 7671).
//
// A TLSA record, published in a DNSSEC-signed zone at _25._tcp.<MX host>,
// names a certificate or public key that the server at that host will
// present: its certificate usage says which one (the server's own
// certificate, or an issuer it chains to), its selector whether the whole
// certificate (Cert(0)) or only its SubjectPublicKeyInfo (SPKI(1)) is
// compared, and its matching type whether the data is that content in full
// (0) or its SHA-256 (1) or SHA-512 (2) digest. For SMTP only two usages
// are used (RFC 7672 section 3.1.3): DANE-EE(3), the server's own
// certificate or key, accepted whatever names and dates it carries (section
// 3.1.1), and DANE-TA(2), a trust anchor chosen by the domain owner, to
// which the server's chain must lead and under which the server certificate
// must be valid for the host's name (section 3.1.2). PKIX-TA(0) and
// PKIX-EE(1) would also require a public CA that the client and server
// happen to share, which an opportunistic MTA cannot count on; such records,
// and records with unknown selectors, matching types or digest lengths, are
// "unusable" and ignored.
//
// What the records ask of a connection depends on them and on whether the
// lookup was validated (RFC 7672 section 2.2, see Classify): an insecure
// RRset, or a validated denial that any exists, leaves opportunistic TLS as
// it was; a validated RRset with at least one usable record makes TLS and
// DANE authentication mandatory; a validated, non-empty RRset whose records
// are all unusable makes TLS mandatory without authentication. Looking the
// records up, and trusting the DNSSEC validation, is the caller's part
// (outbound.SecureResolver); this package only reads records and checks
// certificates.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Certificate usages (RFC 6698 section 2.1.1, acronyms of RFC 7218).
const (
	UsagePKIXTA uint8 = 0 // unusable for SMTP (RFC 7672 section 3.1.3)
	UsagePKIXEE uint8 = 1 // unusable for SMTP (RFC 7672 section 3.1.3)
	UsageDANETA uint8 = 2
	UsageDANEEE uint8 = 3
)

// Selectors (RFC 6698 section 2.1.2).
const (
	SelectorCert uint8 = 0 // the whole certificate, DER
	SelectorSPKI uint8 = 1 // its SubjectPublicKeyInfo, DER
)

// Matching types (RFC 6698 section 2.1.3).
const (
	MatchFull   uint8 = 0
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

// Record is one TLSA record: the three parameters and the certificate
// association data as raw bytes.
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// String gives the record in presentation form, "3 1 1 ab12…".
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// FromRR converts a TLSA resource record. Its data must be hexadecimal
// (RFC 6698 section 2.2); spaces, which the presentation form allows
// between hex groups, are taken out first.
func FromRR(rr *dns.TLSA) (Record, error) {
	if rr == nil {
		return Record{}, errors.New("tlsa: no record")
	}
	s := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, rr.Certificate)
	data, err := hex.DecodeString(s)
	if err != nil {
		return Record{}, fmt.Errorf("tlsa %s: certificate association data: %w", rr.Hdr.Name, err)
	}
	return Record{Usage: rr.Usage, Selector: rr.Selector, MatchingType: rr.MatchingType, Data: data}, nil
}

// Usable returns the records an SMTP client can authenticate with: usage
// DANE-TA(2) or DANE-EE(3) (RFC 7672 section 3.1.3), a known selector and
// matching type, and data of the right length for the matching type
// (RFC 7672 section 2.2 calls the others "unusable"). A non-empty list
// from a validated lookup that yields nothing here still makes TLS
// mandatory; see Classify.
//
// Digest algorithm agility (RFC 7671 section 9): where records of one usage
// and selector come with both digests, only the strongest one (SHA-512
// over SHA-256) is kept, so that a weakened digest cannot stand in for the
// one the domain also publishes. Full data (matching type 0) is not a
// digest and always stays.
func Usable(records []Record) []Record {
	type group struct{ usage, selector uint8 }
	best := map[group]uint8{}
	for _, r := range records {
		if g := (group{r.Usage, r.Selector}); usable(r) && r.MatchingType != MatchFull && r.MatchingType > best[g] {
			best[g] = r.MatchingType
		}
	}
	var out []Record
	for _, r := range records {
		if !usable(r) {
			continue
		}
		if r.MatchingType != MatchFull && r.MatchingType < best[group{r.Usage, r.Selector}] {
			continue // a weaker digest where a stronger one is published
		}
		out = append(out, r)
	}
	return out
}

func usable(r Record) bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Requirement is what the TLSA records of a host demand of a connection
// to it (RFC 7672 section 2.2).
type Requirement int

const (
	// Opportunistic: no validated TLSA records (an insecure RRset, or a
	// validated denial of existence). TLS when offered, as without DANE.
	Opportunistic Requirement = iota
	// EncryptOnly: a validated, non-empty RRset with no usable record.
	// TLS is mandatory, but the server cannot be authenticated; failing
	// TLS means trying the next host or delaying delivery.
	EncryptOnly
	// Authenticate: a validated RRset with at least one usable record. TLS
	// is mandatory and the certificate must pass Verify.
	Authenticate
)

func (q Requirement) String() string {
	switch q {
	case Opportunistic:
		return "opportunistic"
	case EncryptOnly:
		return "encrypt-only"
	case Authenticate:
		return "authenticate"
	}
	return fmt.Sprintf("Requirement(%d)", int(q))
}

// Classify turns the result of a TLSA lookup (its records and whether the
// lookup was validated) into what it requires, with the usable records to
// give Verify. A record that does not convert (bad hex) counts as present
// but unusable. A failed lookup is not classified: the caller must not
// connect to the host then (RFC 7672 section 2.2).
func Classify(rrs []*dns.TLSA, secure bool) (Requirement, []Record) {
	if !secure || len(rrs) == 0 {
		return Opportunistic, nil
	}
	var all []Record
	for _, rr := range rrs {
		if r, err := FromRR(rr); err == nil {
			all = append(all, r)
		}
	}
	usable := Usable(all)
	if len(usable) == 0 {
		return EncryptOnly, nil
	}
	return Authenticate, usable
}

// Why Verify failed. The errors it returns wrap one of these.
var (
	ErrNoCertificate = errors.New("dane: the server presented no certificate")
	// ErrNoMatch: no usable record matches the server's certificate (for
	// DANE-EE(3)) or any certificate of its chain (for DANE-TA(2)).
	ErrNoMatch = errors.New("dane: no TLSA record matches the server's certificates")
	// ErrChain: a DANE-TA(2) record matched a certificate, but the server
	// certificate does not chain up to it, or a certificate of the chain
	// is expired or not yet valid. The x509 error is wrapped too.
	ErrChain = errors.New("dane: the server certificate does not chain to the DANE-TA trust anchor")
	// ErrName: the chain holds, but the server certificate is not valid for
	// any of the reference identifiers.
	ErrName = errors.New("dane: the server certificate is not valid for the server's name")
)

// Verify authenticates a TLS server with its TLSA records. certs is the
// chain as the server presented it, its own certificate first
// (tls.ConnectionState.PeerCertificates after a completed handshake, which
// proved the server holds the first certificate's key). names are the
// reference identifiers (RFC 7672 section 3.2.2), used for DANE-TA(2)
// only: the TLSA base domain, and the MX host name (or next-hop domain)
// it was reached from when CNAMEs made them differ; the caller chooses.
// now is the time for DANE-TA(2) validity periods.
//
// It returns nil as soon as one usable record authenticates the server.
// Unusable records are ignored. Otherwise the error wraps ErrChain or
// ErrName from the first DANE-TA(2) record that matched a certificate, or
// ErrNoMatch.
func Verify(certs []*x509.Certificate, records []Record, names []string, now time.Time) error {
	if len(certs) == 0 || certs[0] == nil {
		return ErrNoCertificate
	}
	chain := make([]*x509.Certificate, 0, len(certs))
	for _, c := range certs {
		if c != nil {
			chain = append(chain, c)
		}
	}
	usable := Usable(records)
	var taErr error
	for _, r := range usable {
		switch r.Usage {
		case UsageDANEEE:
			// RFC 7672 section 3.1.1 (RFC 7671 section 5.1): the key is
			// bound to the host by the TLSA record alone; neither the
			// names in the certificate nor its dates are checked.
			if matches(r, chain[0]) {
				return nil
			}
		case UsageDANETA:
			err := verifyTrustAnchor(chain, r, names, now)
			if err == nil {
				return nil
			}
			if taErr == nil && !errors.Is(err, ErrNoMatch) {
				taErr = err
			}
		}
	}
	if taErr != nil {
		return taErr
	}
	if len(usable) == 0 {
		return fmt.Errorf("%w: none of the %d records is usable", ErrNoMatch, len(records))
	}
	return fmt.Errorf("%w (%d usable records, server certificate %q)", ErrNoMatch, len(usable), chain[0].Subject.String())
}

// verifyTrustAnchor checks one DANE-TA(2) record (RFC 7672 section 3.1.2,
// RFC 7671 section 5.2): a certificate that the record matches is the trust
// anchor; the server certificate must chain up to it, every certificate of
// that chain (anchor included) be within its validity period at now, and
// the server certificate be valid for one of names.
//
// The anchor is looked for in the chain the server presented, as RFC 7671
// section 5.2.2 asks servers to include it. A "2 0 0" record holds the
// whole anchor certificate, which is then used even when the server left it
// out. A "2 1 0" record (the anchor's bare public key) is matched only
// against the public keys of presented certificates: verifying with a bare
// key is not supported.
func verifyTrustAnchor(chain []*x509.Certificate, r Record, names []string, now time.Time) error {
	var anchors []*x509.Certificate
	for _, c := range chain {
		if matches(r, c) {
			anchors = append(anchors, c)
		}
	}
	if len(anchors) == 0 && r.Selector == SelectorCert && r.MatchingType == MatchFull {
		if c, err := x509.ParseCertificate(r.Data); err == nil {
			anchors = append(anchors, c)
		}
	}
	if len(anchors) == 0 {
		return ErrNoMatch
	}
	leaf := chain[0]
	var chainErr error
	for _, anchor := range anchors {
		roots := x509.NewCertPool()
		roots.AddCert(anchor)
		intermediates := x509.NewCertPool()
		for _, c := range chain[1:] {
			if c != anchor {
				intermediates.AddCert(c)
			}
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates,
			CurrentTime:   now,
			// The anchor is the domain owner's choice, often a private
			// CA, and RFC 7672 asks for no extended key usage check:
			// a chain without serverAuth is accepted.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			if chainErr == nil {
				chainErr = fmt.Errorf("%w: record %d %d %d: %w", ErrChain, r.Usage, r.Selector, r.MatchingType, err)
			}
			continue
		}
		return matchName(leaf, names)
	}
	return chainErr
}

// matchName checks the server certificate against the reference
// identifiers (RFC 7672 section 3.2.2). Matching, wildcards in the
// left-most label included, is crypto/x509's (RFC 6125 section 6.4.3). As
// RFC 6125 section 6.4.4 allows, the subject's common name stands for the
// host name when the certificate has no DNS names (crypto/x509 itself never
// looks at the common name).
func matchName(leaf *x509.Certificate, names []string) error {
	byName := leaf
	if len(leaf.DNSNames) == 0 && len(leaf.URIs) == 0 && leaf.Subject.CommonName != "" {
		cn := *leaf
		cn.DNSNames = []string{leaf.Subject.CommonName}
		byName = &cn
	}
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if n != "" && byName.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: it names %q, the server is %q", ErrName, byName.DNSNames, names)
}

// matches reports whether r's data is c's selected content, in full or
// digested as r says (RFC 6698 section 2.1).
func matches(r Record, c *x509.Certificate) bool {
	var content []byte
	switch r.Selector {
	case SelectorCert:
		content = c.Raw
	case SelectorSPKI:
		content = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(content) > 0 && bytes.Equal(content, r.Data)
	case MatchSHA256:
		sum := sha256.Sum256(content)
		return bytes.Equal(sum[:], r.Data)
	case MatchSHA512:
		sum := sha512.Sum512(content)
		return bytes.Equal(sum[:], r.Data)
	}
	return false
}
