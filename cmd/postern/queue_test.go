package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/gateway/delivery"
	"postern/gateway/queue"
)

// The queue commands select messages by ID (also read from stdin), ALL,
// sender or recipient; list prints JSON; bulk changes act on exactly the
// selected messages.
func TestQueueSelections(t *testing.T) {
	dir := t.TempDir()
	if code, out, errb := runCmd(t, "", "init", dir, "--domain", "example.test"); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, errb)
	}
	etc := filepath.Join(dir, "etc")
	q, err := queue.Open(queue.Options{Dir: filepath.Join(dir, "data", "queue"), Hostname: "mx.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range []struct{ from, to string }{
		{"spammer@bad.example", "a@remote.example"},
		{"spammer@bad.example", "b@remote.example"},
		{"alice@example.test", "c@other.example"},
		{"", "d@other.example"},
	} {
		id, err := q.Enqueue(context.Background(), delivery.Envelope{From: m.from, Rcpts: []delivery.Recipient{{Addr: m.to}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	q.Close()
	run := func(stdin string, args ...string) (int, string, string) {
		return runCmd(t, stdin, append([]string{"--config", etc, "queue"}, args...)...)
	}
	code, out, _ := run("", "list", "--json", "--from", "SPAMMER@")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m struct {
			ID         string `json:"id"`
			From       string `json:"from"`
			Recipients []struct {
				Address string `json:"address"`
				Status  string `json:"status"`
			} `json:"recipients"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("list --json line %q: %v", line, err)
		}
		if m.From != "spammer@bad.example" || len(m.Recipients) != 1 || m.Recipients[0].Status != "pending" {
			t.Errorf("list --json: %+v", m)
		}
		got = append(got, m.ID)
	}
	if code != 0 || len(got) != 2 {
		t.Fatalf("list --from: %d %q", code, out)
	}
	if code, out, errb := run("", "delete", "--from", "spammer@"); code != 0 || !strings.Contains(out, "delete: 2 message(s)") {
		t.Fatalf("delete --from: %d %q %q", code, out, errb)
	}
	if code, out, _ := run("", "list", "--to", "@other.example"); code != 0 || !strings.Contains(out, "-- 2 message(s)") || !strings.Contains(out, "<>") {
		t.Fatalf("list --to: %d %q", code, out)
	}
	// hold marks messages held ("!" after the ID, "held" in JSON);
	// release takes them off hold; an ID read back with its "!" works.
	if code, out, errb := run("", "hold", "--to", "@other.example"); code != 0 || !strings.Contains(out, "hold: 2 message(s)") {
		t.Fatalf("hold --to: %d %q %q", code, out, errb)
	}
	if code, out, _ := run("", "list"); code != 0 || !strings.Contains(out, ids[2]+"!") || !strings.Contains(out, ids[3]+"!") {
		t.Fatalf("list of held messages: %q", out)
	}
	if code, out, _ := run("", "list", "--json", ids[2]); code != 0 || !strings.Contains(out, `"held":true`) {
		t.Fatalf("list --json of a held message: %q", out)
	}
	if code, out, errb := run(ids[2]+"!\n", "release", "-"); code != 0 || !strings.Contains(out, "release: 1 message(s)") {
		t.Fatalf("release -: %d %q %q", code, out, errb)
	}
	if code, out, _ := run("", "list"); code != 0 || strings.Contains(out, ids[2]+"!") || !strings.Contains(out, ids[3]+"!") {
		t.Fatalf("list after releasing one: %q", out)
	}
	// show --header, --body and --message print the stored message's parts.
	if code, out, _ := run("", "show", ids[2], "--header"); code != 0 || out != "Subject: x\r\n" {
		t.Fatalf("show --header: %d %q", code, out)
	}
	if code, out, _ := run("", "show", ids[2], "--body"); code != 0 || out != "x\r\n" {
		t.Fatalf("show --body: %d %q", code, out)
	}
	if code, out, _ := run("", "show", ids[2], "--message"); code != 0 || out != "Subject: x\r\n\r\nx\r\n" {
		t.Fatalf("show --message: %d %q", code, out)
	}
	if code, _, errb := run("", "show", "../x", "--message"); code != 1 || !strings.Contains(errb, "bad") {
		t.Fatalf("show of a hostile ID: %d %q", code, errb)
	}
	// IDs from standard input, as "queue list | ..." pipelines give them.
	if code, out, errb := run(ids[2]+" something\n"+ids[3]+"\n", "bounce", "-"); code != 0 || !strings.Contains(out, "bounce: 2 message(s)") {
		t.Fatalf("bounce -: %d %q %q", code, out, errb)
	}
	if code, _, errb := run("", "delete"); code != 64 || !strings.Contains(errb, "give message IDs") {
		t.Fatalf("delete without a selection: %d %q", code, errb)
	}
	if code, _, errb := run("", "delete", "../etc/passwd"); code != 1 || !strings.Contains(errb, "bad") {
		t.Fatalf("delete of a hostile ID: %d %q", code, errb)
	}
	if code, out, errb := run("", "delete", "ALL"); code != 0 || !strings.Contains(out, "delete: 2 message(s)") {
		t.Fatalf("delete ALL: %d %q %q", code, out, errb)
	}
	if code, out, _ := run("", "list"); code != 0 || !strings.Contains(out, "Mail queue is empty") {
		t.Fatalf("after delete ALL: %q", out)
	}
}

// mailq speaks Postfix's format: held messages marked "!", the null
// sender as MAILER-DAEMON, only pending recipients, grouped under their
// reason, and the "-- N Kbytes in N Requests." line.
func TestMailqPostfixFormat(t *testing.T) {
	received := time.Date(2026, 11, 26, 23, 39, 43, 0, time.Local)
	msgs := []queue.Summary{
		{ID: "aaaa", From: "", Received: received, Size: 1500, Held: true, Rcpts: []delivery.Recipient{
			{Addr: "x@remote.example", Status: delivery.StatusPending, LastResult: "smtp; 451 4.2.0\n try later"},
			{Addr: "y@remote.example", Status: delivery.StatusPending, LastResult: "smtp; 451 4.2.0\n try later"},
			{Addr: "done@remote.example", Status: delivery.StatusDelivered},
		}},
		{ID: "bbbb", From: "bob@example.test", Received: received, Size: 700, Rcpts: []delivery.Recipient{
			{Addr: "z@other.example", Status: delivery.StatusPending},
		}},
	}
	var b strings.Builder
	printMailq(&b, msgs)
	pad := strings.Repeat(" ", 41)
	want := "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n" +
		"aaaa      !     1500  Thu Nov 26 23:39:43  MAILER-DAEMON\n" +
		"(smtp; 451 4.2.0 try later)\n" + pad + "x@remote.example\n" + pad + "y@remote.example\n\n" +
		"bbbb             700  Thu Nov 26 23:39:43  bob@example.test\n" + pad + "z@other.example\n\n" +
		"-- 3 Kbytes in 2 Requests.\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printMailq(&b, nil)
	if b.String() != "Mail queue is empty\n" {
		t.Errorf("empty: %q", b.String())
	}
}

// queue shape counts pending recipients by domain and age, as qshape.
func TestQueueShape(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	msgs := []queue.Summary{
		{From: "a@sender.example", Received: now.Add(-3 * time.Minute), Rcpts: []delivery.Recipient{
			{Addr: "x@Slow.example", Status: delivery.StatusPending},
			{Addr: "y@slow.example", Status: delivery.StatusPending},
			{Addr: "z@fast.example", Status: delivery.StatusDelivered},
		}},
		{From: "", Received: now.Add(-2000 * time.Minute), Rcpts: []delivery.Recipient{
			{Addr: "b@slow.example", Status: delivery.StatusPending},
			{Addr: "c@other.example", Status: delivery.StatusPending},
		}},
	}
	var b strings.Builder
	printShape(&b, msgs, false, 20, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	fields := func(i int) string { return strings.Join(strings.Fields(lines[i]), " ") }
	if len(lines) != 4 || fields(0) != "T 5 10 20 40 80 160 320 640 1280 1280+" ||
		fields(1) != "TOTAL 4 2 0 0 0 0 0 0 0 0 2" ||
		fields(2) != "slow.example 3 2 0 0 0 0 0 0 0 0 1" ||
		fields(3) != "other.example 1 0 0 0 0 0 0 0 0 0 1" {
		t.Fatalf("shape:\n%s", b.String())
	}
	b.Reset()
	printShape(&b, msgs, true, 1, now)
	if got := strings.Fields(strings.Split(strings.TrimSpace(b.String()), "\n")[2]); got[0] != "sender.example" && got[0] != "MAILER-DAEMON" {
		t.Fatalf("by sender, top 1:\n%s", b.String())
	}
}
