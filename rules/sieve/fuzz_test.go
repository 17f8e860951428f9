package sieve

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fuzzMessage = "From: \"A\" <a@example.org>\nTo: bob+x@example.net\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= hello\nDate: Sat, 9 Mar 2024 22:10:00 -0800\nMessage-ID: <f@example.org>\nX-Spam-Score: 7\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello world\n--b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n"

// fuzzEnv runs scripts under tight bounds with a real Store and a Loader
// that has two scripts, one of which includes itself.
func fuzzEnv(msg []byte) *Env {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	return &Env{
		Message: msg, From: "a@example.org", To: "bob+x@example.net", User: "bob", Now: now,
		Addresses: []string{"bob@example.net"}, Store: newMemStore(func() time.Time { return now }),
		Loader:        mapLoader{"a": "require \"include\"; include \"a\";", "b": "keep;"},
		MailboxExists: func(name string) bool { return name == "INBOX" },
	}
}

type mapLoader map[string]string

func (m mapLoader) Load(global bool, name string) ([]byte, error) {
	if s, ok := m[name]; ok {
		return []byte(s), nil
	}
	return nil, ErrNotFound
}

// checkRun runs a parsed script and checks what every run must keep: an
// error is a *RuntimeError, and the actions obey RFC 5228 and RFC 5429.
func checkRun(t *testing.T, s *Script, msg []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Execute(ctx, fuzzEnv(msg))
	if err != nil {
		var re *RuntimeError
		if !errors.As(err, &re) {
			t.Fatalf("run error %v is %T, not *RuntimeError", err, err)
		}
		return
	}
	keeps, rejects, deliveries := 0, 0, 0
	for i, a := range res.Actions {
		switch a := a.(type) {
		case Keep:
			keeps++
			if a.Implicit && i != len(res.Actions)-1 {
				t.Fatalf("implicit keep is not last: %v", res.Actions)
			}
		case Reject:
			rejects++
		case FileInto, Redirect, Vacation:
			deliveries++
		case Notify:
			checkNotifyMail(t, a)
		}
	}
	if keeps > 1 || rejects > 1 || rejects == 1 && (deliveries > 0 || keeps > 0) {
		t.Fatalf("conflicting actions: %v", res.Actions)
	}
	if len(res.Actions) > DefaultMaxActions+2 {
		t.Fatalf("%d actions", len(res.Actions))
	}
}

// checkNotifyMail builds a notification the run produced: it must be a
// message with CRLF line ends, Auto-Submitted first, to at most the
// bounded number of recipients.
func checkNotifyMail(t *testing.T, n Notify) {
	rcpts, msg, err := n.Mail(time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC), "bob@example.net")
	if err != nil {
		t.Fatalf("notify %v from a successful run: %v", n, err)
	}
	if len(rcpts) == 0 || len(rcpts) > maxNotifyRecipients {
		t.Fatalf("notify %v: %d recipients", n, len(rcpts))
	}
	if !bytes.HasPrefix(msg, []byte("Auto-Submitted: auto-notified;")) || bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("notification:\n%q", msg)
	}
}

