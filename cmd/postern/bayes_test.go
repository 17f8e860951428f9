package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"postern/filters/state"
	"postern/filters/state/statetest"
	"postern/policy"
	"postern/server"
)

// bayesInstall makes an installation (SMTP on a free port, minlearns 20)
// and a Maildir holding the spam of the bayes training corpus.
func bayesInstall(t *testing.T) (etc, junk string, cfg *policy.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := policy.Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	etc = filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "listen"), []byte("smtp 127.0.0.1:0\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "bayes"), []byte("minlearns 20\n"), 0o640)
	junk = filepath.Join(dir, "Maildir", ".Junk")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(junk, d), 0o700)
	}
	files, _ := filepath.Glob("../../filters/bayes/testdata/corpus/train/spam/*.eml")
	for i, f := range files {
		b, _ := os.ReadFile(f)
		sub := "cur"
		if i%3 == 0 {
			sub = "new"
		}
		os.WriteFile(filepath.Join(junk, sub, filepath.Base(f)+":2,S"), b, 0o600)
	}
	cfg, err := policy.Load(etc)
	if err != nil {
		t.Fatal(err)
	}
	return etc, junk, cfg
}

func corpusFiles(t *testing.T, split, kind string) []string {
	files, err := filepath.Glob("../../filters/bayes/testdata/corpus/" + split + "/" + kind + "/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	return files
}

// With the server stopped, postern bayes opens the store itself: a Maildir
// learns every message in it, learning again counts nothing twice,
// stats shows the counts, forget takes a message out.
func TestBayesLearnStoreDirectly(t *testing.T) {
	etc, junk, _ := bayesInstall(t)
	code, out, errb := runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk)
	if code != 0 || !strings.Contains(out, junk+": 30 messages, 30 learned, 0 failed") {
		t.Fatalf("learn a Maildir: exit %d\n%s%s", code, out, errb)
	}
	ham := corpusFiles(t, "train", "ham")
	code, out, errb = runCmd(t, "", append([]string{"--config", etc, "bayes", "learn", "--ham"}, ham...)...)
	if code != 0 || strings.Count(out, ": learned") != 30 {
		t.Fatalf("learn ham files: exit %d\n%s%s", code, out, errb)
	}
	if code, out, _ = runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk); code != 0 {
		t.Fatalf("learn again: %d %s", code, out)
	}
	code, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats")
	if code != 0 || !strings.Contains(out, "learned: 30 spam, 30 ham") || !strings.Contains(out, "classifying: yes") {
		t.Fatalf("stats: %d\n%s", code, out)
	}
	first, _ := os.ReadFile(ham[0])
	if code, out, _ = runCmd(t, string(first), "--config", etc, "bayes", "learn", "--ham", "-"); code != 0 || !strings.Contains(out, "-: already learned") {
		t.Fatalf("learn from stdin: %d %s", code, out)
	}
	if code, out, _ = runCmd(t, "", "--config", etc, "bayes", "forget", ham[0]); code != 0 || !strings.Contains(out, "forgotten") {
		t.Fatalf("forget: %d %s", code, out)
	}
	if code, out, _ = runCmd(t, "", "--config", etc, "bayes", "forget", ham[0]); code != 1 || !strings.Contains(out, "not learned") {
		t.Fatalf("forget again: %d %s", code, out)
	}
	if _, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats"); !strings.Contains(out, "learned: 30 spam, 29 ham") {
		t.Fatalf("stats after forget:\n%s", out)
	}
	for _, bad := range [][]string{{"bayes"}, {"bayes", "learn", junk}, {"bayes", "learn", "--maybe", junk}, {"bayes", "forget"}, {"bayes", "stats", "x"}} {
		if code, _, _ := runCmd(t, "", append([]string{"--config", etc}, bad...)...); code != 64 {
			t.Errorf("%q: exit %d; want 64", bad, code)
		}
	}
	if code, _, errb := runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", "/nonexistent/msg"); code != 1 || !strings.Contains(errb, "no such file") {
		t.Errorf("missing file: %d %s", code, errb)
	}
}

