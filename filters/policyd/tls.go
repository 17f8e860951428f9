package policyd

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"postern/filters"
	"postern/internal/tlsname"
)

// tlsAttributes are the encryption_* and ccert_* attributes as Postfix
// sends them (smtpd_check.c check_policy_service): the protocol and
// cipher by OpenSSL's names and the cipher's key size in bits; for a
// client certificate its SHA-256 fingerprint and public key fingerprint
// (smtpd_tls_fingerprint_digest's default at compatibility_level 3.6) in
// colon-separated upper-case hex, and, only when the certificate was
// verified, the subject's and issuer's CommonName, xtext-encoded.
func tlsAttributes(s *filters.Session) []string {
	var proto, cipher, subject, issuer, fprint, pkeyFprint string
	keysize := 0
	if st := s.TLSState; st != nil {
		proto = tlsname.Version(st.Version)
		cipher, keysize = tlsname.Cipher(st.CipherSuite)
		if len(st.PeerCertificates) > 0 {
			cert := st.PeerCertificates[0]
			fprint = fingerprint(cert.Raw)
			pkeyFprint = fingerprint(cert.RawSubjectPublicKeyInfo)
			if s.TLSClientVerified {
				subject, issuer = xtext(cert.Subject.CommonName), xtext(cert.Issuer.CommonName)
			}
		}
	} else if s.TLS {
		proto = "TLS" // the version and cipher are not known
	}
	return []string{
		"ccert_subject=" + subject,
		"ccert_issuer=" + issuer,
		"ccert_fingerprint=" + fprint,
		"ccert_pubkey_fingerprint=" + pkeyFprint,
		"encryption_protocol=" + proto,
		"encryption_cipher=" + cipher,
		"encryption_keysize=" + strconv.Itoa(keysize),
	}
}

// fingerprint is the SHA-256 digest of der as Postfix writes it:
// "AB:CD:...".
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// xtext encodes s as Postfix's xtext_quote does (RFC 3461 4): '+', spaces,
// control and non-ASCII bytes become "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' || c <= ' ' || c >= 0x7f {
			b.WriteString("+" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
