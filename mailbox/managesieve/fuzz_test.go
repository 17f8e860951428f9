package managesieve

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReadCommand feeds arbitrary client input to the command reader: it
// must never panic, always make progress, keep its bounds, and read back
// any command it parsed once written out again.
func FuzzReadCommand(f *testing.F) {
	for _, seed := range []string{
		"CAPABILITY\r\n",
		"AUTHENTICATE \"PLAIN\" {20+}\r\nAGFsaWNlAHNlY3JldA==\r\n",
		"PUTSCRIPT \"vacation\" {31+}\r\nrequire \"vacation\";\r\nkeep;\r\n\r\n",
		"PUTSCRIPT {3}\r\nabc \"x\\\"y\"\r\n",
		"HAVESPACE \"a\" 99999\r\nSETACTIVE \"\"\r\nNOOP \"tag\"\r\n",
		"RENAMESCRIPT \"a\" \"b\"\nLOGOUT\n",
		"NOOP \"a\"x {5+}\r\nhello\r\nNOOP\r\n",
		"PUTSCRIPT \"a\" {999+}\r\nshort",
		"\x00\xff{}\"\\\r\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		r := &reader{br: bufio.NewReaderSize(bytes.NewReader(input), 4096), maxLiteral: 64, maxDiscard: 256}
		for i := 0; ; i++ {
			if i > len(input)+1 {
				t.Fatalf("no progress after %d commands", i)
			}
			cmd, err := r.readCommand()
			var pe *protoError
			if errors.As(err, &pe) && !pe.fatal {
				continue
			}
			if err != nil {
				return
			}
			checkCommand(t, cmd, r.maxLiteral)
		}
	})
}

func checkCommand(t *testing.T, cmd command, maxLiteral int64) {
	if cmd.name == "" || cmd.name != strings.ToUpper(cmd.name) || len(cmd.args)+1 > maxArgs {
		t.Fatalf("bad command %q with %d args", cmd.name, len(cmd.args))
	}
	var b strings.Builder
	b.WriteString(cmd.name)
	for _, a := range cmd.args {
		if a.kind == argLiteral && int64(len(a.value)) > maxLiteral {
			t.Fatalf("literal of %d octets passed the bound %d", len(a.value), maxLiteral)
		}
		b.WriteByte(' ')
		if a.kind == argAtom {
			b.WriteString(a.value)
		} else {
			writeString(&b, a.value)
		}
	}
	b.WriteString("\r\n")
	// Quoted values up to the line bound may come back as literals.
	bound := maxLiteral + maxLineLength
	again, err := (&reader{br: bufio.NewReader(strings.NewReader(b.String())), maxLiteral: bound, maxDiscard: bound}).readCommand()
	if err != nil || values(again) != values(cmd) {
		t.Fatalf("%q re-read as %q, %v", describe(cmd), describe(again), err)
	}
}

// values renders a command without how its strings were written (a
// literal may come back quoted).
func values(c command) string {
	parts := []string{c.name}
	for _, a := range c.args {
		kind := "string:"
		if a.kind == argAtom {
			kind = "atom:"
		}
		parts = append(parts, kind+a.value)
	}
	return strings.Join(parts, "\x00")
}
