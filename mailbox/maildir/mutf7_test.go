package maildir

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestModifiedUTF7(t *testing.T) {
	for utf, enc := range map[string]string{
		"INBOX":              "INBOX",
		"Tom & Jerry":        "Tom &- Jerry",
		"Entwürfe":           "Entw&APw-rfe",
		"日本語":                "&ZeVnLIqe-",
		"a😀b":                "a&2D3eAA-b",
		"~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	} {
		if got := EncodeModifiedUTF7(utf); got != enc {
			t.Errorf("Encode(%q) = %q, want %q", utf, got, enc)
		}
		if got, err := DecodeModifiedUTF7(enc); err != nil || got != utf {
			t.Errorf("Decode(%q) = %q, %v, want %q", enc, got, err, utf)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "&2D3-", "caf\xe9", "a\tb", "&Jjo=-", "&A-"} {
		if got, err := DecodeModifiedUTF7(bad); err == nil {
			t.Errorf("Decode(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzModifiedUTF7: what Encode writes, Decode reads back, for every
// name without control characters; Decode never panics, and what it
// accepts encodes back to a name that decodes to the same.
func FuzzModifiedUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "Tom & Jerry", "Entw&APw-rfe", "&ZeVnLIqe-", "&", "&-", "a😀b", "&2D3-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := DecodeModifiedUTF7(s); err == nil {
			if d2, err := DecodeModifiedUTF7(EncodeModifiedUTF7(d)); err != nil || d2 != d {
				t.Fatalf("%q decodes to %q, which does not round-trip: %q %v", s, d, d2, err)
			}
		}
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return
		}
		if d, err := DecodeModifiedUTF7(EncodeModifiedUTF7(s)); err != nil || d != s {
			t.Fatalf("%q: encoded %q, decoded %q, %v", s, EncodeModifiedUTF7(s), d, err)
		}
	})
}
