package server

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"postern/filters"
	"postern/filters/dns/dnstest"
	"postern/filters/rejectlog"
	"postern/policy"
)

// rawSMTP is a hand-driven SMTP client: it can send XCLIENT (go-smtp's
// client cannot), so a test can be any client address.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSMTP {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &rawSMTP{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	if code, text := c.read(); code != 220 {
		t.Fatalf("banner %d %s", code, text)
	}
	return c
}

// read returns one (possibly multi-line) reply.
func (c *rawSMTP) read() (int, string) {
	c.t.Helper()
	var text []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "connection closed: " + err.Error()
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			return 0, line
		}
		text = append(text, line[4:])
		if line[3] == ' ' {
			var code int
			fmt.Sscanf(line[:3], "%d", &code)
			return code, strings.Join(text, "\n")
		}
	}
}

func (c *rawSMTP) cmd(format string, args ...any) (int, string) {
	c.t.Helper()
	fmt.Fprintf(c.conn, format+"\r\n", args...)
	return c.read()
}

// as presents the session as coming from ip with HELO helo (XCLIENT, from a
// trusted peer), then EHLO.
func (c *rawSMTP) as(ip, helo string) {
	c.t.Helper()
	if code, text := c.cmd("EHLO relay.example.test"); code != 250 || !strings.Contains(text, "XCLIENT") {
		c.t.Fatalf("EHLO: %d %s", code, text)
	}
	if code, text := c.cmd("XCLIENT ADDR=%s NAME=[UNAVAILABLE] HELO=%s", ip, helo); code != 220 {
		c.t.Fatalf("XCLIENT: %d %s", code, text)
	}
	if code, text := c.cmd("EHLO %s", helo); code != 250 {
		c.t.Fatalf("EHLO after XCLIENT: %d %s", code, text)
	}
}

