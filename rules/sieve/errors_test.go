package sieve

import (
	"errors"
	"strings"
	"testing"
)

// TestParseErrors: each bad script fails with a *ParseError at the right
// line and column, with a message that names the problem.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, script, want string
	}{
		{"unknown command", "keep;\nfrobnicate;", `2:1: unknown command "frobnicate"`},
		{"unknown test", "if frob { keep; }", `1:4: unknown test "frob"`},
		{"missing require", "fileinto \"x\";", `1:1: fileinto: missing require "fileinto"`},
		{"missing require for tag", "require \"fileinto\";\nfileinto :copy \"x\";", `2:10: fileinto: tag :copy needs require "copy"`},
		{"unsupported extension", "require [\"fileinto\", \"vnd.dovecot.pipe\"];", `1:9: unsupported extension "vnd.dovecot.pipe"`},
		{"unknown tag", "if header :bogus \"a\" \"b\" { keep; }", `1:11: header: unknown tag :bogus`},
		{"unterminated string", "require \"fileinto;\nkeep;\n", `1:9: unterminated string`},
		{"unterminated multiline", "require \"reject\";\nreject text:\nno end\n", `2:8: unterminated multi-line string`},
		{"bad number", "if size :over 10X { discard; }", `1:15: bad number`},
		{"number too large", "if size :over 99999999999999999999 { discard; }", `1:15: number too large`},
		{"missing semicolon", "keep\ndiscard;", `2:1: keep takes no test: is a ';' missing before "discard"?`},
		{"missing semicolon at end", "keep", `1:5: expected ';' or a block after keep, found end of script`},
		{"unterminated comment", "keep; /* never closed", `1:7: unterminated comment`},
		{"wrong argument type", "require \"fileinto\";\nfileinto 5;", `2:10: fileinto: argument 1 must be a string, found a number`},
		{"too many arguments", "keep \"x\";", `1:1: keep: takes no positional argument, found 1`},
		{"missing argument", "if header \"subject\" { keep; }", `1:4: header: needs 2 argument(s)`},
		{"require after command", "keep;\nrequire \"fileinto\";", `2:1: require must come before any other command`},
		{"elsif without if", "elsif true { keep; }", `1:1: elsif without a preceding if`},
		{"test as command", "header \"a\" \"b\";", `1:1: "header" is a test, not a command`},
		{"command as test", "if keep { discard; }", `1:4: "keep" is a command, not a test`},
		{"two match types", "if header :is :contains \"a\" \"b\" { keep; }", `1:15: header: tags :is and :contains cannot be used together`},
		{"unknown comparator", "if header :comparator \"i;klingon\" \"a\" \"b\" { keep; }", `1:23: header: unknown comparator "i;klingon"`},
		{"numeric without require", "if header :comparator \"i;ascii-numeric\" \"a\" \"1\" { keep; }", `1:23: header: comparator i;ascii-numeric needs require`},
		{"numeric contains", "require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" { keep; }", `2:4: header: comparator i;ascii-numeric cannot do :contains`},
		{"bad relational", "require \"relational\";\nif header :value \"big\" \"a\" \"1\" { keep; }", `2:18: header: :value needs a relational operator`},
		{"empty string list", "if header [] \"b\" { keep; }", `1:11: empty string list`},
		{"if without block", "if true;", `1:1: if needs a block`},
		{"block on keep", "keep { discard; }", `1:1: keep takes no block`},
		{"test list for if", "if (true) { keep; }", `1:5: if takes one test, not a test list`},
		{"unclosed block", "if true { keep;", `1:16: expected '}' to close the block opened at 1:9`},
		{"stray brace", "keep; }", `1:7: unexpected '}'`},
		{"bad character", "keep; @", `1:7: unexpected character '@'`},
		{"bad redirect address", "redirect \"not an address\";", `1:10: redirect: "not an address" is not a valid mail address`},
		{"bad header name", "if exists \"bad name:\" { keep; }", `1:11: exists: "bad name:" is not a valid header field name`},
		{"size without over", "if size 10 { keep; }", `1:4: size needs :over or :under`},
		{"tag after positional", "require \"fileinto\";\nfileinto \"x\" :copy;", `2:14: fileinto: tag :copy after positional arguments`},
		{"set match variable", "require \"variables\";\nset \"1\" \"x\";", `2:5: set: cannot assign the match variable ${1}`},
		{"bad date part", "require \"date\";\nif currentdate :is \"fortnight\" \"1\" { keep; }", `2:20: currentdate: unknown date part "fortnight"`},
		{"bad zone", "require \"date\";\nif currentdate :zone \"CET\" :is \"hour\" \"1\" { keep; }", `2:22: currentdate: :zone "CET" is not a zone like +0100`},
		{"index last without index", "require \"index\";\nif header :last :is \"a\" \"b\" { keep; }", `2:4: header: :last needs :index`},
		{"bad unicode", "require \"encoded-character\";\nkeep;\nredirect \"${unicode:D800}@x.example\";", `3:10: encoded character U+D800`},
		{"include path", "require \"include\";\ninclude \"../etc/passwd\";", `2:9: include: a script name cannot hold '/'`},
		{"text: garbage", "require \"reject\";\nreject text: x\n.\n;", `2:14: text: must be followed by the end of the line`},
		{"tag needs argument", "require \"vacation\";\nvacation :days \"x\" \"away\";", `2:10: vacation: tag :days needs a number argument`},
		{"duplicate tag", "require [\"fileinto\", \"copy\"];\nfileinto :copy :copy \"x\";", `2:16: fileinto: tag :copy given twice`},
		{"global without variables", "require \"include\";\nglobal \"x\";", `2:1: global: missing require "variables"`},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.script), Options{})
			if err == nil {
				t.Fatalf("parsed %q, want error %q", c.script, c.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, not *ParseError", err, err)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error\n %q\nwant prefix\n %q", err, c.want)
			}
			if pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("no position: %+v", pe)
			}
		})
		seen[c.want] = true
	}
	if len(seen) < 15 {
		t.Fatalf("only %d distinct errors", len(seen))
	}
}

// TestDisabledExtension: Options.Extensions limits what may be required.
func TestDisabledExtension(t *testing.T) {
	opt := Options{Extensions: []string{"fileinto"}}
	if _, err := Parse([]byte(`require "fileinto"; fileinto "x";`), opt); err != nil {
		t.Fatal(err)
	}
	_, err := Parse([]byte(`require ["fileinto", "vacation"];`), opt)
	if err == nil || !strings.Contains(err.Error(), `extension "vacation" is not enabled`) {
		t.Fatalf("got %v", err)
	}
}

// TestCRLFScript: a script uploaded with CRLF line ends parses the same,
// multi-line strings included.
func TestCRLFScript(t *testing.T) {
	src := "require \"reject\";\r\nif true {\r\n  reject text:\r\nline one\r\n..dot\r\n.\r\n;\r\n}\r\n"
	s, err := Parse([]byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, s, &Env{Message: []byte("From: a@b.example\n\nx\n")})
	r, ok := res.Actions[0].(Reject)
	if !ok || r.Reason != "line one\n.dot\n" {
		t.Fatalf("got %#v", res.Actions)
	}
}
