// Package tlsname names TLS versions and cipher suites as OpenSSL does,
// which is how Postfix writes them in Received fields and sends them to
// policy servers ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256 bits):
// the names mail admins grep their logs and headers for.
package tlsname

import (
	"crypto/tls"
	"strings"
)

// Version is OpenSSL's name for a TLS version ("TLSv1.3", "TLSv1" for 1.0).
func Version(v uint16) string {
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

// Cipher is OpenSSL's name for a cipher suite and the bits of its
// symmetric key as OpenSSL counts them (112 for 3DES).
func Cipher(id uint16) (string, int) {
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
