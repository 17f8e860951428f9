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
		// RFC 5463 ihave.
		{"ihave without require", "if ihave \"fileinto\" { keep; }", `1:4: ihave: missing require "ihave"`},
		{"ihave scope ends", "require \"ihave\";\nif ihave \"fileinto\" { fileinto \"a\"; }\nfileinto \"b\";", `3:1: fileinto: missing require "fileinto"`},
		{"ihave true block checked", "require \"ihave\";\nif ihave \"fileinto\" {\n  fileinto :bogus \"a\";\n}", `3:12: fileinto: unknown tag :bogus`},
		{"ihave false block grammar", "require \"ihave\";\nif ihave \"vnd.x\" { frob [\"a\" \"b\"]; }", `2:30: expected ',' or ']' in the string list`},
		{"error without require", "error \"x\";", `1:1: error: missing require "ihave"`},
		{"error needs string", "require \"ihave\";\nerror;", `2:1: error: needs 1 argument(s) (string), found 0`},
		// RFC 5703 mime, foreverypart, extracttext.
		{"anychild without mime", "require \"mime\";\nif header :anychild \"a\" \"b\" { keep; }", `2:4: header: :anychild needs :mime`},
		{"type without mime", "require \"mime\";\nif header :type \"content-type\" \"text\" { keep; }", `2:4: header: :type needs :mime`},
		{"two mime options", "require \"mime\";\nif header :mime :type :subtype \"content-type\" \"text\" { keep; }", `2:23: header: tags :type and :subtype cannot be used together`},
		{"param needs list", "require \"mime\";\nif header :mime :param 13 \"content-type\" \"x\" { keep; }", `2:17: header: tag :param needs a string list argument`},
		{"mime without require", "if header :mime \"a\" \"b\" { keep; }", `1:11: header: tag :mime needs require "mime"`},
		{"type on address", "require \"mime\";\nif address :mime :type \"from\" \"x\" { keep; }", `2:18: address: unknown tag :type`},
		{"break outside loop", "require \"foreverypart\";\nif true { break; }", `2:11: break outside a foreverypart loop`},
		{"break unknown name", "require \"foreverypart\";\nforeverypart :name \"a\" {\n  foreverypart :name \"b\" { break :name \"c\"; }\n}", `3:40: break: no enclosing foreverypart loop is named "c"`},
		{"break bare string", "require \"foreverypart\";\nforeverypart { break \"frop\"; }", `2:16: break: takes no positional argument, found 1`},
		{"foreverypart too deep", "require \"foreverypart\";\nforeverypart { foreverypart { foreverypart { foreverypart {\n foreverypart { break; } } } } }", `3:2: foreverypart: loops nested more than 4 deep`},
		{"foreverypart no block", "require \"foreverypart\";\nforeverypart;", `2:1: foreverypart needs a block`},
		{"extracttext outside loop", "require [\"foreverypart\", \"extracttext\", \"variables\"];\nextracttext \"x\";", `2:1: extracttext outside a foreverypart loop`},
		{"extracttext without variables", "require [\"foreverypart\", \"extracttext\"];\nforeverypart { extracttext \"x\"; }", `2:16: extracttext: missing require "variables"`},
		{"extracttext bad name", "require [\"foreverypart\", \"extracttext\", \"variables\"];\nforeverypart {\n  extracttext \"1\"; }", `3:15: extracttext: cannot assign the match variable ${1}`},
		// RFC 5435 enotify.
		{"notify unsupported method", "require \"enotify\";\nnotify \"tel:+14085551212\";", `2:8: notify: unsupported notification method "tel"`},
		{"notify bad mailto", "require \"enotify\";\nnotify \"mailto:not an address\";", `2:8: notify: mailto: "not an address" is not a mail address`},
		{"notify bad escape", "require \"enotify\";\nnotify \"mailto:a@example.com?subject=%zz\";", `2:8: notify: mailto: bad percent-encoding`},
		{"notify header injection", "require \"enotify\";\nnotify \"mailto:a@example.com?subject=a%0D%0ABcc:x@y.example\";", `2:8: notify: mailto: the value of subject holds a line break`},
		{"notify too many recipients", "require \"enotify\";\nnotify \"mailto:a@x.example,b@x.example,c@x.example,d@x.example,e@x.example,f@x.example,g@x.example,h@x.example,i@x.example\";", `2:8: notify: mailto: more than 8 recipients`},
		{"notify importance", "require \"enotify\";\nnotify :importance \"4\" \"mailto:a@example.com\";", `2:20: notify: :importance "4" must be "1", "2" or "3"`},
		{"notify from", "require \"enotify\";\nnotify :from \"nobody\" \"mailto:a@example.com\";", `2:14: notify: :from "nobody" is not a valid mail address`},
		{"notify options", "require \"enotify\";\nnotify :options [\"a=b\", \"=x\"] \"mailto:a@example.com\";", `2:17: notify: :options "=x" is not name=value`},
		{"notify not a uri", "require \"enotify\";\nnotify \"alm@example.com\";", `2:8: notify: "alm@example.com" is not a URI`},
		{"encodeurl without enotify", "require \"variables\";\nset :encodeurl \"a\" \"b\";", `2:5: set: tag :encodeurl needs require "enotify"`},
		{"capability args", "require \"enotify\";\nif notify_method_capability \"mailto:a@example.com\" \"online\" { keep; }", `2:4: notify_method_capability: needs 3 argument(s)`},
		// RFC 8579 special-use, RFC 9042 mailboxid.
		{"specialuse without require", "require \"fileinto\";\nfileinto :specialuse \"\\\\Junk\" \"Spam\";", `2:10: fileinto: tag :specialuse needs require "special-use"`},
		{"specialuse bad attr", "require [\"fileinto\", \"special-use\"];\nfileinto :specialuse \"\\\\Ju nk\" \"Spam\";", `2:22: fileinto: :specialuse "\\Ju nk" is not a special-use attribute`},
		{"specialuse_exists bad attr", "require \"special-use\";\nif specialuse_exists \"INBOX\" [\"\\\\Junk\", \"Junk\"] { keep; }", `2:30: specialuse_exists: "Junk" is not a special-use attribute`},
		{"mailboxid bad id", "require [\"fileinto\", \"mailboxid\"];\nfileinto :mailboxid \"a/b\" \"x\";", `2:21: fileinto: :mailboxid "a/b" is not a mailbox id`},
		{"mailboxidexists without require", "if mailboxidexists \"F1\" { keep; }", `1:4: mailboxidexists: missing require "mailboxid"`},
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
