package tlsname

import (
	"crypto/tls"
	"strconv"
	"testing"
)

func TestNames(t *testing.T) {
	for id, want := range map[uint16]string{
		tls.TLS_AES_256_GCM_SHA384:                      "TLS_AES_256_GCM_SHA384 256",
		tls.TLS_CHACHA20_POLY1305_SHA256:                "TLS_CHACHA20_POLY1305_SHA256 256",
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:       "ECDHE-RSA-AES128-GCM-SHA256 128",
		tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:               "DES-CBC3-SHA 112",
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:        "ECDHE-ECDSA-AES256-SHA 256",
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305 256",
	} {
		name, bits := Cipher(id)
		if got := name + " " + strconv.Itoa(bits); got != want {
			t.Errorf("cipher %#04x: %q, want %q", id, got, want)
		}
	}
	for v, want := range map[uint16]string{tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1", tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"} {
		if got := Version(v); got != want {
			t.Errorf("version %#04x: %q, want %q", v, got, want)
		}
	}
}
