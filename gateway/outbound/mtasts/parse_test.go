package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Policy // nil: must fail
	}{
		{"rfc example", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			&Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800 * time.Second}},
		{"lf, no final newline", "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400",
			&Policy{Mode: ModeTesting, MX: []string{"mx.example.com"}, MaxAge: 86400 * time.Second}},
		{"any order", "max_age: 10\nmx: mx.example.com\nmode: enforce\nversion: STSv1\n",
			&Policy{Mode: ModeEnforce, MX: []string{"mx.example.com"}, MaxAge: 10 * time.Second}},
		{"spaces, tabs, blank lines", "  version:STSv1 \n\n\tmode :\tenforce\t\r\nmx:   mx.example.com  \n\n max_age: 5\n\n",
			&Policy{Mode: ModeEnforce, MX: []string{"mx.example.com"}, MaxAge: 5 * time.Second}},
		{"mode none without mx", "version: STSv1\nmode: none\nmax_age: 3600\n",
			&Policy{Mode: ModeNone, MaxAge: time.Hour}},
		{"max_age zero", "version: STSv1\nmode: none\nmax_age: 0\n",
			&Policy{Mode: ModeNone}},
		{"max_age clamped", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
			&Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: maxMaxAge}},
		{"max_age huge clamped", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999999999999999\n",
			&Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: maxMaxAge}},
		{"max_age at the limit", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n",
			&Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: maxMaxAge}},
		{"mx normalized", "version: STSv1\nmode: enforce\nmx: MX1.Example.COM.\nmx: *.EXAMPLE.org\nmax_age: 1\n",
			&Policy{Mode: ModeEnforce, MX: []string{"mx1.example.com", "*.example.org"}, MaxAge: time.Second}},
		{"unknown keys ignored", "version: STSv1\nmode: enforce\nx-comment: hello, wörld: yes\nmx: a.example\nfoo_bar.baz: 1\nmax_age: 1\n",
			&Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: time.Second}},
		{"first of repeated fields counts", "version: STSv1\nmode: testing\nmode: enforce\nmode: bogus\nmx: a.example\nmax_age: 1\nmax_age: 2\nversion: STSv9\n",
			&Policy{Mode: ModeTesting, MX: []string{"a.example"}, MaxAge: time.Second}},
		{"idn as a-label", "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 1\n",
			&Policy{Mode: ModeEnforce, MX: []string{"xn--bcher-kva.example"}, MaxAge: time.Second}},

		{"empty", "", nil},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"other version", "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"version case", "version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"key case", "Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"no mode", "version: STSv1\nmx: a.example\nmax_age: 1\n", nil},
		{"bad mode", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", nil},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", nil},
		{"negative max_age", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", nil},
		{"max_age not a number", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", nil},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", nil},
		{"testing without mx", "version: STSv1\nmode: testing\nmax_age: 1\n", nil},
		{"line without colon", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n<html>\n", nil},
		{"empty value", "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", nil},
		{"bad key", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n_x: y\n", nil},
		{"mx with two wildcards", "version: STSv1\nmode: enforce\nmx: *.*.example.com\nmax_age: 1\n", nil},
		{"mx wildcard inside", "version: STSv1\nmode: enforce\nmx: mx.*.example.com\nmax_age: 1\n", nil},
		{"mx bare wildcard", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", nil},
		{"mx u-label", "version: STSv1\nmode: enforce\nmx: bücher.example\nmax_age: 1\n", nil},
		{"mx kelvin sign", "version: STSv1\nmode: enforce\nmx: \u212a.example\nmax_age: 1\n", nil},
		{"mx with port", "version: STSv1\nmode: enforce\nmx: a.example:25\nmax_age: 1\n", nil},
		{"mx empty label", "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", nil},
		{"mx several on a line", "version: STSv1\nmode: enforce\nmx: a.example b.example\nmax_age: 1\n", nil},
		{"control character", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nnote: a\x00b\n", nil},
		{"bare cr", "version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 1\r", nil},
		{"too long", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n" + strings.Repeat("x: y\n", maxPolicySize/5), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Parse accepted it: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSizeLimit(t *testing.T) {
	head := "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx: "
	exact := head + strings.Repeat("y", maxPolicySize-len(head))
	if _, err := Parse([]byte(exact)); err != nil {
		t.Errorf("policy of exactly %d bytes refused: %v", maxPolicySize, err)
	}
	if _, err := Parse([]byte(exact + "y")); err == nil {
		t.Errorf("policy of %d bytes accepted", maxPolicySize+1)
	}
}

func TestParseTXT(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		id      string // "": must fail with ErrNoPolicy
	}{
		{"rfc example", []string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z"},
		{"no final delimiter", []string{"v=STSv1; id=abc"}, "abc"},
		{"no spaces", []string{"v=STSv1;id=abc"}, "abc"},
		{"spaces and tabs", []string{"v=STSv1 \t;\t id=abc ; "}, "abc"},
		{"extension fields", []string{"v=STSv1; foo=bar; id=abc; x.y-z_=1"}, "abc"},
		{"other records discarded", []string{"v=spf1 -all", "google-site-verification=xyz", "v=STSv1; id=abc"}, "abc"},
		{"first id counts", []string{"v=STSv1; id=abc; id=def"}, "abc"},
		{"32 characters", []string{"v=STSv1; id=" + strings.Repeat("a", 32)}, strings.Repeat("a", 32)},
		{"stray empty field", []string{"v=STSv1;; id=abc"}, "abc"},

		{"none", nil, ""},
		{"no sts record", []string{"v=spf1 -all"}, ""},
		{"two sts records", []string{"v=STSv1; id=abc", "v=STSv1; id=def"}, ""},
		{"two sts records, one invalid", []string{"v=STSv1; id=abc", "v=STSv1; nonsense"}, ""},
		{"not first", []string{"id=abc; v=STSv1"}, ""},
		{"leading space", []string{" v=STSv1; id=abc"}, ""},
		{"other version", []string{"v=STSv10; id=abc"}, ""},
		{"version case", []string{"v=stsv1; id=abc"}, ""},
		{"no id", []string{"v=STSv1;"}, ""},
		{"version alone", []string{"v=STSv1"}, ""},
		{"empty id", []string{"v=STSv1; id="}, ""},
		{"id too long", []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, ""},
		{"id with dash", []string{"v=STSv1; id=2016-08-31"}, ""},
		{"field without =", []string{"v=STSv1; id=abc; foo"}, ""},
		{"value with space", []string{"v=STSv1; id=abc; foo=a b"}, ""},
		{"id key case", []string{"v=STSv1; ID=abc"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseTXT(tt.records)
			if tt.id == "" {
				if !errors.Is(err, ErrNoPolicy) {
					t.Fatalf("ParseTXT = %q, %v; want ErrNoPolicy", id, err)
				}
				return
			}
			if err != nil || id != tt.id {
				t.Fatalf("ParseTXT = %q, %v; want %q", id, err, tt.id)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.COM", true},
		{"mail.example.com.", true},
		{"mx.example.net", true},
		{"MX.EXAMPLE.NET.", true},
		{"example.net", false},       // the wildcard needs one label
		{"a.b.example.net", false},   // and only one (RFC 8461 section 4.1)
		{".example.net", false},      // an empty label is not a label
		{"other.example.com", false}, // no wildcard for example.com
		{"mail.example.com.evil", false},
		{"xmail.example.com", false},
		{"", false},
		{".", false},
		{"\u212aail.example.com", false}, // Kelvin sign is not 'k' or 'm'
	}
	for _, tt := range tests {
		if got := p.Match(tt.host); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if (&Policy{Mode: ModeNone}).Match("mail.example.com") {
		t.Errorf("a policy without mx matched")
	}
	kelvin := &Policy{MX: []string{"k.example"}}
	if kelvin.Match("\u212a.example") {
		t.Errorf("Kelvin sign matched k")
	}
}

func TestNormalizeDomain(t *testing.T) {
	for _, ok := range []string{"example.com", "EXAMPLE.com.", "a-b.example", "xn--bcher-kva.example", "localhost", strings.Repeat("a", 63) + ".example"} {
		if _, err := normalizeDomain(ok); err != nil {
			t.Errorf("normalizeDomain(%q): %v", ok, err)
		}
	}
	for _, bad := range hostileDomains {
		if d, err := normalizeDomain(bad); err == nil {
			t.Errorf("normalizeDomain(%q) = %q, accepted", bad, d)
		}
	}
}

// hostileDomains must never be looked up nor become file names.
var hostileDomains = []string{
	"", ".", "..", "../x", "../../etc/passwd", "a/b", "a\\b", "/abs", "a..b",
	".hidden", "x.json/..", "a b", "a\x00b", "bücher.example", "\u212a.example",
	"-a.example", "a-.example", "[127.0.0.1]", "a:b", "*.example", "a_b.example",
	strings.Repeat("a", 64) + ".example", strings.Repeat("abcdefghi.", 25) + "example",
}
