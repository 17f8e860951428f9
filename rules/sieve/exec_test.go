package sieve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
)

func mustParse(t testing.TB, src string) *Script {
	t.Helper()
	s, err := Parse([]byte(src), Options{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

func mustRun(t testing.TB, s *Script, env *Env) *Result {
	t.Helper()
	res, err := s.Execute(context.Background(), env)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res
}

const vacationMsg = "From: Coyote <coyote@desert.example.org>\r\nTo: bob@example.net\r\nSubject: birdseed\r\nMessage-ID: <seed.1@desert.example.org>\r\nReferences: <older@desert.example.org>\r\n\r\nHello.\r\n"

// TestVacationPeriod: a reply, none again within :days (the Store
// remembers), and one again after the period ends (RFC 5230 4.2).
func TestVacationPeriod(t *testing.T) {
	s := mustParse(t, `require "vacation"; vacation :days 3 "I am away.";`)
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	store := newMemStore(func() time.Time { return now })
	env := func() *Env {
		return &Env{Message: []byte(vacationMsg), From: "coyote@desert.example.org", To: "bob@example.net",
			User: "bob", Now: now, Store: store}
	}
	countVacations := func(res *Result) int {
		n := 0
		for _, a := range res.Actions {
			if _, ok := a.(Vacation); ok {
				n++
			}
		}
		return n
	}
	if n := countVacations(mustRun(t, s, env())); n != 1 {
		t.Fatalf("first message: %d vacation actions, want 1", n)
	}
	now = now.Add(2 * 24 * time.Hour)
	if n := countVacations(mustRun(t, s, env())); n != 0 {
		t.Fatalf("within the period: %d vacation actions, want 0", n)
	}
	// Another sender is answered at once.
	other := env()
	other.From = "roadrunner@acme.example.com"
	if n := countVacations(mustRun(t, s, other)); n != 1 {
		t.Fatalf("other sender: %d vacation actions, want 1", n)
	}
	now = now.Add(25 * time.Hour) // 3 days and 1 hour after the first reply
	if n := countVacations(mustRun(t, s, env())); n != 1 {
		t.Fatalf("after the period: %d vacation actions, want 1", n)
	}
}

// TestVacationHandle: another :handle is another reply; the same handle
// within the period is not.
func TestVacationHandle(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	store := newMemStore(func() time.Time { return now })
	run := func(src string) int {
		res := mustRun(t, mustParse(t, src), &Env{Message: []byte(vacationMsg), From: "coyote@desert.example.org",
			To: "bob@example.net", User: "bob", Now: now, Store: store})
		return len(res.Actions) - 1 // minus the implicit keep
	}
	if run(`require "vacation"; vacation :handle "a" "one";`) != 1 {
		t.Fatal("first handle not answered")
	}
	if run(`require "vacation"; vacation :handle "b" "two";`) != 1 {
		t.Fatal("second handle not answered")
	}
	if run(`require "vacation"; vacation :handle "a" "one, edited";`) != 0 {
		t.Fatal("same handle answered twice")
	}
}

// TestVacationReply: the reply message of RFC 5230 section 5.
func TestVacationReply(t *testing.T) {
	s := mustParse(t, `require "vacation"; vacation :from "Bob Smith <bob@example.net>" "Ich bin im Urlaub. Grüße";`)
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	res := mustRun(t, s, &Env{Message: []byte(vacationMsg), From: "coyote@desert.example.org", To: "bob@example.net", Now: now})
	v, ok := res.Actions[0].(Vacation)
	if !ok {
		t.Fatalf("actions %v", res.Actions)
	}
	if v.To != "coyote@desert.example.org" || v.Days != 7*24*time.Hour || v.Subject != "Auto: birdseed" {
		t.Fatalf("vacation %+v", v)
	}
	reply := v.Reply(now)
	e, err := gomessage.Read(bytes.NewReader(reply))
	if err != nil {
		t.Fatalf("reply does not parse: %v\n%s", err, reply)
	}
	h := e.Header
	checks := map[string]string{
		"From":           "Bob Smith <bob@example.net>",
		"To":             "coyote@desert.example.org",
		"Subject":        "Auto: birdseed",
		"Auto-Submitted": "auto-replied (vacation)",
		"In-Reply-To":    "<seed.1@desert.example.org>",
		"References":     "<older@desert.example.org> <seed.1@desert.example.org>",
		"Date":           "Sun, 10 Mar 2024 12:00:00 +0000",
	}
	for k, want := range checks {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !strings.HasSuffix(h.Get("Message-ID"), "@example.net>") {
		t.Errorf("Message-ID %q", h.Get("Message-ID"))
	}
	body, _ := io.ReadAll(e.Body)
	if string(body) != "Ich bin im Urlaub. Grüße" {
		t.Errorf("body %q", body)
	}
	if !bytes.Contains(reply, []byte("\r\n\r\n")) || bytes.Contains(bytes.ReplaceAll(reply, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("reply line ends are not all CRLF:\n%q", reply)
	}
}

// TestVacationMIME: with :mime the reason is a whole MIME entity.
func TestVacationMIME(t *testing.T) {
	s := mustParse(t, "require \"vacation\";\nvacation :mime text:\nContent-Type: text/html; charset=utf-8\n\n<p>Away</p>\n.\n;\n")
	res := mustRun(t, s, &Env{Message: []byte(vacationMsg), From: "coyote@desert.example.org", To: "bob@example.net"})
	reply := res.Actions[0].(Vacation).Reply(time.Now())
	e, err := gomessage.Read(bytes.NewReader(reply))
	if err != nil {
		t.Fatal(err)
	}
	if ct, _, _ := e.Header.ContentType(); ct != "text/html" {
		t.Fatalf("content type %q\n%s", ct, reply)
	}
}

// TestDuplicate: the second delivery of a Message-ID is a duplicate
// (RFC 7352); a failed run records nothing.
func TestDuplicate(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	store := newMemStore(func() time.Time { return now })
	s := mustParse(t, `require ["duplicate", "fileinto"]; if duplicate :seconds 3600 { fileinto "Dups"; }`)
	env := func() *Env { return &Env{Message: []byte(vacationMsg), User: "bob", Now: now, Store: store} }
	first := actionStrings(mustRun(t, s, env()).Actions)
	if len(first) != 1 || first[0] != "implicit keep" {
		t.Fatalf("first: %v", first)
	}
	second := actionStrings(mustRun(t, s, env()).Actions)
	if len(second) != 1 || second[0] != "fileinto Dups" {
		t.Fatalf("second: %v", second)
	}
	now = now.Add(2 * time.Hour)
	if got := actionStrings(mustRun(t, s, env()).Actions); got[0] != "implicit keep" {
		t.Fatalf("after expiry: %v", got)
	}
	// Another user's store key differs.
	other := env()
	other.User = "alice"
	if got := actionStrings(mustRun(t, s, other).Actions); got[0] != "implicit keep" {
		t.Fatalf("other user: %v", got)
	}

	keys := len(store.keys)
	failing := mustParse(t, `require ["duplicate", "reject"]; if duplicate :handle "f" { discard; } keep; reject "x";`)
	if _, err := failing.Execute(context.Background(), env()); err == nil {
		t.Fatal("conflicting run did not fail")
	}
	if _, err := failing.Execute(context.Background(), env()); err == nil {
		t.Fatal("conflicting run did not fail")
	}
	if len(store.keys) != keys {
		t.Fatalf("a failed run wrote to the store: %d keys, was %d", len(store.keys), keys)
	}
}

// TestLimits: hostile scripts end with errors, not crashes or hangs.
func TestLimits(t *testing.T) {
	msg := []byte("From: a@example.org\nTo: bob@example.net\nSubject: x\n\nbody\n")

	t.Run("10000 nested blocks", func(t *testing.T) {
		src := strings.Repeat("if true {\n", 10000) + "keep;\n" + strings.Repeat("}\n", 10000)
		_, err := Parse([]byte(src), Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "nesting too deep") || pe.Line != 33 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("10000 nested tests", func(t *testing.T) {
		src := "if " + strings.Repeat("not ", 10000) + "true { keep; }"
		if _, err := Parse([]byte(src), Options{}); err == nil || !strings.Contains(err.Error(), "nesting too deep") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("huge script", func(t *testing.T) {
		src := "require \"fileinto\";\nfileinto \"" + strings.Repeat("x", 2<<20) + "\";"
		if _, err := Parse([]byte(src), Options{}); err == nil || !strings.Contains(err.Error(), "over the limit") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("string doubling", func(t *testing.T) {
		src := "require \"variables\";\nset \"a\" \"xxxxxxxxxxxxxxxx\";\n" + strings.Repeat("set \"a\" \"${a}${a}\";\n", 40)
		_, err := mustParse(t, src).Execute(context.Background(), &Env{Message: msg})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "variable \"a\" would hold") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("include fan-out", func(t *testing.T) {
		// Each level includes the next twice: 2^9 runs of the leaf.
		scripts := map[string]string{"s9": "keep;\n"}
		for i := 0; i < 9; i++ {
			scripts[fmt.Sprintf("s%d", i)] = fmt.Sprintf("require \"include\";\ninclude \"s%d\";\ninclude \"s%d\";\n", i+1, i+1)
		}
		_, err := mustParse(t, "require \"include\";\ninclude \"s0\";").Execute(context.Background(), &Env{Message: msg, Loader: writeScripts(t, scripts)})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 255 includes") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("include depth", func(t *testing.T) {
		scripts := map[string]string{}
		for i := 0; i < 20; i++ {
			scripts[fmt.Sprintf("d%d", i)] = fmt.Sprintf("require \"include\"; include \"d%d\";", i+1)
		}
		_, err := mustParse(t, `require "include"; include "d0";`).Execute(context.Background(), &Env{Message: msg, Loader: writeScripts(t, scripts)})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "nested more than 10 deep") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("steps", func(t *testing.T) {
		src := "require \"variables\";\n" + strings.Repeat("if header :matches \"subject\" [\"*a*\", \"*b*\", \"*c*\"] { set \"x\" \"1\"; }\n", 2000)
		s, err := Parse([]byte(src), Options{MaxSteps: 5000})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Execute(context.Background(), &Env{Message: msg})
		var re *RuntimeError
		if !errors.As(err, &re) || !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 5000 steps") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("matches on a big body", func(t *testing.T) {
		big := []byte("Subject: x\n\n" + strings.Repeat("a", 1<<20) + "\n")
		s, err := Parse([]byte(`require "body"; if body :raw :matches "*a*a*a*a*a*b*" { discard; }`), Options{MaxSteps: 1000})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = s.Execute(context.Background(), &Env{Message: big})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 1000 steps") {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
		// With the default budget the same match completes: no match.
		res := mustRun(t, mustParse(t, `require "body"; if body :raw :matches "*a*a*a*a*a*b*" { discard; }`), &Env{Message: big})
		if res.Actions[0].String() != "implicit keep" {
			t.Fatalf("got %v", res.Actions)
		}
	})
	t.Run("regex on a big body", func(t *testing.T) {
		big := []byte("Subject: x\n\n" + strings.Repeat("ab", 1<<19) + "\n")
		s, err := Parse([]byte(`require ["body", "regex"]; if body :raw :regex "(a|b|c|d|e)*(x|y){1,50}" { discard; }`), Options{MaxSteps: 10000})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Execute(context.Background(), &Env{Message: big})
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("many header fields", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 10000; i++ {
			fmt.Fprintf(&b, "X-F%d: v\n", i)
		}
		b.WriteString("\nbody\n")
		src := strings.Repeat("if exists \"x-none\" { discard; }\n", 500)
		s, err := Parse([]byte(src), Options{MaxSteps: 100000})
		if err != nil {
			t.Fatal(err)
		}
		// 500 scans of 10,000 fields cost more than 100,000 steps.
		if _, err := s.Execute(context.Background(), &Env{Message: []byte(b.String())}); !errors.Is(err, ErrLimit) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("many flags", func(t *testing.T) {
		var flags strings.Builder
		for i := 0; flags.Len() < 60000; i++ {
			fmt.Fprintf(&flags, "f%d ", i)
		}
		src := "require [\"imap4flags\", \"variables\"];\nset \"all\" \"" + flags.String() + "\";\n" +
			strings.Repeat("addflag \"${all}\";\nremoveflag \"f1\";\n", 20)
		start := time.Now()
		res := mustRun(t, mustParse(t, src), &Env{Message: msg})
		if k := res.Actions[0].(Keep); len(k.Flags) < 9000 {
			t.Fatalf("%d flags", len(k.Flags))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("redirects", func(t *testing.T) {
		src := ""
		for i := 0; i < 5; i++ {
			src += fmt.Sprintf("redirect \"r%d@example.com\";\n", i)
		}
		_, err := mustParse(t, src).Execute(context.Background(), &Env{Message: msg})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "5:1: runtime error") || !strings.Contains(err.Error(), "more than 4 redirects") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("actions", func(t *testing.T) {
		src := "require \"fileinto\";\n"
		for i := 0; i < 40; i++ {
			src += fmt.Sprintf("fileinto \"f%d\";\n", i)
		}
		_, err := mustParse(t, src).Execute(context.Background(), &Env{Message: msg})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 32 actions") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		src := strings.Repeat("if header :contains \"subject\" \"zzz\" { discard; }\n", 3000)
		_, err := mustParse(t, src).Execute(ctx, &Env{Message: msg})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestRuntimeRedirectAddress: an address computed at run time is checked.
func TestRuntimeRedirectAddress(t *testing.T) {
	s := mustParse(t, "require \"variables\";\nset \"to\" \"not an address\";\nredirect \"${to}\";")
	_, err := s.Execute(context.Background(), &Env{Message: []byte("From: a@b.example\n\nx")})
	var re *RuntimeError
	if !errors.As(err, &re) || re.Line != 3 || !strings.Contains(err.Error(), "not a valid mail address") {
		t.Fatalf("got %v", err)
	}
}

// TestExtensions: the capability list is sorted and every name can be
// required.
func TestExtensions(t *testing.T) {
	exts := Extensions()
	if !sort.StringsAreSorted(exts) || len(exts) < 25 {
		t.Fatalf("extensions %v", exts)
	}
	for _, e := range exts {
		if _, err := Parse([]byte(fmt.Sprintf("require %q;", e)), Options{}); err != nil {
			t.Errorf("require %q: %v", e, err)
		}
	}
	s := mustParse(t, `require ["vacation-seconds", "fileinto"];`)
	if got := strings.Join(s.Requires(), ","); got != "fileinto,vacation,vacation-seconds" {
		t.Fatalf("requires %s", got)
	}
}

// TestScriptReuse: one Script runs concurrently over different messages.
func TestScriptReuse(t *testing.T) {
	s := mustParse(t, "require [\"fileinto\", \"variables\"];\nif header :matches \"subject\" \"box *\" { fileinto \"${1}\"; }")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				want := fmt.Sprintf("n%d-%d", i, j)
				res, err := s.Execute(context.Background(), &Env{Message: []byte("Subject: box " + want + "\n\nx")})
				if err != nil || res.Actions[0].String() != "fileinto "+want {
					t.Errorf("got %v %v, want %s", res, err, want)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

// writeScripts writes personal scripts into a temporary directory and
// returns a loader over it.
func writeScripts(t *testing.T, scripts map[string]string) Loader {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "personal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name+".sieve"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dirLoader{filepath.Dir(dir)}
}