// With the server running, it holds the embedded store: postern bayes
// learns through the control socket, and the counts are the server's.
func TestBayesLearnWhileServerRuns(t *testing.T) {
	etc, junk, cfg := bayesInstall(t)
	srv, err := server.New(etc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if _, _, st, err := server.OpenBayes(cfg, slog.New(slog.DiscardHandler)); err == nil {
		st.Close()
		t.Fatal("opened the embedded store beside the running server")
	}
	code, out, errb := runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk)
	if code != 0 || !strings.Contains(out, "30 learned, 0 failed") {
		t.Fatalf("learn while running: exit %d\n%s%s", code, out, errb)
	}
	if code, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats"); code != 0 || !strings.Contains(out, "learned: 30 spam, 0 ham") || !strings.Contains(out, "classifying: no, 20 of each needed") {
		t.Fatalf("stats while running: %d\n%s", code, out)
	}
	reply, err := server.Control(context.Background(), cfg.DataDir, server.ControlRequest{Command: "bayes", Args: []string{"learn", "spam", "../../x", "tok"}})
	if err != nil || reply.Status != 64 || !strings.Contains(reply.Stderr, "bad digest") {
		t.Fatalf("bad digest over the socket: %+v %v", reply, err)
	}
	srv.Shutdown(context.Background())
	if _, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats"); !strings.Contains(out, "learned: 30 spam, 0 ham") {
		t.Fatalf("stats after stop:\n%s", out)
	}
}

// With statestore redis, postern bayes learns into Redis (where every
// gateway of a cluster reads the model), with the server stopped or not.
func TestBayesLearnIntoRedis(t *testing.T) {
	etc, junk, _ := bayesInstall(t)
	prefix := statetest.RedisPrefix(t)
	os.WriteFile(filepath.Join(etc, "statestore"), []byte("redis "+statetest.RedisAddr+" prefix="+prefix+"\n"), 0o640)
	code, out, errb := runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk)
	if code != 0 || !strings.Contains(out, "30 learned, 0 failed") {
		t.Fatalf("learn into redis: exit %d\n%s%s", code, out, errb)
	}
	r := statetest.Redis(t, prefix)
	v, found, err := r.Get(context.Background(), "bayes:n")
	if err != nil || !found || string(v) != strconv.FormatInt(30<<32, 10) {
		t.Fatalf("bayes:n in redis = %q, %v, %v; want 30 spam", v, found, err)
	}
}

