package behaviour

import (
	"strings"
	"testing"
)

// FuzzParseHelo: any HELO argument is classified without panicking, and
// what is called a domain really is one.
func FuzzParseHelo(f *testing.F) {
	for _, s := range []string{"mail.example.com", "[192.0.2.1]", "[IPv6:::1]", "[tag:x]", "1.2.3.4", "", "[", "a..b", "localhost"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		kind, addr := ParseHelo(arg)
		switch kind {
		case HeloDomain, HeloSingleLabel:
			for _, l := range strings.Split(strings.TrimSuffix(arg, "."), ".") {
				if !isSubDomain(l) {
					t.Fatalf("%q classified %v with label %q", arg, kind, l)
				}
			}
		case HeloBareIP:
			if !addr.IsValid() {
				t.Fatalf("%q: bare IP without an address", arg)
			}
		case HeloAddressLiteral:
			if !strings.HasPrefix(arg, "[") || !strings.HasSuffix(arg, "]") {
				t.Fatalf("%q: literal without brackets", arg)
			}
		}
	})
}
