package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postern/gateway/delivery"
	"postern/gateway/queue"
	"postern/web/admin"
)

// init makes one web admin login and writes its password into
// DIR/credentials; "webadmin passwd" sets more, from stdin.
func TestInitAndWebadminPasswd(t *testing.T) {
	dir := t.TempDir()
	if code, out, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 || !strings.Contains(out, "Web admin") {
		t.Fatalf("init: %d %s %s", code, out, errb)
	}
	etc := filepath.Join(dir, "etc")
	creds, err := os.ReadFile(filepath.Join(dir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(creds))
	if len(f) != 3 || f[0] != "webadmin" || f[1] != "admin" || len(f[2]) < 16 {
		t.Fatalf("credentials %q", creds)
	}
	if st, _ := os.Stat(filepath.Join(dir, "credentials")); st.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v", st.Mode().Perm())
	}
	admins, err := admin.LoadAdmins(etc)
	if err != nil || !admins.Check("admin", f[2]) {
		t.Fatalf("init's admin cannot log in: %v", err)
	}
	if code, out, errb := runCmd(t, "s3cret\n", "--config", etc, "webadmin", "passwd", "ops", "--stdin"); code != 0 || !strings.Contains(out, "ops") {
		t.Fatalf("webadmin passwd --stdin: %d %s %s", code, out, errb)
	}
	if code, out, _ := runCmd(t, "", "--config", etc, "webadmin", "list"); code != 0 || out != "admin\nops\n" {
		t.Errorf("webadmin list: %d %q", code, out)
	}
	admins, _ = admin.LoadAdmins(etc)
	if !admins.Check("ops", "s3cret") || !admins.Check("admin", f[2]) {
		t.Error("passwords after webadmin passwd")
	}
	// postern config names the logins, and refuses a bad line.
	if code, out, _ := runCmd(t, "", "--config", etc, "config"); code != 0 || !strings.Contains(out, "webadmin   admin ops\n") {
		t.Errorf("config: %d\n%s", code, out)
	}
	good, _ := os.ReadFile(filepath.Join(etc, "webadmin"))
	os.WriteFile(filepath.Join(etc, "webadmin"), append(good, "no hash here\n"...), 0o600)
	if code, _, errb := runCmd(t, "", "--config", etc, "config"); code != 78 || !strings.Contains(errb, "webadmin: "+filepath.Join(etc, "webadmin")+":") {
		t.Errorf("config with a bad webadmin line: %d\n%s", code, errb)
	}
	os.WriteFile(filepath.Join(etc, "webadmin"), good, 0o600)
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"pw\n", []string{"webadmin", "passwd", "ops"}, 1, "use --stdin"},
		{"", []string{"webadmin", "passwd", "--stdin", "ops"}, 1, "empty password"},
		{"pw\n", []string{"webadmin", "passwd", "--stdin", "../evil"}, 1, "character"},
		{"", []string{"webadmin", "passwd"}, 64, "Usage"},
		{"", []string{"webadmin", "frob"}, 64, "unknown"},
	} {
		code, out, errb := runCmd(t, c.stdin, append([]string{"--config", etc}, c.args...)...)
		if code != c.code || !strings.Contains(out+errb, c.want) {
			t.Errorf("%v: %d %q %q, want %d and %q", c.args, code, out, errb, c.code, c.want)
		}
	}
	// A second init (--force) replaces the admin's line and keeps others.
	os.WriteFile(filepath.Join(dir, "credentials"), []byte("alice@example.test pw\n"+string(creds)), 0o600)
	if code, _, errb := runCmd(t, "", "init", dir, "--domain", "example.test", "--force"); code != 0 {
		t.Fatal(errb)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "credentials"))
	if !strings.HasPrefix(string(again), "alice@example.test pw\nwebadmin admin ") || strings.Count(string(again), "webadmin") != 1 {
		t.Errorf("credentials after init --force: %q", again)
	}
}

// A message deleted through the web admin is gone from "postern queue
// list".
func TestWebadminQueueDeleteGoneFromQueueList(t *testing.T) {
	dir := t.TempDir()
	if code, _, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatal(errb)
	}
	etc := filepath.Join(dir, "etc")
	qdir := filepath.Join(dir, "data", "queue")
	q, err := queue.Open(queue.Options{Dir: qdir, Hostname: "mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, to := range []string{"a@remote.example", "b@remote.example"} {
		id, err := q.Enqueue(context.Background(), delivery.Envelope{From: "alice@example.test", Rcpts: []delivery.Recipient{{Addr: to}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	q.Close()
	if err := admin.SetPassword(etc, "ops", "pw"); err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(admin.Options{ConfigDir: etc, QueueDir: qdir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	post := func(path string, form url.Values) (int, string) {
		resp, err := c.PostForm(srv.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, page := post("/admin/login", url.Values{"name": {"ops"}, "password": {"pw"}})
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("login: %d\n%s", code, page)
	}
	if code, page := post("/admin/queue/delete", url.Values{"csrf": {m[1]}, "id": {ids[0]}, "confirm": {"yes"}}); code != 200 || !strings.Contains(page, "deleted") {
		t.Fatalf("delete: %d\n%s", code, page)
	}
	code, out, errb := runCmd(t, "", "--config", etc, "queue", "list")
	if code != 0 || strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) {
		t.Fatalf("queue list after the admin's delete: %d %q %q", code, out, errb)
	}
}
