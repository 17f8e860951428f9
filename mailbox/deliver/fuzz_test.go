package deliver

import (
	"strings"
	"testing"
)

// FuzzParseInstructions: .courier files and "||" output come from users
// and programs; parsing must not panic and what it accepts must be safe to
// carry out (no option-like or blank forwarding addresses, no empty
// commands).
func FuzzParseInstructions(f *testing.F) {
	f.Add([]byte("# comment\n\n./Maildir/\n|prog arg\n||dotforward\n&a@b.c, d@e.f\nuser@example.org\n/var/mail/x\n"))
	f.Add([]byte("|\n"))
	f.Add([]byte("-oQ\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		ins, err := ParseInstructions(src)
		if err != nil {
			return
		}
		for _, in := range ins {
			switch in.Kind {
			case InstrForward:
				for _, a := range in.Addrs {
					if a == "" || a[0] == '-' || strings.ContainsAny(a, " \t\r\n\x00") {
						t.Fatalf("unsafe address %q", a)
					}
				}
			case InstrProgram, InstrDynamic:
				if strings.TrimSpace(in.Value) == "" {
					t.Fatal("empty command")
				}
			}
		}
	})
}

// FuzzResolveDestination: destinations come from filter files; whatever
// is accepted as a path must stay inside the home or the Maildir.
func FuzzResolveDestination(f *testing.F) {
	for _, s := range []string{"./Maildir/", "../../etc/x", "Maildir/.A.B", "/etc/passwd", "|cmd", "!a@b", "./a/../../b", "Maildir/..x/"} {
		f.Add(s)
	}
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, dest string) {
		d, err := ResolveDestination(home, Confinement{Home: home, Maildir: home + "/Maildir"}, dest)
		if err != nil {
			return
		}
		if d.Kind == DestMbox || d.Kind == DestMaildir {
			p := d.Path
			if !within(p, home) {
				t.Fatalf("%q resolved outside the home: %q", dest, p)
			}
		}
	})
}
