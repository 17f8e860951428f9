package policyd

import (
	"crypto/tls"
	"strconv"
	"testing"
)

func TestTLSNames(t *testing.T) {
	for in, want := range map[string]string{"Wietse Venema": "Wietse+20Venema", "a+b=c": "a+2Bb=c", "caf\xc3\xa9\x01": "caf+C3+A9+01", "": ""} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
	for id, want := range map[uint16]string{
		tls.TLS_AES_256_GCM_SHA384:                      "TLS_AES_256_GCM_SHA384 256",
		tls.TLS_CHACHA20_POLY1305_SHA256:                "TLS_CHACHA20_POLY1305_SHA256 256",
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:       "ECDHE-RSA-AES128-GCM-SHA256 128",
		tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:               "DES-CBC3-SHA 112",
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:        "ECDHE-ECDSA-AES256-SHA 256",
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305 256",
	} {
		name, bits := cipherName(id)
		if got := name + " " + strconv.Itoa(bits); got != want {
			t.Errorf("cipher %#04x: %q, want %q", id, got, want)
		}
	}
	for v, want := range map[uint16]string{tls.VersionTLS10: "TLSv1", tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"} {
		if got := protocolName(v); got != want {
			t.Errorf("version %#04x: %q", v, got)
		}
	}
	if got := fingerprint([]byte("abc")); got != "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD" {
		t.Errorf("fingerprint: %s", got)
	}
}
