package dotforward

import (
	"errors"
	"strings"
	"testing"

	"postern/mailbox/deliver"
)

// FuzzParse: .forward files are written by users. Parsing must not panic
// or hang, and whatever it accepts must print as instructions that
// Postern's .courier reader takes as the same destinations: one line each,
// no forwarding address that is blank, split by a comma or a blank, or
// that looks like a sendmail option.
func FuzzParse(f *testing.F) {
	f.Add([]byte("# sendmail forward\njoe@example.org, \\alice\n\"|/usr/bin/vacation alice\"\n./Maildir/\n/home/alice/mbox\n"))
	f.Add([]byte("Joe Bloggs <joe@example.org>, \"Bloggs, Joe\" <jb@example.org> (work)\n"))
	f.Add([]byte(":include: list\n:include:\n"))
	f.Add([]byte("\"\\\"\"@x, (a\\)b) c @ d . e\n"))
	f.Add([]byte("||x\n\"|\"\n-o\n<>\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		read := func(string) ([]byte, error) { return []byte("inc@example.org\n\"|inc prog\"\n"), nil }
		es, err := Parse(".forward", src, read)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v is not ErrSyntax", err)
			}
			return
		}
		for _, e := range es {
			if e.Kind == Address {
				if err := checkAddress(e.Value); err != nil {
					t.Fatalf("accepted address %q: %v", e.Value, err)
				}
			}
		}
		p := MakePlan(es, Recipient{Address: "alice@example.test", DeliveredTo: []string{"bob@example.test"}})
		out := p.Output()
		if len(p.Instructions) > 0 && strings.Count(out, "\n") != len(p.Instructions) {
			t.Fatalf("an instruction spans lines: %q", out)
		}
		// Postern's .courier reader takes every line back as one
		// instruction of the same kind.
		ins, err := deliver.ParseInstructions([]byte(out))
		if err != nil || len(ins) != len(p.Instructions) {
			t.Fatalf("output %q read back as %d instructions, %v", out, len(ins), err)
		}
		for i, in := range p.Instructions {
			switch k := ins[i].Kind; {
			case in[0] == '!' && k != deliver.InstrForward, in[0] == '|' && k != deliver.InstrProgram,
				(in[0] == '/' || in[0] == '.') && k != deliver.InstrMailbox:
				t.Fatalf("%q read back as kind %d", in, k)
			}
			switch {
			case in == "" || strings.TrimSpace(in) != in && in[0] != '|':
				t.Fatalf("instruction %q", in)
			case in[0] == '!':
				for _, a := range strings.Split(in[1:], ", ") {
					if a == "" || a[0] == '-' || strings.ContainsAny(a, " \t\r\n\x00,<>") {
						t.Fatalf("unsafe address %q in %q", a, in)
					}
				}
			case in[0] == '|':
				if strings.HasPrefix(in, "||") || strings.TrimSpace(in[1:]) == "" {
					t.Fatalf("program %q", in)
				}
			case in[0] != '/' && !strings.HasPrefix(in, "./"):
				t.Fatalf("instruction %q is neither forward, program nor mailbox", in)
			}
		}
	})
}
