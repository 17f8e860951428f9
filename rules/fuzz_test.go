package rules

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary filter files to the lexer and parser, and runs
// what parses in embedded mode under tight limits: nothing may panic, hang
// or escape the limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte("if (/^Subject: (.*)/:h)\n{\n  to \"./Maildir/.$MATCH1\"\n}\n"))
	f.Add([]byte("A=1; while ($A < 3)\n{\n  A=$A+1\n}\nexit\n"))
	f.Add([]byte("foreach (getaddr $MATCH) =~ /.+/\n{\n echo $MATCH\n}\n"))
	f.Add([]byte("A=(/x/:wHq,1,2)\nB=(/([a-z/)\nP=\"(\"\nC=(/$P/:b)\nD=`echo \\$X \\` '$Y'`\nE=\"a\\$b\"\necho \"$A$B$C$D$E\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		prog, err := Parse("fuzz", src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("parse error is not a *SyntaxError: %v", err)
			}
			return
		}
		env := Env{
			Embedded: true,
			ReadFile: func(string) ([]byte, error) { return nil, errors.New("no files in fuzzing") },
			Limits:   Limits{MaxSteps: 2000, Timeout: time.Second, MaxVarSize: 1 << 16},
		}
		prog.Run(context.Background(), NewMessage([]byte(testMessage)), env)
	})
}

// FuzzPattern compiles arbitrary patterns and matches them against a line.
func FuzzPattern(f *testing.F) {
	f.Add("^From:\\s+(.*)@(.*)", "From: a@b", false)
	f.Add("(?=x)", "x", true)
	f.Add("[]a]\\1", "]a", false)
	f.Fuzz(func(t *testing.T, pat, line string, cs bool) {
		re, err := compilePattern(pat, cs, 8192)
		if err != nil {
			if !errors.Is(err, ErrPattern) {
				t.Fatalf("error does not wrap ErrPattern: %v", err)
			}
			return
		}
		re.FindStringSubmatchIndex(line)
	})
}

// FuzzMessage builds the pattern view (headers, addresses, MIME) of
// arbitrary messages.
func FuzzMessage(f *testing.F) {
	f.Add([]byte(testMessage))
	f.Add([]byte("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe\n--b--\n"))
	f.Add([]byte("To: \"A, B\" <a@b>, (c) d@e, g: h@i;\nFrom: =?UTF-8?B?SsO2ZQ==?= <e@b>\n\n"))
	f.Add([]byte("Subject: no body\nFrom: x\xff"))
	f.Add([]byte("To: N <a@b.c> (c1) (c2), g: a@b.c;x@y.z, (pre) \"Q\" (c) <d@e>\nSubject: =?UTF-8?Q?a?= =?bogus?Q?f?= =?x?B?!!?=\n\n"))
	f.Add([]byte("From x Mon\nSubject: s\n\nbody\nFrom y\nlast"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := NewMessage(raw)
		if out := m.Output(); len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("Output does not end in a line feed: %q", out)
		}
		if m.Lines() < 0 || m.Lines() > len(raw) {
			t.Fatalf("Lines %d for %d bytes", m.Lines(), len(raw))
		}
		logHeader(raw, "Subj")
		mboxQuotedLines(raw)
		v := m.v()
		for _, f := range v.top {
			addresses(f.value)
		}
	})
}
