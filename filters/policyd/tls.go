package policyd

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strconv"
	"strings"

	"postern/filters"
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
		proto = protocolName(st.Version)
		cipher, keysize = cipherName(st.CipherSuite)
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

// protocolName is OpenSSL's name for a TLS version ("TLSv1.3").
func protocolName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return strings.ReplaceAll(tls.VersionName(v), " ", "v")
}

// openSSLCiphers are OpenSSL's names for the cipher suites Go speaks,
// which Postfix reports; TLS 1.3's are the IANA names in both.
var openSSLCiphers = map[uint16]string{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          "ECDHE-ECDSA-AES128-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          "ECDHE-ECDSA-AES256-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:            "ECDHE-RSA-AES128-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:            "ECDHE-RSA-AES256-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:       "ECDHE-ECDSA-AES128-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:         "ECDHE-RSA-AES128-SHA256",
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:               "AES128-GCM-SHA256",
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:               "AES256-GCM-SHA384",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:                  "AES128-SHA",
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:                  "AES256-SHA",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256:               "AES128-SHA256",
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:           "ECDHE-RSA-DES-CBC3-SHA",
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:                 "DES-CBC3-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA:              "ECDHE-ECDSA-RC4-SHA",
	tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA:                "ECDHE-RSA-RC4-SHA",
	tls.TLS_RSA_WITH_RC4_128_SHA:                      "RC4-SHA",
}

// cipherName is OpenSSL's name for a cipher suite and the bits of its
// symmetric key as OpenSSL counts them (112 for 3DES).
func cipherName(id uint16) (string, int) {
	iana := tls.CipherSuiteName(id) // "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
	bits := 0
	switch {
	case strings.Contains(iana, "AES_128"), strings.Contains(iana, "RC4_128"):
		bits = 128
	case strings.Contains(iana, "AES_256"), strings.Contains(iana, "CHACHA20"):
		bits = 256
	case strings.Contains(iana, "3DES"):
		bits = 112
	}
	if name, ok := openSSLCiphers[id]; ok {
		return name, bits
	}
	return iana, bits
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