// postern config refuses a bad bayes setting with its file and line.
func TestConfigChecksBayes(t *testing.T) {
	etc, _, _ := bayesInstall(t)
	os.WriteFile(filepath.Join(etc, "filters"), []byte("spf\nbayes\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "bayes"), []byte("minlearns 20\nspam 2 4\n"), 0o640)
	code, out, errb := runCmd(t, "", "--config", etc, "config")
	if code != 78 || !strings.Contains(out+errb, "bayes:2: bayes: spam probability \"2\": want a number from 0 to 1") {
		t.Fatalf("config with a bad bayes line: exit %d\n%s%s", code, out, errb)
	}
}

// --user works on the user's own model, apart from the global one.
func TestBayesUserModel(t *testing.T) {
	etc, junk, _ := bayesInstall(t)
	code, out, errb := runCmd(t, "", "--config", etc, "bayes", "learn", "--user", "Alice@example.test", "--spam", junk)
	if code != 0 || !strings.Contains(out, "30 learned, 0 failed") {
		t.Fatalf("learn --user: exit %d\n%s%s", code, out, errb)
	}
	if _, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats", "--user", "alice@example.test"); !strings.Contains(out, "learned: 30 spam, 0 ham") {
		t.Fatalf("stats --user:\n%s", out)
	}
	if _, out, _ = runCmd(t, "", "--config", etc, "bayes", "stats"); !strings.Contains(out, "learned: 0 spam, 0 ham") {
		t.Fatalf("global stats after a user's learn:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(junk, "cur", "*"))
	if code, out, _ = runCmd(t, "", "--config", etc, "bayes", "forget", "--user", "alice@example.test", files[0]); code != 0 || !strings.Contains(out, "forgotten") {
		t.Fatalf("forget --user: %d %s", code, out)
	}
	for _, bad := range [][]string{{"bayes", "stats", "--user"}, {"bayes", "stats", "--user", " "}, {"bayes", "expire", "--user", "a"}, {"bayes", "expire", "--days", "0"}, {"bayes", "expire", "--days", "x"}, {"bayes", "learn", "--user", "a", junk}} {
		if code, _, _ := runCmd(t, "", append([]string{"--config", etc}, bad...)...); code != 64 {
			t.Errorf("%q: exit %d; want 64", bad, code)
		}
	}
	os.WriteFile(filepath.Join(etc, "bayes"), []byte("minlearns 20\nperuser maybe\n"), 0o640)
	if code, _, errb := runCmd(t, "", "--config", etc, "bayes", "stats"); code != 78 || !strings.Contains(errb, "bayes:2:") {
		t.Fatalf("bad peruser line: exit %d %s", code, errb)
	}
}

// expire removes an old token in one message and keeps the rest: with
// the server stopped (the command opens the embedded store), while it
// runs (over the control socket), and on Redis.
func TestBayesExpire(t *testing.T) {
	plant := func(t *testing.T, s state.Store) {
		ctx := context.Background()
		if err := state.IncrMany(ctx, s, []string{"bayes:t:oldtok", "bayes:t:oldbig"}, 1); err != nil {
			t.Fatal(err)
		}
		state.IncrMany(ctx, s, []string{"bayes:t:oldbig"}, 5)
		s.Set(ctx, "bayes:a:oldtok", []byte("100"), 0)
		s.Set(ctx, "bayes:a:oldbig", []byte("100"), 0)
	}
	check := func(t *testing.T, etc string, s func() state.Store) {
		t.Helper()
		code, out, errb := runCmd(t, "", "--config", etc, "bayes", "expire", "--days", "30")
		if code != 0 || !strings.Contains(out, "1 removed") || !strings.Contains(errb, "tokens visited") {
			t.Fatalf("expire: exit %d\n%s%s", code, out, errb)
		}
		if _, out, _ := runCmd(t, "", "--config", etc, "bayes", "stats"); !strings.Contains(out, "learned: 30 spam") {
			t.Errorf("the learned messages lost:\n%s", out)
		}
		st := s()
		for key, want := range map[string]bool{"bayes:t:oldtok": false, "bayes:a:oldtok": false, "bayes:t:oldbig": true} {
			if _, found, _ := st.Get(context.Background(), key); found != want {
				t.Errorf("%s present %v after expire", key, found)
			}
		}
	}
	// embeddedPlanted: an installation with the Junk learned and the
	// planted tokens, its embedded store closed.
	embeddedPlanted := func(t *testing.T) (string, *policy.Config) {
		etc, junk, cfg := bayesInstall(t)
		runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk)
		s := openBayesStore(t, cfg)
		plant(t, s)
		s.Close()
		return etc, cfg
	}
	t.Run("embedded stopped", func(t *testing.T) {
		etc, cfg := embeddedPlanted(t)
		check(t, etc, func() state.Store {
			return openBayesStore(t, cfg)
		})
	})
	t.Run("embedded through the server", func(t *testing.T) {
		etc, cfg := embeddedPlanted(t)
		srv, err := server.New(etc, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		check(t, etc, func() state.Store {
			srv.Shutdown(context.Background())
			return openBayesStore(t, cfg)
		})
	})
	t.Run("redis", func(t *testing.T) {
		etc, junk, _ := bayesInstall(t)
		prefix := statetest.RedisPrefix(t)
		os.WriteFile(filepath.Join(etc, "statestore"), []byte("redis "+statetest.RedisAddr+" prefix="+prefix+"\n"), 0o640)
		runCmd(t, "", "--config", etc, "bayes", "learn", "--spam", junk)
		r := statetest.Redis(t, prefix)
		plant(t, r)
		check(t, etc, func() state.Store { return r })
	})
}

// openBayesStore opens the installation's state store as postern bayes
// does (the server stopped); closed when the test ends.
func openBayesStore(t *testing.T, cfg *policy.Config) state.Store {
	t.Helper()
	_, _, s, err := server.OpenBayes(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