// FuzzParse feeds arbitrary scripts to the lexer, parser and validator,
// and runs what parses: nothing may panic or hang, a parse error is a
// *ParseError with a position.
func FuzzParse(f *testing.F) {
	f.Add([]byte("require [\"fileinto\", \"variables\"];\nif header :matches \"subject\" \"*\" { fileinto \"${1}\"; }"))
	f.Add([]byte("require \"reject\";\nreject text:\n..x\n.\n;"))
	f.Add([]byte("if anyof(not exists \"x\", size :over 1K) { discard; } else { keep; }"))
	f.Add([]byte("/* c */ # x\nrequire \"encoded-character\"; redirect \"${hex:61}@${unicode:62}.example\";"))
	f.Add([]byte("require \"ihave\";\nif ihave \"vnd.x\" { frob :x [\"a\"] 3 { y; } } elsif ihave \"fileinto\" { fileinto \"a\"; } else { error \"no\"; }"))
	f.Add([]byte("require [\"foreverypart\", \"mime\", \"extracttext\", \"variables\"];\nforeverypart :name \"a\" { if header :mime :anychild :param \"name\" \"content-type\" \"x\" { extracttext :first 3 \"t\"; break :name \"a\"; } }"))
	f.Add([]byte("require [\"enotify\", \"variables\"];\nset :encodeurl \"b\" \"a&b\";\nif valid_notify_method \"mailto:a@example.com\" { notify :importance \"1\" :from \"b@example.com\" :options [\"k=v\"] :message \"m\" \"mailto:a@example.com?body=${b}&cc=c@example.com\"; }"))
	f.Add([]byte("require [\"fileinto\", \"special-use\", \"mailboxid\", \"mailbox\"];\nif specialuse_exists \"INBOX\" \"\\\\Junk\" { fileinto :specialuse \"\\\\Junk\" :create :mailboxid \"F1\" \"Spam\"; } if mailboxidexists \"F1\" { keep; }"))
	addCaseSeeds(f, false)
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Parse(src, Options{MaxSteps: 20000})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("parse error %v is not a positioned *ParseError", err)
			}
			return
		}
		checkRun(t, s, []byte(fuzzMessage))
	})
}

// addCaseSeeds adds the scripts of testdata/cases as seeds, with their
// messages when withMessage: every extension's syntax is there to mutate.
func addCaseSeeds(f *testing.F, withMessage bool) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cases", "*", "*.txt"))
	for _, file := range files {
		tc := readCase(f, file)
		script := []byte(tc.sections["script"])
		if !withMessage {
			f.Add(script)
			continue
		}
		msg := []byte(tc.sections["message"])
		for _, line := range strings.Split(tc.sections["env"], "\n") {
			if name, ok := strings.CutPrefix(line, "message: "); ok {
				msg, _ = os.ReadFile(filepath.Join("testdata", "msg", strings.TrimSpace(name)))
			}
		}
		f.Add(script, msg)
	}
}

// FuzzExecute runs arbitrary scripts over arbitrary messages.
func FuzzExecute(f *testing.F) {
	f.Add([]byte("require [\"body\", \"fileinto\"]; if body :text :contains \"hello\" { fileinto \"x\"; }"), []byte(fuzzMessage))
	f.Add([]byte("require [\"editheader\", \"date\"]; deleteheader :index 1 \"to\"; addheader \"X\" \"y\"; if date :is \"date\" \"year\" \"2024\" { keep; }"), []byte(fuzzMessage))
	f.Add([]byte("require [\"vacation\", \"duplicate\"]; if not duplicate { vacation \"away\"; }"), []byte("To: bob@example.net\nFrom: c@d.example\n\nx"))
	f.Add([]byte("require [\"include\", \"spamtest\"]; include :optional \"b\"; if spamtest :is \"7\" { discard; }"), []byte("\n\n"))
	f.Add([]byte("require [\"foreverypart\", \"mime\", \"extracttext\", \"variables\", \"fileinto\"]; foreverypart { foreverypart { extracttext \"t\"; if header :mime :type \"content-type\" \"text\" { fileinto \"${t}\"; } } }"), []byte(fuzzMessage))
	f.Add([]byte("require [\"mime\", \"fileinto\"]; if exists :mime :anychild \"content-disposition\" { fileinto \"a\"; }"), []byte("Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n\nContent-Type: multipart/digest; boundary=y\n\n--y\n\nX: y\n--x--"))
	f.Add([]byte("require [\"enotify\", \"variables\"]; if header :matches \"from\" \"*\" { notify :message \"${1}\" \"mailto:a@example.com,b@example.com\"; notify \"mailto:b@example.com\"; }"), []byte("From: x@example.org\nSubject: s\n\nbody"))
	addCaseSeeds(f, true)
	f.Fuzz(func(t *testing.T, src, msg []byte) {
		s, err := Parse(src, Options{MaxSteps: 20000})
		if err != nil {
			return
		}
		checkRun(t, s, msg)
	})
}