// send runs one transaction and returns the code and text of the first
// refusal (or of the final reply).
func (c *rawSMTP) send(from, to string, msg []byte) (int, string) {
	c.t.Helper()
	if code, text := c.cmd("MAIL FROM:<%s>", from); code != 250 {
		return code, text
	}
	if code, text := c.cmd("RCPT TO:<%s>", to); code != 250 {
		c.cmd("RSET")
		return code, text
	}
	if code, text := c.cmd("DATA"); code != 354 {
		return code, text
	}
	c.conn.Write(bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n..")))
	return c.cmd(".")
}

// newFilterHarness is an installation with every check on, XCLIENT from
// loopback, and a DNS server with the records the tests need.
func newFilterHarness(t *testing.T, zone *dnstest.Zone, settings map[string]string) *harness {
	t.Helper()
	dnsSrv := dnstest.Start(t, zone)
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	h.writeSetting("resolvers", dnsSrv.Addr+"\n")
	h.writeSetting("xclient", "127.0.0.1\n")
	h.writeSetting("filters", "behaviour score\nratelimit\ndnsbl\ngreylist\nspf\ndkim\ndmarc\n")
	h.writeSetting("dnsbl", "bl.test message=\"Listed by %z: %t\"\n")
	h.writeSetting("greylist", "whitelist 192.0.2.0/24 198.51.100.0/24\n")
	for k, v := range settings {
		h.writeSetting(k, v)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func baseZone() *dnstest.Zone {
	return dnstest.NewZone().Add(
		// DNSBL: 203.0.113.99 is listed.
		`99.113.0.203.bl.test. 300 IN A 127.0.0.2`,
		`99.113.0.203.bl.test. 300 IN TXT "spam source, see https://bl.test/99"`,
		// SPF
		`spf-fail.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`good.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		// DMARC
		`_dmarc.strict.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`strict.test. 300 IN TXT "v=spf1 ip4:192.0.2.50 -all"`,
		`_dmarc.quarantine.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
	)
}

func refusalsFor(t *testing.T, h *harness, q rejectlog.Query) []rejectlog.Record {
	t.Helper()
	recs, err := rejectlog.Search(filepath.Join(h.dir, "data", "state", "rejects.jsonl"), q)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// DNSBL: a listed client is refused with the list's TXT in the reply, and
// the refusal is in the rejection log with every check's result.
func TestFilterDNSBLRejectsWithListText(t *testing.T) {
	h := newFilterHarness(t, baseZone(), nil)
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.99", "mail.spammer.example")
	// A sender whose domain publishes no SPF, so that only the list decides.
	code, text := c.send("x@nospf.test", h.user, testMessage("spam", "buy\r\n"))
	if code/100 != 5 || !strings.Contains(text, "Listed by bl.test: spam source, see https://bl.test/99") {
		t.Fatalf("listed client: %d %s", code, text)
	}
	recs := refusalsFor(t, h, rejectlog.Query{Client: "203.0.113.99"})
	if len(recs) != 1 || recs[0].Decider != "dnsbl" || recs[0].HELO != "mail.spammer.example" || len(recs[0].Results) == 0 {
		t.Fatalf("rejection log: %+v", recs)
	}

	// The same message from a clean address goes through.
	c2 := dialRaw(t, h.addr("smtp"))
	c2.as("192.0.2.7", "mail.good.test")
	if code, text := c2.send("x@good.test", h.user, testMessage("ham", "hello\r\n")); code != 250 {
		t.Fatalf("clean client: %d %s", code, text)
	}
}

// An unknown user is refused only after the RCPT checks (Postfix's
// implicit reject_unlisted_recipient comes last): a greylisted or listed
// client gets the same answer for an address that exists and for one that
// does not, so probing addresses from it tells nothing. A client the
// checks let through learns that the address does not exist.
func TestUnknownUserAfterRcptChecks(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{
		"greylist": "delay 1h\nwhitelist 192.0.2.0/24\n",
		"dnsbl":    "rejectstage rcpt\nbl.test message=\"Listed by %z: %t\"\n",
	})
	unknown := "nosuchuser@example.test"

	// Greylisted (a new triplet at RCPT): 451 for both.
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.5", "mx.newsender.example")
	for _, rcpt := range []string{h.user, unknown} {
		if code, _ := c.cmd("MAIL FROM:<first@newsender.example>"); code != 250 {
			t.Fatalf("MAIL: %d", code)
		}
		code, text := c.cmd("RCPT TO:<%s>", rcpt)
		if code != 451 || !strings.Contains(text, "Greylisted") {
			t.Errorf("greylisted client, RCPT %s: %d %s; want 451 Greylisted whether the user exists or not", rcpt, code, text)
		}
		c.cmd("RSET")
	}

	// Listed (the list refuses at RCPT): the list's refusal for both.
	l := dialRaw(t, h.addr("smtp"))
	l.as("203.0.113.99", "mail.spammer.example")
	for _, rcpt := range []string{h.user, unknown} {
		l.cmd("MAIL FROM:<x@nospf.test>")
		code, text := l.cmd("RCPT TO:<%s>", rcpt)
		if code/100 != 5 || !strings.Contains(text, "Listed by bl.test") {
			t.Errorf("listed client, RCPT %s: %d %s; want the list's refusal", rcpt, code, text)
		}
		l.cmd("RSET")
	}

	// A client the checks pass (whitelisted from greylisting, not listed):
	// 550 5.1.1 for the unknown user, counted as such.
	ok := dialRaw(t, h.addr("smtp"))
	ok.as("192.0.2.7", "mail.good.test")
	ok.cmd("MAIL FROM:<x@good.test>")
	if code, text := ok.cmd("RCPT TO:<%s>", unknown); code != 550 || !strings.Contains(text, "5.1.1") {
		t.Fatalf("clean client, unknown user: %d %s; want 550 5.1.1", code, text)
	}
	if code, text := ok.cmd("RCPT TO:<%s>", h.user); code != 250 {
		t.Fatalf("clean client, known user: %d %s", code, text)
	}
	recs := refusalsFor(t, h, rejectlog.Query{Client: "192.0.2.7"})
	if len(recs) != 1 || recs[0].Decider != "unknown_user" {
		t.Fatalf("rejection log for the clean client: %+v; want one unknown_user refusal", recs)
	}
	// Relaying is still refused before any check: an unauthenticated
	// client gets 554 for another domain even while it is greylisted.
	c.cmd("MAIL FROM:<first@newsender.example>")
	if code, text := c.cmd("RCPT TO:<someone@elsewhere.example>"); code != 554 || !strings.Contains(text, "Relay access denied") {
		t.Fatalf("relay attempt from a greylisted client: %d %s; want 554 relay access denied", code, text)
	}
}

// SPF: a hard fail is refused at MAIL with 5.7.23; a pass is recorded in
// Received-SPF and Authentication-Results, and forged Authentication-Results
// claiming our name are removed.
func TestFilterSPF(t *testing.T) {
	h := newFilterHarness(t, baseZone(), nil)
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.99", "mx.elsewhere.example")
	code, text := c.send("someone@spf-fail.test", h.user, testMessage("forged", "x\r\n"))
	if code != 550 || !strings.Contains(text, "5.7.23") {
		t.Fatalf("SPF fail: %d %s", code, text)
	}
	c.cmd("RSET")
	forged := []byte("Authentication-Results: mail.example.test; spf=pass smtp.mailfrom=evil\r\n" + string(testMessage("spf pass", "x\r\n")))
	if code, text := c.send("someone@good.test", h.user, forged); code != 250 {
		t.Fatalf("SPF pass: %d %s", code, text)
	}
	msgs := inboxMessages(t, h, h.user)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := string(msgs[0])
	if !strings.Contains(m, "Received-SPF: pass") || !strings.Contains(m, "spf=pass smtp.mailfrom=good.test") {
		t.Fatalf("SPF headers missing:\n%s", m)
	}
	if strings.Contains(m, "smtp.mailfrom=evil") {
		t.Fatalf("forged Authentication-Results kept:\n%s", m)
	}
}

// DKIM and DMARC: a message signed by its domain passes; the same message
// tampered with fails DKIM; with p=reject and nothing aligned, DATA is
// refused with a 5xx naming DMARC; p=quarantine files into Junk.
func TestFilterDKIMAndDMARC(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	zone := baseZone().Add(
		`sel._domainkey.signed.test. 300 IN TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`,
		`_dmarc.signed.test. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	h := newFilterHarness(t, zone, nil)
	sign := func(msg []byte) []byte {
		var out bytes.Buffer
		err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{Domain: "signed.test", Selector: "sel", Signer: crypto.Signer(priv),
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	body := "From: news@signed.test\r\nTo: alice@example.test\r\nSubject: signed\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <s1@signed.test>\r\n\r\nThe real text.\r\n"
	signed := sign([]byte(body))

	c := dialRaw(t, h.addr("smtp"))
	c.as("198.51.100.20", "out.mailer.example")
	if code, text := c.send("bounces@mailer.example", h.user, signed); code != 250 {
		t.Fatalf("signed message: %d %s", code, text)
	}
	m := string(inboxMessages(t, h, h.user)[0])
	if !strings.Contains(m, "dkim=pass header.d=signed.test") || !strings.Contains(m, "dmarc=pass") {
		t.Fatalf("DKIM/DMARC pass not recorded:\n%s", m)
	}

	tampered := bytes.Replace(signed, []byte("The real text."), []byte("Send bitcoin now"), 1)
	code, text := c.send("bounces@mailer.example", h.user, tampered)
	if code != 550 || !strings.Contains(strings.ToUpper(text), "DMARC") {
		t.Fatalf("tampered message under p=reject: %d %s", code, text)
	}
	recs := refusalsFor(t, h, rejectlog.Query{Filter: "dmarc"})
	if len(recs) != 1 || recs[0].Stage != "data" {
		t.Fatalf("DMARC refusal not logged: %+v", recs)
	}
	foundDKIMFail := false
	for _, r := range recs[0].Results {
		foundDKIMFail = foundDKIMFail || (r.Filter == "dkim" && strings.Contains(r.Reason, "fail"))
	}
	if !foundDKIMFail {
		t.Errorf("rejection log lacks the DKIM failure: %+v", recs[0].Results)
	}

	// p=quarantine: accepted, filed into Junk.
	q := "From: promo@quarantine.test\r\nTo: alice@example.test\r\nSubject: deal\r\n\r\nx\r\n"
	if code, text := c.send("promo@quarantine.test", h.user, []byte(q)); code != 250 {
		t.Fatalf("quarantined message: %d %s", code, text)
	}
	junk, _ := filepath.Glob(filepath.Join(h.maildir(h.user), ".Junk", "new", "*"))
	if len(junk) != 1 {
		t.Fatalf("%d messages in Junk, want 1", len(junk))
	}
}

// Greylisting with the state in Redis: two gateway processes share one
// picture; the first sees a new triplet and defers it, the second accepts
// the retry after the delay.
func TestGreylistSharedThroughRedis(t *testing.T) {
	if !redisUp() {
		if os.Getenv("CI") != "" {
			t.Fatal("Redis on 127.0.0.1:6379 is not reachable; .ci/run should have started it")
		}
		t.Skip("no Redis on 127.0.0.1:6379")
	}
	prefix := fmt.Sprintf("postern-test-%d:", time.Now().UnixNano())
	settings := map[string]string{
		"statestore": "redis 127.0.0.1:6379 prefix=" + prefix + "\n",
		"greylist":   "delay 1s\n",
		"filters":    "greylist\n",
	}
	a := newFilterHarness(t, baseZone(), settings)
	b := newFilterHarness(t, baseZone(), settings)
	ca := dialRaw(t, a.addr("smtp"))
	ca.as("203.0.113.5", "mx.newsender.example")
	code, text := ca.send("first@newsender.example", a.user, testMessage("grey", "x\r\n"))
	if code != 451 || !strings.Contains(text, "Greylisted") {
		t.Fatalf("first attempt: %d %s", code, text)
	}
	time.Sleep(1200 * time.Millisecond)
	cb := dialRaw(t, b.addr("smtp"))
	cb.as("203.0.113.5", "mx.newsender.example")
	if code, text := cb.send("first@newsender.example", b.user, testMessage("grey", "x\r\n")); code != 250 {
		t.Fatalf("retry through the other gateway: %d %s", code, text)
	}
}

// Redis down: greylisting degrades as configured (default: let mail pass)
// instead of refusing everything or accepting blindly without saying so.
func TestGreylistRedisDownDegrades(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	h := newFilterHarness(t, baseZone(), map[string]string{
		"statestore": "redis " + dead + "\n",
		"filters":    "greylist\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.6", "mx.any.example")
	if code, text := c.send("a@any.example", h.user, testMessage("redis down", "x\r\n")); code != 250 {
		t.Fatalf("with Redis down (onstoreerror pass): %d %s", code, text)
	}
	h.stop()
	h.writeSetting("greylist", "onstoreerror tempfail\n")
	h.start()
	c = dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.6", "mx.any.example")
	if code, _ := c.send("a@any.example", h.user, testMessage("redis down", "x\r\n")); code != 451 {
		t.Fatalf("with Redis down (onstoreerror tempfail): %d", code)
	}
}

// Rate limits: the third message in the window from one client network is
// deferred with a reply naming the limit.
func TestRateLimit(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{"ratelimit": "client /24 messages 2/1h\n", "filters": "ratelimit\n"})
	c := dialRaw(t, h.addr("smtp"))
	c.as("203.0.113.7", "mx.bulk.example")
	for i := 0; i < 2; i++ {
		if code, text := c.send("a@bulk.example", h.user, testMessage("n", "x\r\n")); code != 250 {
			t.Fatalf("message %d: %d %s", i+1, code, text)
		}
	}
	code, text := c.send("a@bulk.example", h.user, testMessage("n", "x\r\n"))
	if code != 451 || !strings.Contains(text, "Rate limit exceeded") {
		t.Fatalf("third message: %d %s", code, text)
	}
}

func redisUp() bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// behaviour: a client that talks before the banner (with a greeting delay)
// is refused (postscreen's pregreet test).
func TestFilterEarlyTalker(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{"filters": "behaviour\n", "smtpgreetdelay": "1s\n"})
	conn, err := net.DialTimeout("tcp", h.addr("smtp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "EHLO impatient.example\r\n") // before the banner
	r := bufio.NewReader(conn)
	var replies []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, strings.TrimSpace(line))
		if strings.HasPrefix(line, "421") || strings.HasPrefix(line, "554") {
			break
		}
	}
	joined := strings.Join(replies, " | ")
	if !strings.Contains(joined, "421") && !strings.Contains(joined, "554") {
		t.Fatalf("early talker not refused: %s", joined)
	}
	recs := refusalsFor(t, h, rejectlog.Query{Filter: "behaviour"})
	if len(recs) == 0 {
		t.Fatal("early talker refusal not in the rejection log")
	}

	// A patient client is served.
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.8", "mx.patient.example")
	if code, text := c.send("a@nospf.test", h.user, testMessage("patient", "x\r\n")); code != 250 {
		t.Fatalf("patient client: %d %s", code, text)
	}
}

// bofh: Courier's badfrom refuses a sender.
func TestFilterBofhBadfrom(t *testing.T) {
	h := newFilterHarness(t, baseZone(), map[string]string{"filters": "bofh\n", "bofh": "badfrom @spammy.example\n"})
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.9", "mx.spammy.example")
	code, text := c.send("boss@spammy.example", h.user, testMessage("x", "x\r\n"))
	if code/100 != 5 {
		t.Fatalf("badfrom sender accepted: %d %s", code, text)
	}
}

// Rate limits with the state in Redis: two gateways count together.
func TestRateLimitSharedThroughRedis(t *testing.T) {
	if !redisUp() {
		if os.Getenv("CI") != "" {
			t.Fatal("Redis on 127.0.0.1:6379 is not reachable")
		}
		t.Skip("no Redis on 127.0.0.1:6379")
	}
	settings := map[string]string{
		"statestore": fmt.Sprintf("redis 127.0.0.1:6379 prefix=postern-rl-%d:\n", time.Now().UnixNano()),
		"ratelimit":  "client /24 messages 2/1h\n",
		"filters":    "ratelimit\n",
	}
	a := newFilterHarness(t, baseZone(), settings)
	b := newFilterHarness(t, baseZone(), settings)
	for i, h := range []*harness{a, b} {
		c := dialRaw(t, h.addr("smtp"))
		c.as("203.0.113.77", "mx.bulk.example")
		if code, text := c.send("a@bulk.example", h.user, testMessage("n", "x\r\n")); code != 250 {
			t.Fatalf("message %d: %d %s", i+1, code, text)
		}
	}
	c := dialRaw(t, a.addr("smtp"))
	c.as("203.0.113.77", "mx.bulk.example")
	if code, text := c.send("a@bulk.example", a.user, testMessage("n", "x\r\n")); code != 451 {
		t.Fatalf("third message across two gateways: %d %s", code, text)
	}
}

// milterScanner is a content scanner behind the milter protocol, as
// clamav-milter or Rspamd: VIRUS in the body is refused, SPAM is
// quarantined, everything it passes gets X-Virus-Scanned.
type milterScanner struct {
	milterBody
}

// milterBody is a milter that collects the body it is sent.
type milterBody struct {
	gomilter.NoOpMilter
	body bytes.Buffer
}

func (b *milterBody) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	b.body.Write(chunk)
	return gomilter.RespContinue, nil
}

func (s *milterScanner) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	switch {
	case strings.Contains(s.body.String(), "VIRUS"):
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), "554 5.7.1 Infected: Eicar-Test-Signature"), nil
	case strings.Contains(s.body.String(), "SPAM"):
		m.Quarantine("spam score 12")
	}
	m.AddHeader("X-Virus-Scanned", "clamav-milter 1.0 at scanner.test")
	return gomilter.RespAccept, nil
}

// milters: a milter named in filters sees each message at the end of DATA;
// its refusal is the client's reply, its quarantine files into Junk, and
// the header field it adds is in the delivered message.
func TestFilterMilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return &milterScanner{} }, Actions: gomilter.OptAddHeader | gomilter.OptQuarantine}
	go srv.Serve(ln)
	// The listener is closed rather than srv.Close called: go-milter's
	// Server sets its closed flag without a lock (a race with Serve).
	t.Cleanup(func() { ln.Close() })
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters": "milter:clamav\n",
		"milters": "clamav inet:" + ln.Addr().String() + " onerror=tempfail timeout=5s\n",
	})
	send := func(body string) (int, string) {
		c := dialRaw(t, h.addr("smtp"))
		c.as("192.0.2.7", "mail.good.test")
		return c.send("x@good.test", h.user, testMessage("scan me", body))
	}
	if code, text := send("X5O!P%@AP[4\\PZX54(P^)7CC)7} VIRUS\r\n"); code != 554 || !strings.Contains(text, "5.7.1 Infected: Eicar-Test-Signature") {
		t.Fatalf("infected message: %d %s", code, text)
	}
	if code, text := send("hello\r\n"); code != 250 {
		t.Fatalf("clean message: %d %s", code, text)
	}
	if code, text := send("cheap SPAM\r\n"); code != 250 {
		t.Fatalf("spam: %d %s", code, text)
	}
	inbox := inboxMessages(t, h, h.user)
	if len(inbox) != 1 || !bytes.Contains(inbox[0], []byte("X-Virus-Scanned: clamav-milter 1.0 at scanner.test")) {
		t.Fatalf("inbox: %q", inbox)
	}
	junk, _ := filepath.Glob(filepath.Join(h.maildir(h.user), ".Junk", "new", "*"))
	if len(junk) != 1 {
		t.Fatalf("%d messages in Junk, want 1", len(junk))
	}

	// The scanner goes away: with onerror=tempfail the client is asked to
	// come back later, nothing is accepted unscanned.
	ln.Close()
	if code, text := send("hello again\r\n"); code != 451 {
		t.Fatalf("scanner down: %d %s", code, text)
	}
}

// milterRewriter acts as Rspamd's "rewrite subject" action and its
// removal of forged spam headers, and as a milter diverting mail (a new
// recipient, the old one removed, a new body and sender).
type milterRewriter struct {
	milterBody
}

func (s *milterRewriter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	m.ChangeHeader(1, "Subject", "*** SPAM *** cheap pills")
	m.ChangeHeader(1, "X-Spam-Status", "") // the client's own claim goes
	if strings.Contains(s.body.String(), "DIVERT") {
		m.AddRecipient("carol@example.test")
		m.DeleteRecipient("alice@example.test")
		m.ReplaceBody([]byte("diverted\n"))
	}
	return gomilter.RespAccept, nil
}

// milters that change the message: the delivered message has the new
// Subject, no forged field (Maildir files have LF line ends), and a diverted one reaches only the added
// recipient, with its new body.
func TestFilterMilterChanges(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return &milterRewriter{} },
		Actions: gomilter.OptChangeHeader | gomilter.OptChangeBody | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters": "milter:rspamd\n",
		"milters": "rspamd inet:" + ln.Addr().String() + " timeout=5s\n",
	})
	h.addUser("carol@example.test", "pw")
	send := func(body string) {
		t.Helper()
		c := dialRaw(t, h.addr("smtp"))
		c.as("192.0.2.7", "mail.good.test")
		msg := append([]byte("X-Spam-Status: No, score=-100\r\n"), testMessage("cheap pills", body)...)
		if code, text := c.send("x@good.test", h.user, msg); code != 250 {
			t.Fatalf("%d %s", code, text)
		}
	}
	send("hello\r\n")
	inbox := inboxMessages(t, h, h.user)
	if len(inbox) != 1 || !bytes.Contains(inbox[0], []byte("\nSubject: *** SPAM *** cheap pills\n")) ||
		bytes.Contains(inbox[0], []byte("X-Spam-Status")) || !bytes.HasSuffix(inbox[0], []byte("\n\nhello\n")) {
		t.Fatalf("inbox: %q", inbox)
	}
	send("DIVERT this\r\n")
	if inbox := inboxMessages(t, h, h.user); len(inbox) != 1 {
		t.Fatalf("alice has %d messages after the diverted one, want 1", len(inbox))
	}
	carol := inboxMessages(t, h, "carol@example.test")
	if len(carol) != 1 || !bytes.HasSuffix(carol[0], []byte("\n\ndiverted\n")) || !bytes.Contains(carol[0], []byte("Subject: *** SPAM ***")) {
		t.Fatalf("carol: %q", carol)
	}
}

// outboundScanner is Rspamd or OpenDKIM on the submission side: it signs
// what an authenticated user sends and refuses outgoing spam.
type outboundScanner struct {
	milterBody
	user string // {auth_authen}, sent with MAIL FROM
}

func (s *outboundScanner) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.user = m.Macros["{auth_authen}"] + " " + m.Macros["{auth_type}"]
	return gomilter.RespContinue, nil
}

func (s *outboundScanner) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	if strings.Contains(s.body.String(), "OUTBOUND SPAM") {
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), "550 5.7.1 Spam message rejected"), nil
	}
	m.AddHeader("DKIM-Signature", "v=1; a=rsa-sha256; d=example.test; s=test; i="+s.user)
	return gomilter.RespAccept, nil
}

// refuseAll is an inbound-only scanner that refuses everything.
type refuseAll struct{ gomilter.NoOpMilter }

func (refuseAll) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespReject, nil
}

func listenMilter(t *testing.T, m func() gomilter.Milter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: m, Actions: gomilter.OptAddHeader | gomilter.OptQuarantine}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// Milters see authenticated users' mail too (authenticated=yes, the
// default, as Postfix's smtpd_milters on the submission port), with
// {auth_authen}: the field one adds is delivered, its refusal is the
// user's reply; a milter with authenticated=no is not asked. The
// inbound checks' fields (score, Authentication-Results) are not added.
func TestFilterMilterAuthenticated(t *testing.T) {
	out := listenMilter(t, func() gomilter.Milter { return &outboundScanner{} })
	in := listenMilter(t, func() gomilter.Milter { return refuseAll{} })
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters": "milter:rspamd\nmilter:inbound\n",
		"milters": "rspamd inet:" + out + " timeout=5s\ninbound inet:" + in + " authenticated=no\n",
	})
	if err := submit(t, h, h.user, []string{h.user}, testMessage("signed", "hello\r\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	inbox := inboxMessages(t, h, h.user)
	if len(inbox) != 1 || !bytes.Contains(inbox[0], []byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=test; i="+h.user+" PLAIN\n")) ||
		bytes.Contains(inbox[0], []byte("X-Postern-Score")) {
		t.Fatalf("inbox: %q", inbox)
	}
	err := submit(t, h, h.user, []string{h.user}, testMessage("spam", "OUTBOUND SPAM\r\n"), nil, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "Spam message rejected") {
		t.Fatalf("outgoing spam: %v", err)
	}
	// From outside, both milters check: the inbound one refuses.
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("x@good.test", h.user, testMessage("in", "hello\r\n")); code != 550 {
		t.Fatalf("inbound: %d %s", code, text)
	}
}

// A milter's quarantine with a relayed recipient (a perimeter MX): the
// local copy goes to Junk and the relayed one is held in the queue, as
// Postfix's HOLD does, until "postern queue release"; clean mail is
// relayed at once.
func TestMilterQuarantineHoldsRelayedCopy(t *testing.T) {
	addr := listenMilter(t, func() gomilter.Milter { return &milterScanner{} })
	h, remote := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("esmtpacceptmailfor", "remote.example\n")
		h.writeSetting("filters", "milter:scan\n")
		h.writeSetting("milters", "scan inet:"+addr+" timeout=5s\n")
	})
	to := []string{"bob@remote.example", h.user}
	if err := h.send("someone@client.example.net", to, testMessage("clean", "hello\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the clean message relayed", func() bool { return len(remote.messages()) == 1 })
	if err := h.send("someone@client.example.net", to, testMessage("offer", "cheap SPAM\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the local copy in Junk", func() bool {
		junk, _ := filepath.Glob(filepath.Join(h.maildir(h.user), ".Junk", "new", "*"))
		return len(junk) == 1
	})

	postern := buildPostern(t)
	list := func() string {
		out, err := exec.Command(postern, "--config", h.etc, "queue", "list", "--json").CombinedOutput()
		if err != nil {
			t.Fatalf("queue list: %v\n%s", err, out)
		}
		return string(out)
	}
	var held struct {
		ID         string `json:"id"`
		Held       bool   `json:"held"`
		Quarantine string `json:"quarantine"`
	}
	waitFor(t, "the relayed copy in the queue", func() bool { return strings.Contains(list(), `"held":true`) })
	if err := json.Unmarshal([]byte(strings.TrimSpace(list())), &held); err != nil {
		t.Fatalf("queue list: %v\n%s", err, list())
	}
	if held.Quarantine != "milter scan quarantined the message: spam score 12" {
		t.Fatalf("held message: %+v", held)
	}
	time.Sleep(1500 * time.Millisecond) // a retry would have come by now
	if n := len(remote.messages()); n != 1 {
		t.Fatalf("the quarantined message reached the remote server (%d messages)", n)
	}
	if out, err := exec.Command(postern, "--config", h.etc, "queue", "release", held.ID).CombinedOutput(); err != nil {
		t.Fatalf("queue release: %v\n%s", err, out)
	}
	waitFor(t, "the released copy relayed", func() bool { return len(remote.messages()) == 2 })
	if m := remote.messages()[1]; !bytes.Contains(m.data, []byte("cheap SPAM")) {
		t.Fatalf("released message: %q", m.data)
	}
}

// startPostgrey runs Debian's postgrey (a Postfix policy server, installed
// by .ci/run) on a free loopback port with a greylisting delay of delay
// seconds: its address and a function that stops it, or a skip when it is
// not installed.
func startPostgrey(t *testing.T, delay int) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("postgrey is not installed: .ci/run installs it")
		}
		t.Skip("postgrey not installed (apt-get install postgrey)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	u, g := "root", "root"
	if os.Getuid() != 0 {
		if cur, err := user.Current(); err == nil {
			u = cur.Username
			if grp, err := user.LookupGroupId(cur.Gid); err == nil {
				g = grp.Name
			}
		}
	}
	cmd := exec.Command(bin, "--inet="+addr, "--dbdir="+dir, "--delay="+strconv.Itoa(delay),
		"--user="+u, "--group="+g, "--pidfile="+filepath.Join(dir, "pid"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	waitFor(t, "postgrey listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, stop
}

// policyservices with a real Postfix policy server: postgrey greylists a
// new (client, sender, recipient) with its DEFER_IF_PERMIT, the retry
// after its delay is taken with the X-Greylist field it prepends, and
// when it is gone the configured failure action applies.
func TestPolicyServicePostgrey(t *testing.T) {
	addr, stop := startPostgrey(t, 1)
	h := newFilterHarness(t, baseZone(), map[string]string{
		"filters":        "policy:postgrey\n",
		"policyservices": "postgrey inet:" + addr + " timeout=5s\n",
	})
	send := func() (int, string) {
		c := dialRaw(t, h.addr("smtp"))
		c.as("192.0.2.7", "mail.good.test")
		return c.send("x@good.test", h.user, testMessage("greylist me", "hello\r\n"))
	}
	// postgrey gives 4.2.0 (its workaround for Exchange) when it sees
	// Postfix's etrn_domain attribute, which Postern sends as Postfix does.
	if code, text := send(); code != 450 || !strings.HasPrefix(text, "4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.test.html") {
		t.Fatalf("first attempt: %d %s", code, text)
	}
	time.Sleep(2500 * time.Millisecond)
	if code, text := send(); code != 250 {
		t.Fatalf("retry after the delay: %d %s", code, text)
	}
	inbox := inboxMessages(t, h, h.user)
	if len(inbox) != 1 || !bytes.Contains(inbox[0], []byte("X-Greylist: delayed ")) || !bytes.Contains(inbox[0], []byte(" by postgrey-")) {
		t.Fatalf("inbox: %q", inbox)
	}
	stop()
	if code, text := send(); code != 451 || !strings.HasPrefix(text, "4.3.5 ") {
		t.Fatalf("postgrey gone: %d %s", code, text)
	}
}

// policyservices mistakes are found with their file and line, by
// "postern config" as by the server; a filter naming an undefined one too.
func TestPolicyServicesConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policyservices")
	os.WriteFile(file, []byte("pg inet:127.0.0.1:10023 stage=rcpt timeout=5s authenticated=yes\n"+
		"bad\n"+
		"pg inet:127.0.0.1:1\n"+
		"x unix:relative\n"+
		"y inet:127.0.0.1:10023 stage=helo onerror=maybe colour=blue\n"), 0o644)
	cfgs, err := loadPolicyServices(dir)
	for _, want := range []string{file + ":2: want NAME ADDRESS", file + `:3: "pg" defined twice`, file + ":4: policy service address",
		file + ":5: stage=helo", file + ":5: onerror=maybe", file + `:5: unknown option "colour=blue"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if c := cfgs["pg"]; c.Network != "tcp" || c.Address != "127.0.0.1:10023" || c.Stage != filters.StageRcpt || c.Timeout != 5*time.Second || !c.Authenticated {
		t.Errorf("pg: %+v", c)
	}
	entries, err := parseFilterList([]policy.Line{{File: "filters", Num: 1, Text: "policy:pg score"}, {File: "filters", Num: 2, Text: "policy:"}})
	if err == nil || !strings.Contains(err.Error(), `filters:2: unknown check "policy:"`) || len(entries) != 1 || entries[0].mode != filters.ModeScore {
		t.Errorf("filter list: %v %+v", err, entries)
	}
}

// A policy service with authenticated=yes sees authenticated users' mail
// (a sending quota); one without it does not.
func TestPolicyServiceAuthenticated(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var users []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					user := ""
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\n" {
							break
						}
						if v, ok := strings.CutPrefix(strings.TrimSpace(line), "sasl_username="); ok {
							user = v
						}
					}
					mu.Lock()
					users = append(users, user)
					mu.Unlock()
					action := "DUNNO"
					if user != "" {
						action = "452 4.7.1 Sending quota of " + user + " used up"
					}
					fmt.Fprintf(c, "action=%s\n\n", action)
				}
			}()
		}
	}()
	for _, auth := range []string{"yes", "no"} {
		h := newFilterHarness(t, baseZone(), map[string]string{
			"filters":        "policy:quota\n",
			"policyservices": "quota inet:" + ln.Addr().String() + " authenticated=" + auth + "\n",
		})
		err := submit(t, h, h.user, []string{h.user}, testMessage("out", "hello\r\n"), nil, nil)
		var se *smtp.SMTPError
		if auth == "yes" && (!errors.As(err, &se) || se.Code != 452 || !strings.Contains(se.Message, "Sending quota of "+h.user+" used up")) {
			t.Fatalf("authenticated=yes: %v", err)
		}
		if auth == "no" && err != nil {
			t.Fatalf("authenticated=no: %v", err)
		}
		c := dialRaw(t, h.addr("smtp"))
		c.as("192.0.2.7", "mail.good.test")
		if code, text := c.send("x@good.test", h.user, testMessage("in", "hello\r\n")); code != 250 {
			t.Fatalf("inbound, authenticated=%s: %d %s", auth, code, text)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(users) != fmt.Sprintf("[%s  ]", "alice@example.test") {
		t.Fatalf("asked about %q, want alice's submission then the two inbound messages", users)
	}
}

// DNSBL on=body: a message linking to a domain a URI list lists is
// refused at DATA; links to our own domains are never asked (the list
// here would list them).
func TestFilterDNSBLBodyLinks(t *testing.T) {
	zone := baseZone().Add(
		`spamlink.example.uri.test. 300 IN A 127.0.1.2`,
		`example.test.uri.test. 300 IN A 127.0.1.2`,
	)
	h := newFilterHarness(t, zone, map[string]string{
		"dnsbl": "uri.test on=body codes=127.0.1.2-127.0.1.99\n",
	})
	c := dialRaw(t, h.addr("smtp"))
	c.as("192.0.2.7", "mail.good.test")
	if code, text := c.send("x@good.test", h.user, testMessage("ours", "See https://www.example.test/account\r\n")); code != 250 {
		t.Fatalf("link to our own domain: %d %s", code, text)
	}
	code, text := c.send("x@good.test", h.user, testMessage("spam", "Cheap: HTTPS://Shop.SpamLink.example/buy\r\n"))
	if code != 550 || !strings.Contains(text, "Link domain spamlink.example is listed by uri.test") {
		t.Fatalf("listed link: %d %s", code, text)
	}
}
