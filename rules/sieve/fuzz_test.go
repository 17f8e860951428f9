package sieve

import (
	"context"
	"errors"
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
		}
	}
	if keeps > 1 || rejects > 1 || rejects == 1 && (deliveries > 0 || keeps > 0) {
		t.Fatalf("conflicting actions: %v", res.Actions)
	}
	if len(res.Actions) > DefaultMaxActions+2 {
		t.Fatalf("%d actions", len(res.Actions))
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

// FuzzExecute runs arbitrary scripts over arbitrary messages.
func FuzzExecute(f *testing.F) {
	f.Add([]byte("require [\"body\", \"fileinto\"]; if body :text :contains \"hello\" { fileinto \"x\"; }"), []byte(fuzzMessage))
	f.Add([]byte("require [\"editheader\", \"date\"]; deleteheader :index 1 \"to\"; addheader \"X\" \"y\"; if date :is \"date\" \"year\" \"2024\" { keep; }"), []byte(fuzzMessage))
	f.Add([]byte("require [\"vacation\", \"duplicate\"]; if not duplicate { vacation \"away\"; }"), []byte("To: bob@example.net\nFrom: c@d.example\n\nx"))
	f.Add([]byte("require [\"include\", \"spamtest\"]; include :optional \"b\"; if spamtest :is \"7\" { discard; }"), []byte("\n\n"))
	f.Fuzz(func(t *testing.T, src, msg []byte) {
		s, err := Parse(src, Options{MaxSteps: 20000})
		if err != nil {
			return
		}
		checkRun(t, s, msg)
	})
}
