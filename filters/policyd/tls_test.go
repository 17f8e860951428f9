package policyd

import (
	"testing"
)

func TestTLSNames(t *testing.T) {
	for in, want := range map[string]string{"Wietse Venema": "Wietse+20Venema", "a+b=c": "a+2Bb=c", "caf\xc3\xa9\x01": "caf+C3+A9+01", "": ""} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
	if got := fingerprint([]byte("abc")); got != "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD" {
		t.Errorf("fingerprint: %s", got)
	}
}
