package deliver

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"postern/auth"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/mailbox/maildir"
	"postern/policy"
)

// testSite is a real configuration (postern init), real accounts in a
// compiled userdb, a sendmail stand-in that records what it is given, and
// an Agent over them.
type testSite struct {
	t        testing.TB
	dir      string
	etc      string
	cfg      *policy.Config
	auth     *auth.Service
	agent    *Agent
	sentFile string // the fake sendmail appends "ARGS\n---\nMESSAGE\n===\n" here
}

const testMessage = "From: Bob <bob@example.org>\nTo: alice@example.test\nSubject: hello there\n\nHi Alice,\nsee you.\n"

func newTestSite(t testing.TB, users ...string) *testSite {
	t.Helper()
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	for _, u := range users {
		name, quota, _ := strings.Cut(u, " ")
		home := filepath.Join(dir, "home", strings.ReplaceAll(name, "@", "_"))
		if err := os.MkdirAll(home, 0o700); err != nil {
			t.Fatal(err)
		}
		args := []string{"add", name, "--password", "pw", "--no-maildir", "--home", home}
		if quota != "" {
			args = append(args, "--quota", quota)
		}
		var out bytes.Buffer
		if code := authtool.UserMain(args, strings.NewReader(""), &out, &out, etc); code != 0 {
			t.Fatalf("user add %s: %s", name, out.String())
		}
	}
	s := &testSite{t: t, dir: dir, etc: etc, sentFile: filepath.Join(dir, "sent.txt")}
	s.reload(len(users) > 0)
	return s
}

// reload loads the configuration and the userdb again (after accounts were
// added) and builds a new Agent over them.
func (s *testSite) reload(withUsers bool) {
	t := s.t
	t.Helper()
	cfg, err := policy.Load(s.etc)
	if err != nil {
		t.Fatal(err)
	}
	svc := auth.NewService()
	if withUsers {
		udb, err := userdb.Open(cfg.UserdbDB)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { udb.Close() })
		svc = auth.NewService(udb)
	}
	s.cfg, s.auth = cfg, svc
	fake := filepath.Join(s.dir, "fake-sendmail")
	script := "#!/bin/sh\n{ echo \"$*\"; echo ---; cat; echo ===; } >> " + s.sentFile + "\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.agent, err = New(Options{Config: cfg, Auth: s.auth, Sendmail: []string{fake}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *testSite) account(name string) *auth.Account {
	s.t.Helper()
	a, err := s.auth.Lookup(context.Background(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	return a
}

func (s *testSite) home(name string) string { return s.account(name).Home }

// write puts a file into a home with mode 0600 (what maildrop demands of
// .mailfilter).
func (s *testSite) write(name, rel, content string) string {
	s.t.Helper()
	p := filepath.Join(s.home(name), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *testSite) deliver(name, ext, msg string) Outcome {
	s.t.Helper()
	return s.agent.Deliver(context.Background(), Request{
		Account:   s.account(name),
		Extension: ext,
		Sender:    "bob@example.org",
		Recipient: name,
		Message:   strings.NewReader(msg),
		AddTrace:  true,
	})
}

// folder lists the messages of a folder of name's Maildir ("INBOX",
// "Work"), their contents sorted.
func (s *testSite) folder(name, folder string) []string {
	s.t.Helper()
	md, err := maildir.Open(s.account(name).MaildirPath())
	if err != nil {
		s.t.Fatal(err)
	}
	f, err := md.Folder(folder)
	if err != nil {
		s.t.Fatalf("folder %s: %v", folder, err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, m := range snap.Messages {
		r, err := f.Open(m.Key)
		if err != nil {
			s.t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(r)
		r.Close()
		out = append(out, b.String())
	}
	sort.Strings(out)
	return out
}

func (s *testSite) makeFolder(name, folder string) {
	s.t.Helper()
	root := s.account(name).MaildirPath()
	if err := maildir.Make(root); err != nil {
		s.t.Fatal(err)
	}
	md, err := maildir.Open(root)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := md.CreateFolder(folder); err != nil {
		s.t.Fatal(err)
	}
}

func (s *testSite) sent() string {
	b, _ := os.ReadFile(s.sentFile)
	return string(b)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantOK(t *testing.T, o Outcome) {
	t.Helper()
	if o.Status != StatusOK || o.ExitCode != 0 {
		t.Fatalf("outcome %+v, want delivered", o)
	}
}