// FuzzMailto parses arbitrary notification URIs and builds their
// notifications: nothing may panic; a URI that parses gives a message
// whose header cannot be split by the URI's values.
func FuzzMailto(f *testing.F) {
	f.Add("mailto:a@example.com")
	f.Add("mailto:0123456789@sms.example.net?to=backup@example.com")
	f.Add("mailto:?to=a@example.com&cc=b@example.com,c@example.com&subject=%E2%82%AC&body=x%0D%0Ay")
	f.Add("mailto:a@example.com?x-a=b&keywords=k&from=f@example.org&received=r")
	f.Add("tel:+14085551212")
	f.Fuzz(func(t *testing.T, uri string) {
		u, err := parseNotifyMethod(uri)
		if err != nil {
			return
		}
		if len(u.to)+len(u.cc) > maxNotifyRecipients || len(u.headers) > maxNotifyHeaders {
			t.Fatalf("%q: %d recipients, %d fields", uri, len(u.to)+len(u.cc), len(u.headers))
		}
		rcpts, msg, err := Notify{Method: uri, Importance: "2"}.Mail(time.Unix(0, 0), "bob")
		if len(u.to)+len(u.cc) == 0 {
			if err == nil {
				t.Fatalf("%q: a notification to nobody", uri)
			}
			return
		}
		if err != nil || len(rcpts) == 0 {
			t.Fatalf("%q: %v", uri, err)
		}
		head, _, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("%q: no header end in %q", uri, msg)
		}
		for _, line := range bytes.Split(head, []byte("\r\n")) {
			if len(line) == 0 || bytes.ContainsAny(line, "\r\n") || line[0] != ' ' && line[0] != '\t' && bytes.IndexByte(line, ':') <= 0 {
				t.Fatalf("%q: bad header line %q", uri, line)
			}
		}
	})
}

// FuzzMIMETree builds the MIME part tree of arbitrary messages: the parts
// are in pre-order with sane bounds, and foreverypart with the :mime tests
// and extracttext runs over them.
func FuzzMIMETree(f *testing.F) {
	f.Add([]byte(fuzzMessage))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/alternative; boundary=b\n\n--b\n\nx\n--b--\n--a\nContent-Type: message/rfc822\n\nSubject: in\n\ny\n--a--\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"never\"\n\n--other\n\nx"))
	f.Add([]byte("Content-Type: text/plain; title*0*=us-ascii'en'a%20b; title*1=c;\n\nz"))
	script := mustParseFuzz(f, "require [\"foreverypart\", \"mime\", \"extracttext\", \"variables\", \"fileinto\"];\n"+
		"foreverypart { extracttext :first 10 \"t\"; if header :mime :anychild :param [\"boundary\", \"title\"] \"content-type\" \"*\" { fileinto \"x\"; }\n"+
		"foreverypart { if exists :mime :anychild \"subject\" { break; } } }")
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := &run{ctx: context.Background(), env: &Env{Message: raw}, opt: Options{}.withDefaults(), msg: newMessage(raw)}
		parts, err := r.tree(Pos{})
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) == 0 || len(parts) > maxBodyParts || parts[0].end != len(parts) {
			t.Fatalf("%d parts, root ends at %d", len(parts), parts[0].end)
		}
		for i, p := range parts {
			if p.end <= i || p.end > len(parts) || p.depth > maxBodyDepth {
				t.Fatalf("part %d: end %d depth %d of %d", i, p.end, p.depth, len(parts))
			}
			for j := i + 1; j < p.end; j++ {
				if parts[j].depth <= p.depth || parts[j].end > p.end {
					t.Fatalf("part %d is not inside part %d", j, i)
				}
			}
		}
		checkRun(t, script, raw)
	})
}

func mustParseFuzz(f *testing.F, src string) *Script {
	s, err := Parse([]byte(src), Options{MaxSteps: 20000})
	if err != nil {
		f.Fatal(err)
	}
	return s
}
