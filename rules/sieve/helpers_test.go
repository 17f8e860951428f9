package sieve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is a Store in memory with real expiry against a clock the test
// moves.
type memStore struct {
	mu   sync.Mutex
	now  func() time.Time
	keys map[string]time.Time // key -> expiry
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, keys: map[string]time.Time{}}
}

func (s *memStore) Seen(key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.keys[key]
	return ok && s.now().Before(exp), nil
}

func (s *memStore) Record(key string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[key] = s.now().Add(ttl)
	return nil
}

// dirLoader loads included scripts from files on disk: DIR/personal/NAME.sieve
// and DIR/global/NAME.sieve, as the delivery agent's loader will.
type dirLoader struct{ dir string }

func (l dirLoader) Load(global bool, name string) ([]byte, error) {
	sub := "personal"
	if global {
		sub = "global"
	}
	return os.ReadFile(filepath.Join(l.dir, sub, name+".sieve"))
}

var _ = fs.ErrNotExist

// testCase is one file of testdata/cases: txtar-like sections
// "-- name --" holding the script, the message, the environment, the
// expected actions (one String() a line) or the expected error, and
// included scripts ("-- personal/NAME --", "-- global/NAME --").
type testCase struct {
	sections map[string]string
	order    []string
}

func readCase(t testing.TB, path string) testCase {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tc := testCase{sections: map[string]string{}}
	cur := ""
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		trim := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(trim, "-- ") && strings.HasSuffix(trim, " --") && len(trim) > 6 {
			cur = trim[3 : len(trim)-3]
			tc.order = append(tc.order, cur)
			tc.sections[cur] = ""
			continue
		}
		if cur != "" {
			tc.sections[cur] += line
		}
	}
	return tc
}

// env builds the Env of a case: "-- env --" holds "key: value" lines
// (from, to, origto, auth, user, addresses, now, host, domain, mailboxes,
// specialuse = MAILBOX=\Attr pairs, mailboxids = object ids,
// message = a file of testdata/msg).
func (tc testCase) env(t *testing.T) *Env {
	t.Helper()
	env := &Env{
		From: "sender@example.org", To: "bob@example.net", User: "bob",
		Now:  time.Date(2024, 3, 10, 14, 30, 0, 0, time.UTC),
		Host: "mx.example.net", Domain: "example.net",
	}
	msg, hasMsg := tc.sections["message"]
	for _, line := range strings.Split(tc.sections["env"], "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "from":
			env.From = v
		case "to":
			env.To = v
		case "origto":
			env.OrigTo = v
		case "auth":
			env.Auth = v
		case "user":
			env.User = v
		case "addresses":
			env.Addresses = strings.Fields(v)
		case "now":
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				t.Fatalf("env now: %v", err)
			}
			env.Now = tm
		case "mailboxes":
			set := map[string]bool{}
			for _, m := range strings.Fields(v) {
				set[m] = true
			}
			env.MailboxExists = func(name string) bool { return set[name] }
		case "specialuse":
			uses := map[[2]string]bool{}
			for _, pair := range strings.Fields(v) {
				mailbox, attr, _ := strings.Cut(pair, "=")
				uses[[2]string{mailbox, strings.ToLower(attr)}] = true
				uses[[2]string{"", strings.ToLower(attr)}] = true
			}
			env.SpecialUseExists = func(mailbox, attr string) bool { return uses[[2]string{mailbox, strings.ToLower(attr)}] }
		case "mailboxids":
			ids := map[string]bool{}
			for _, id := range strings.Fields(v) {
				ids[id] = true
			}
			env.MailboxIDExists = func(id string) bool { return ids[id] }
		case "message":
			b, err := os.ReadFile(filepath.Join("testdata", "msg", v))
			if err != nil {
				t.Fatal(err)
			}
			msg, hasMsg = string(b), true
		}
	}
	if !hasMsg {
		t.Fatal("case has no message")
	}
	env.Message = []byte(msg)
	return env
}

func actionStrings(as []Action) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// runCase parses and runs one case and checks the outcome.
func runCase(t *testing.T, path string) {
	tc := readCase(t, path)
	script, hasScript := tc.sections["script"]
	if !hasScript {
		t.Fatal("case has no script")
	}
	opt := Options{}
	if sep, ok := tc.sections["separators"]; ok {
		opt.SubaddressSeparators = strings.TrimSpace(sep)
	}
	s, err := Parse([]byte(script), opt)
	if want, ok := tc.sections["parse-error"]; ok {
		if err == nil {
			t.Fatalf("parsed, want parse error %q", strings.TrimSpace(want))
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *ParseError", err)
		}
		if got := err.Error(); !strings.HasPrefix(got, strings.TrimSpace(want)) {
			t.Fatalf("parse error %q, want prefix %q", got, strings.TrimSpace(want))
		}
		return
	}
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	env := tc.env(t)
	dir := t.TempDir()
	for _, name := range tc.order {
		if strings.HasPrefix(name, "personal/") || strings.HasPrefix(name, "global/") {
			p := filepath.Join(dir, name+".sieve")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(tc.sections[name]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	env.Loader = dirLoader{dir: dir}
	clock := env.Now
	env.Store = newMemStore(func() time.Time { return clock })
	res, err := s.Execute(context.Background(), env)
	if want, ok := tc.sections["error"]; ok {
		var re *RuntimeError
		if err == nil || !errors.As(err, &re) {
			t.Fatalf("got %v, %v; want runtime error containing %q", res, err, strings.TrimSpace(want))
		}
		if !strings.Contains(err.Error(), strings.TrimSpace(want)) {
			t.Fatalf("runtime error %q, want it to contain %q", err, strings.TrimSpace(want))
		}
		return
	}
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	got := actionStrings(res.Actions)
	want := splitLines(tc.sections["actions"])
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("actions:\n got  %q\n want %q", got, want)
	}
	if wantHdr, ok := tc.sections["edited"]; ok {
		if res.Message == nil {
			t.Fatal("message not edited")
		}
		head, _, _ := strings.Cut(strings.ReplaceAll(string(res.Message), "\r\n", "\n"), "\n\n")
		if strings.TrimSpace(head) != strings.TrimSpace(wantHdr) {
			t.Fatalf("edited header:\n%s\nwant:\n%s", head, wantHdr)
		}
	}
}

// TestCases runs every case in testdata/cases: one directory per
// extension, one file per script and message.
func TestCases(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join("testdata", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join("testdata", "cases", d.Name(), "*.txt"))
		for _, f := range files {
			n++
			t.Run(d.Name()+"/"+strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runCase(t, f) })
		}
	}
	if n == 0 {
		t.Fatal("no cases")
	}
}
