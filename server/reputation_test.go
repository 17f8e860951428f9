package server

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/rejectlog"
	"postern/filters/reputation"
	"postern/filters/state/statetest"
	"postern/policy"
)

// The reputation check end to end through a real SMTP listener, a real
// DNS server and the real state store (embedded, and Redis shared by the
// server and the reading tool):
//   - a client refused by a DNSBL builds a bad history; once unlisted, its
//     message gets through with a positive reputation score in
//     X-Postern-Score; with a reject limit it is refused at MAIL with a
//     reply naming its record, and the refusal is in the rejection log;
//   - a clean client's history lowers its score (the connect stage's
//     result survives EHLO: it used to be dropped there);
//   - an SPF-authenticated sender domain's good history follows it to an
//     address and network never seen before;
//   - the same domain forged from a listed address (SPF fails) is neither
//     blamed nor credited; the address is.
func TestReputationEndToEnd(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testReputationEndToEnd(t, nil) })
	t.Run("redis", func(t *testing.T) {
		// Fails under CI when Redis is down; the keys go with the test.
		prefix := statetest.RedisPrefix(t)
		testReputationEndToEnd(t, map[string]string{"statestore": "redis " + statetest.RedisAddr + " prefix=" + prefix + "\n"})
	})
}

func testReputationEndToEnd(t *testing.T, extra map[string]string) {
	const spammer = "203.0.113.99"
	var listed atomic.Bool
	listed.Store(true)
	zone := baseZone().Add(
		`multi.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 -all"`,
	).Rewrite(func(req, resp *mdns.Msg) {
		// Delisting: the list stops answering for the spammer.
		if !listed.Load() && len(req.Question) == 1 && strings.HasSuffix(req.Question[0].Name, ".bl.test.") {
			resp.Answer, resp.Rcode = nil, mdns.RcodeNameError
		}
	})
	settings := map[string]string{
		"filters":    "dnsbl\nspf\ndkim\nreputation\n",
		"reputation": "minsamples 3\n",
	}
	for k, v := range extra {
		settings[k] = v
	}
	h := newFilterHarness(t, zone, settings)

	// 1. Six transactions from a listed client, all refused by the list.
	c := dialRaw(t, h.addr("smtp"))
	c.as(spammer, "mail.spammer.example")
	for i := range 6 {
		// Two of them forge multi.test, whose SPF fails for this client.
		from := "x@nospf.test"
		if i < 2 {
			from = "news@multi.test"
		}
		if code, text := c.send(from, h.user, testMessage("spam", "buy\r\n")); code/100 != 5 {
			t.Fatalf("listed client, message %d: %d %s", i, code, text)
		}
		c.cmd("RSET")
	}

	// 2. A clean client: its score starts at 0 and goes below 0.
	clean := dialRaw(t, h.addr("smtp"))
	clean.as("192.0.2.7", "mail.good.test")
	var cleanScores []float64
	for i := range 5 {
		subject := fmt.Sprintf("clean %d", i)
		if code, text := clean.send("a@nospf.test", h.user, testMessage(subject, "hello\r\n")); code != 250 {
			t.Fatalf("clean client, message %d: %d %s", i, code, text)
		}
		// Reconnect: the client's score is taken at connect.
		clean = dialRaw(t, h.addr("smtp"))
		clean.as("192.0.2.7", "mail.good.test")
		cleanScores = append(cleanScores, reputationScore(t, h, subject))
	}
	if cleanScores[0] != 0 || cleanScores[4] >= 0 || cleanScores[4] >= cleanScores[3] {
		t.Fatalf("a clean client's reputation scores %v; want 0 at first, then falling below 0", cleanScores)
	}

	// 3. The domain multi.test, SPF-authenticated, sends well from
	// 192.0.2.0/24 ...
	for i := range 5 {
		if code, text := clean.send("news@multi.test", h.user, testMessage(fmt.Sprintf("news %d", i), "news\r\n")); code != 250 {
			t.Fatalf("multi.test from 192.0.2.7, message %d: %d %s", i, code, text)
		}
	}
	// ... and its history follows it to an address of a network never seen.
	other := dialRaw(t, h.addr("smtp"))
	other.as("198.51.100.20", "out2.multi.test")
	if code, text := other.send("news@multi.test", h.user, testMessage("news elsewhere", "news\r\n")); code != 250 {
		t.Fatalf("multi.test from a new address: %d %s", code, text)
	}
	if s := reputationScore(t, h, "news elsewhere"); s >= 0 {
		t.Fatalf("multi.test from a new address scored %v; want its good history (< 0)", s)
	}

	// 4. The spammer, now delisted: accepted, with a positive score.
	listed.Store(false)
	h.restart() // a fresh server: no DNS answers cached
	c = dialRaw(t, h.addr("smtp"))
	c.as(spammer, "mail.spammer.example")
	if code, text := c.send("x@nospf.test", h.user, testMessage("delisted", "hello\r\n")); code != 250 {
		t.Fatalf("delisted client: %d %s", code, text)
	}
	if s := reputationScore(t, h, "delisted"); s <= 1 {
		t.Fatalf("delisted client's reputation score %v; want its bad history (> 1)", s)
	}

	// 5. With a reject limit, the same client is refused at MAIL, the
	// reply naming its record, and the refusal is logged.
	h.stop()
	h.writeSetting("reputation", "minsamples 3\nreject 1.5\n")
	h.start()
	c = dialRaw(t, h.addr("smtp"))
	c.as(spammer, "mail.spammer.example")
	code, text := c.cmd("MAIL FROM:<x@nospf.test>")
	if code != 550 || !strings.Contains(text, "5.7.1 Bad reputation of ip "+spammer+" here: 6 of the last 7 messages refused") {
		t.Fatalf("bad client with a reject limit, MAIL: %d %s", code, text)
	}
	recs := refusalsFor(t, h, rejectlog.Query{Client: spammer, Filter: "reputation"})
	if n := len(recs); n == 0 || recs[n-1].Decider != "reputation" || recs[n-1].Stage != "mail" {
		t.Fatalf("rejection log: %+v", recs)
	}
	// The clean client still gets in.
	clean = dialRaw(t, h.addr("smtp"))
	clean.as("192.0.2.7", "mail.good.test")
	if code, text := clean.send("a@nospf.test", h.user, testMessage("still clean", "hello\r\n")); code != 250 {
		t.Fatalf("clean client with a reject limit: %d %s", code, text)
	}

	// 6. What the store holds, read as postern reputation reads it: the
	// forged mail blamed the spammer, not multi.test.
	h.stop()
	cfg, err := policy.Load(h.etc)
	if err != nil {
		t.Fatal(err)
	}
	rep, store, err := OpenReputation(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, now := context.Background(), time.Now()
	domain, err := rep.Assess(ctx, reputation.Bucket{Kind: reputation.KindDomain, ID: "multi.test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if domain.Counts.Bad != 0 || domain.Counts.Good < 5.99 || domain.Score >= 0 {
		t.Fatalf("multi.test: %v (%s); want 6 good, none bad: the forged mail must not count", domain, domain.Status)
	}
	ip, _ := rep.Assess(ctx, reputation.Bucket{Kind: reputation.KindIP, ID: spammer}, now)
	if ip.Counts.Bad < 5.99 || ip.Counts.Bad > 6.01 || ip.Status != reputation.StatusBad {
		t.Fatalf("spammer: %v (%s); want 6 bad (its refusal for reputation not counted)", ip, ip.Status)
	}
}

var reputationPart = regexp.MustCompile(`reputation=(-?[0-9.]+)`)

// reputationScore waits for the message with subject in the user's inbox
// and returns the sum of the reputation parts of its X-Postern-Score (0
// when the check added nothing).
func reputationScore(t *testing.T, h *harness, subject string) float64 {
	t.Helper()
	h.settle()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, m := range inboxMessages(t, h, h.user) {
			msg := strings.ReplaceAll(string(m), "\r\n", "\n") // Maildir keeps LF
			if !strings.Contains(msg, "\nSubject: "+subject+"\n") {
				continue
			}
			i := strings.Index(msg, "X-Postern-Score:")
			if i < 0 {
				t.Fatalf("%q has no X-Postern-Score:\n%s", subject, msg)
			}
			line, _, _ := strings.Cut(msg[i:], "\n")
			t.Logf("%s: %s", subject, line)
			sum := 0.0
			for _, p := range reputationPart.FindAllStringSubmatch(line, -1) {
				v, _ := strconv.ParseFloat(p[1], 64)
				sum += v
			}
			return sum
		}
	}
	t.Fatalf("message %q not delivered", subject)
	return 0
}

// A greylisted recipient does not hide the transaction's end: the message
// accepted for the other recipient is a good outcome.
func TestReputationCountsMessageAfterGreylistedRecipient(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":  "greylist\nreputation\n",
		"greylist": "delay 1h\npassrecipient alice@example.test\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.5", "mx.newsender.example")
	if code, text := c.cmd("MAIL FROM:<a@newsender.example>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	if code, text := c.cmd("RCPT TO:<carol@example.test>"); code != 451 {
		t.Fatalf("greylisted RCPT: %d %s", code, text)
	}
	if code, text := c.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("RCPT %s (not greylisted): %d %s", h.user, code, text)
	}
	if code, text := c.cmd("DATA"); code != 354 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	c.conn.Write(testMessage("after greylisting", "x\r\n"))
	if code, text := c.cmd("."); code != 250 {
		t.Fatalf("end of DATA: %d %s", code, text)
	}
	h.stop()
	cfg, err := policy.Load(h.etc)
	if err != nil {
		t.Fatal(err)
	}
	rep, store, err := OpenReputation(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a, err := rep.Assess(context.Background(), reputation.Bucket{Kind: reputation.KindIP, ID: "203.0.113.5"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Counts.Good < 0.99 || a.Counts.Bad != 0 {
		t.Fatalf("203.0.113.5: %v; want the accepted message counted good, the deferral not at all", a)
	}
}
