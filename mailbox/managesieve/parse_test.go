package managesieve

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func newTestReader(input string) *reader {
	return &reader{br: bufio.NewReaderSize(strings.NewReader(input), 4096), maxLiteral: 100, maxDiscard: 1000}
}

// describe renders a command as NAME|kind:value|... for comparisons.
func describe(c command) string {
	kinds := map[argKind]string{argAtom: "atom", argQuoted: "quoted", argLiteral: "literal"}
	parts := []string{c.name}
	for _, a := range c.args {
		parts = append(parts, kinds[a.kind]+":"+a.value)
	}
	return strings.Join(parts, "|")
}

func TestReadCommand(t *testing.T) {
	cases := []struct{ input, want string }{
		{"capability\r\n", "CAPABILITY"},
		{"NOOP\n", "NOOP"},
		{"\r\n\r\nNOOP\r\n", "NOOP"}, // empty lines are skipped
		{`PUTSCRIPT "a b" "x\"y\\z"` + "\r\n", `PUTSCRIPT|quoted:a b|quoted:x"y\z`},
		{"PUTSCRIPT \"s\" {5+}\r\nab\r\nc\r\n", "PUTSCRIPT|quoted:s|literal:ab\r\nc"},
		{"PUTSCRIPT {1}\r\nx {0}\r\n\r\n", "PUTSCRIPT|literal:x|literal:"},
		{"HAVESPACE \"s\" 123\r\n", "HAVESPACE|quoted:s|atom:123"},
		{"SETACTIVE \"\"\r\n", "SETACTIVE|quoted:"},
		{"AUTHENTICATE\tPLAIN  \"=\"\r\n", "AUTHENTICATE|atom:PLAIN|quoted:="},
		{"NOOP \"Grüße\"\r\n", "NOOP|quoted:Grüße"},
	}
	for _, c := range cases {
		cmd, err := newTestReader(c.input).readCommand()
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		if got := describe(cmd); got != c.want {
			t.Errorf("%q: got %q, want %q", c.input, got, c.want)
		}
	}
}

// TestReadCommandErrorsResynchronize: after a malformed command the reader
// has skipped exactly that command (its literals too) and reads the next.
func TestReadCommandErrorsResynchronize(t *testing.T) {
	cases := []struct{ input, msg string }{
		{"PUTSCRIPT \"a\"x {5+}\r\nhello\r\n", "separated by a space"},
		{"NOOP \"unterminated\r\n", "unterminated quoted string"},
		{"NOOP \"unterminated\n", "unterminated quoted string"},
		{"NOOP \"a\\n\"\r\n", "invalid escape"},
		{"NOOP \"a\x00\"\r\n", "NUL"},
		{"NOOP\rX\r\n", "CR not followed by LF"},
		{"NOOP {5x}\r\n", "malformed literal"},
		{"NOOP {}\r\n", "malformed literal"},
		{"NOOP {1234567890123456}\r\n", "literal size too long"},
		{"NOOP {5+} trailing\r\n", "must end its line"},
		{"PUTSCRIPT \"a\" {500+}\r\n" + strings.Repeat("x", 500) + " \"more\"\r\n", "larger than the 100 allowed"},
		{"NOOP (\r\n", "unexpected character '('"},
		{"NOOP \x01\r\n", "unexpected octet 0x01"},
		{"NOOP \"" + strings.Repeat("a", 9000) + "\"\r\n", "longer than 8192"},
		{"A 1 2 3 4 5 6 7 8 9\r\n", "too many arguments"},
		{"\"quoted\"\r\n", "must start with its name"},
		{"NOOP \"a\" {3+}\r\nx}\r\nNOOP \"b\"x {2+}\r\nyy\r\n", ""}, // a valid one, then an error
	}
	for _, c := range cases {
		r := newTestReader(c.input + "NEXT\r\n")
		var err error
		if c.msg == "" {
			if _, err = r.readCommand(); err != nil {
				t.Errorf("%q: first command: %v", c.input, err)
			}
		}
		_, err = r.readCommand()
		var pe *protoError
		if !errors.As(err, &pe) || pe.fatal || c.msg != "" && !strings.Contains(pe.msg, c.msg) {
			t.Errorf("%q: error %v, want non-fatal %q", c.input, err, c.msg)
			continue
		}
		next, err := r.readCommand()
		if err != nil || next.name != "NEXT" {
			t.Errorf("%q: after the error read %q, %v; want NEXT", c.input, describe(next), err)
		}
	}
}

func TestReadCommandFatal(t *testing.T) {
	for _, input := range []string{
		"PUTSCRIPT \"a\" {5000+}\r\n",        // more than maxDiscard to skip
		"NOOP \"a\"x {5000+}\r\n",            // the same, found while skipping
		"NOOP " + strings.Repeat("x", 2<<20), // no line end in sight
	} {
		_, err := newTestReader(input).readCommand()
		var pe *protoError
		if !errors.As(err, &pe) || !pe.fatal {
			t.Errorf("%.40q: %v, want a fatal error", input, err)
		}
	}
	// A connection that ends inside a literal is not a clean EOF.
	_, err := newTestReader("PUTSCRIPT \"a\" {50+}\r\nshort").readCommand()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated literal: %v", err)
	}
	if _, err := newTestReader("").readCommand(); !errors.Is(err, io.EOF) {
		t.Errorf("empty input: %v", err)
	}
}

func TestWriteStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b\c`, "line\r\nbreak", "nul\x00", "\xff\xfe", strings.Repeat("x", 2000), "Grüße ☀"} {
		var b strings.Builder
		b.WriteString("NOOP ")
		writeString(&b, s)
		b.WriteString("\r\n")
		r := newTestReader(b.String())
		r.maxLiteral = 4096
		cmd, err := r.readCommand()
		if err != nil || len(cmd.args) != 1 || cmd.args[0].value != s {
			t.Errorf("%.30q written as %.40q reads back as %v, %v", s, b.String(), cmd.args, err)
		}
	}
}

func TestTrailingLiteral(t *testing.T) {
	cases := map[string]int64{"x {12+}\r\n": 12, "x {7}\n": 7, "{0}\r\n": 0, "x {a}\r\n": -1, "x {}\r\n": -1, "x {5+} \r\n": -1, "x\r\n": -1}
	for line, want := range cases {
		n, ok := trailingLiteral([]byte(line))
		if want < 0 && ok || want >= 0 && (!ok || n != want) {
			t.Errorf("trailingLiteral(%q) = %d, %v; want %d", line, n, ok, want)
		}
	}
}
