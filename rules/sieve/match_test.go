package sieve

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestGlobCaptures: each "*" takes the shortest run that lets the rest
// match, the last one the remainder; "?" takes one character.
func TestGlobCaptures(t *testing.T) {
	cases := []struct {
		pat, s string
		caps   []string // nil: no match
	}{
		{"[*] *", "[acme-users] [fwd] version 1.0 is out", []string{"acme-users", "[fwd] version 1.0 is out"}},
		{"*<*@*", "Dovecot Mailing List <dovecot@dovecot.org>", []string{"Dovecot Mailing List ", "dovecot", "dovecot.org>"}},
		{"a?c", "aüc", []string{"ü"}},
		{"*", "", []string{""}},
		{"**", "ab", []string{"", "ab"}},
		{"\\**", "*x", []string{"x"}},
		{"*.txt", "a.b.txt", []string{"a.b"}},
		{"a*b", "ac", nil},
		{"?", "", nil},
	}
	for _, c := range cases {
		ok, caps, _ := globMatch(c.pat, c.s, cmpCasemap, true, 1<<30)
		if (c.caps == nil) != !ok {
			t.Errorf("%q ~ %q: match %v", c.s, c.pat, ok)
			continue
		}
		if ok && strings.Join(caps[1:], "|") != strings.Join(c.caps, "|") {
			t.Errorf("%q ~ %q: captures %q, want %q", c.s, c.pat, caps[1:], c.caps)
		}
	}
}

// TestNumericComparator: i;ascii-numeric (RFC 4790 9.1).
func TestNumericComparator(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"10", "9", 1}, {"007", "7", 0}, {"12abc", "12", 0}, {"abc", "99999999999999999999999", 1},
		{"abc", "x", 0}, {"0", "", -1}, {"123456789012345678901234567890", "123456789012345678901234567891", -1},
	}
	for _, c := range cases {
		got := cmpNumeric.order(c.a, c.b)
		if got > 0 {
			got = 1
		} else if got < 0 {
			got = -1
		}
		if got != c.want {
			t.Errorf("order(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// globRegexp translates a :matches pattern into an equivalent regular
// expression, the reference FuzzMatches compares with.
func globRegexp(pat string) string {
	var b strings.Builder
	b.WriteString("(?s)^")
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '\\':
			if i+1 < len(pat) {
				i++
				b.WriteString(regexp.QuoteMeta(pat[i : i+1]))
			}
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	b.WriteString("$")
	return b.String()
}

// FuzzMatches compares the :matches matcher with a regular expression
// doing the same match (i;octet on valid UTF-8 ASCII-only input, where
// "?" is one byte either way), and checks the captures rebuild the value.
func FuzzMatches(f *testing.F) {
	f.Add("[*] *", "[a] [b] c")
	f.Add("*a*a*b", "aaaaab")
	f.Add("\\*?\\\\", "*x\\")
	f.Fuzz(func(t *testing.T, pat, s string) {
		if !utf8.ValidString(pat) || !utf8.ValidString(s) || !isASCII(pat) || !isASCII(s) || len(pat) > 64 || len(s) > 256 {
			return
		}
		ok, caps, _ := globMatch(pat, s, cmpOctet, true, 1<<30)
		want := regexp.MustCompile(globRegexp(pat)).MatchString(s)
		if ok != want {
			t.Fatalf("%q ~ %q: glob %v, regexp %v", s, pat, ok, want)
		}
		if ok {
			// The literal parts and the captures, in order, give s back.
			var rebuilt strings.Builder
			w := 1
			for i := 0; i < len(pat); i++ {
				switch pat[i] {
				case '\\':
					if i+1 < len(pat) {
						i++
						rebuilt.WriteByte(pat[i])
					}
				case '*', '?':
					rebuilt.WriteString(caps[w])
					w++
				default:
					rebuilt.WriteByte(pat[i])
				}
			}
			if rebuilt.String() != s {
				t.Fatalf("%q ~ %q: captures %q rebuild %q", s, pat, caps, rebuilt.String())
			}
		}
	})
}
