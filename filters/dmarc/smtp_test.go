package dmarc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/filters"
	"postern/filters/authres"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dns"
	"postern/internal/gosmtptest"
)

// testGateway is the smallest SMTP server that runs the DATA-stage filters
// the way the gateway does: dkim, then dmarc with the dkim result in the
// session; a Reject becomes the SMTP reply, an accepted message is stored
// with forged Authentication-Results removed and ours added.
type testGateway struct {
	filters []filters.DataChecker
	mu      sync.Mutex
	stored  []string
}

const ourID = "mx.example.net"

func (g *testGateway) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ap, _ := netip.ParseAddrPort(c.Conn().RemoteAddr().String())
	return &testSession{g: g, s: &filters.Session{ClientIP: ap.Addr().Unmap(), HELO: c.Hostname(), ESMTP: true}}, nil
}

type testSession struct {
	g *testGateway
	s *filters.Session
}

func (t *testSession) Reset()        { t.s.From, t.s.Rcpts, t.s.Results = "", nil, nil }
func (t *testSession) Logout() error { return nil }
func (t *testSession) Mail(from string, _ *smtp.MailOptions) error {
	t.s.From = from
	return nil
}
func (t *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	t.s.Rcpts = append(t.s.Rcpts, to)
	return nil
}

func (t *testSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := message(string(raw))
	var ar []string
	for _, f := range t.g.filters {
		res := f.CheckData(ctx, t.s, msg)
		t.s.Results = append(t.s.Results, res)
		ar = append(ar, res.AuthResults...)
		if res.Verdict == filters.Reject {
			var enh smtp.EnhancedCode
			for i, p := range strings.SplitN(res.Enhanced, ".", 3) {
				enh[i] = int(p[0] - '0')
			}
			return &smtp.SMTPError{Code: res.Code, EnhancedCode: enh, Message: res.Message}
		}
	}
	stored := authres.Field(ourID, ar) + "\r\n" + string(authres.StripForgedAuthResults(raw, ourID))
	t.g.mu.Lock()
	t.g.stored = append(t.g.stored, stored)
	t.g.mu.Unlock()
	return nil
}

func startGateway(t *testing.T, r *dns.Resolver) (*testGateway, string) {
	t.Helper()
	return startGatewayWith(t, dmarc.Options{Resolver: r})
}

func startGatewayWith(t *testing.T, opts dmarc.Options) (*testGateway, string) {
	t.Helper()
	r := opts.Resolver
	df, err := dkim.New(dkim.Options{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	mf, err := dmarc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &testGateway{filters: []filters.DataChecker{df, mf}}
	srv := smtp.NewServer(g)
	srv.Domain = ourID
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gosmtptest.Serve(t, srv, ln)
	return g, ln.Addr().String()
}

func send(t *testing.T, addr, helo, from, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	c.Quit()
	return err
}

// TestThroughSMTPSession: DKIM and DMARC decide inside a real SMTP session
// from a real client, over real DNS: a message signed by the author domain
// is accepted with our Authentication-Results (and a forged one removed);
// a forgery of a p=reject domain is refused at DATA with a 5xx naming
// DMARC.
func TestThroughSMTPSession(t *testing.T) {
	checkGoroutines(t)
	key, err := dkim.GenerateKey("rsa", 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := dkim.Key{Domain: "example.org", Selector: "mx2026", Signer: key}
	rec, _ := dkim.DNSRecord(k)
	r, _ := world(t, strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
	g, addr := startGateway(t, r)

	body := mail("Bank <service@example.org>")
	field, err := dkim.NewSigner([]dkim.Key{k}).Sign(context.Background(), "example.org", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	forgedAR := "Authentication-Results: mx.example.net; dkim=pass header.d=bank.example\r\n"
	signed := forgedAR + field + "\r\n" + body

	// 127.0.0.1 is not in example.org's SPF record: DKIM alone carries it.
	if err := send(t, addr, "relay.example.net", "bounce@example.org", signed); err != nil {
		t.Fatalf("signed message refused: %v", err)
	}
	g.mu.Lock()
	stored := g.stored[0]
	g.mu.Unlock()
	if !strings.HasPrefix(stored, "Authentication-Results: mx.example.net;\r\n\tdkim=pass header.d=example.org header.s=mx2026") ||
		!strings.Contains(stored, "\tdmarc=pass (p=reject dis=none) header.from=example.org\r\n") {
		t.Errorf("stored header:\n%s", stored[:strings.Index(stored, "\r\n\r\n")])
	}
	if strings.Contains(stored, "bank.example") {
		t.Error("forged Authentication-Results kept")
	}

	// Tampered in transit: DKIM fails, SPF fails, p=reject: 550 at DATA.
	tampered := strings.Replace(signed, "Hello Bob.", "Hello Bob, please wire the money.", 1)
	err = send(t, addr, "relay.example.net", "bounce@example.org", tampered)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || se.Message != "Rejected by DMARC policy for example.org" {
		t.Fatalf("tampered: got %v, want 550 5.7.1 naming DMARC", err)
	}

	// An unsigned forgery of a quarantine domain is accepted (into Junk).
	if err := send(t, addr, "relay.example.net", "x@quarantine.example", mail("a@quarantine.example")); err != nil {
		t.Errorf("quarantine domain refused: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stored) != 2 || !bytes.Contains([]byte(g.stored[1]), []byte("dmarc=fail (p=quarantine dis=quarantine)")) {
		t.Errorf("stored %d messages; last:\n%s", len(g.stored), g.stored[len(g.stored)-1])
	}
}

type observations struct {
	mu  sync.Mutex
	obs []dmarc.Observation
}

func (o *observations) RecordDMARC(ob dmarc.Observation) {
	o.mu.Lock()
	o.obs = append(o.obs, ob)
	o.mu.Unlock()
}

// TestObservationsThroughSMTPSession: what the filter hands the aggregate
// reports' recorder for messages through a real session: the client
// address, the envelope domain and SPF, every DKIM signature with its
// selector and result (from the dkim filter's answer), and the
// disposition, for a pass and for a refused forgery; nothing for a domain
// without a policy.
func TestObservationsThroughSMTPSession(t *testing.T) {
	key, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	k := dkim.Key{Domain: "example.org", Selector: "mx2026", Signer: key}
	rec, _ := dkim.DNSRecord(k)
	r, _ := world(t, strings.Replace(rec, " IN TXT ", " 300 IN TXT ", 1))
	rep := &observations{}
	_, addr := startGatewayWith(t, dmarc.Options{Resolver: r, Reports: rep})
	body := mail("Bank <service@example.org>")
	field, err := dkim.NewSigner([]dkim.Key{k}).Sign(context.Background(), "example.org", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	signed := field + "\r\n" + body
	if err := send(t, addr, "relay.example.net", "bounce@example.org", signed); err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(signed, "Hello Bob.", "Hello Bob, wire the money.", 1)
	if err := send(t, addr, "relay.example.net", "bounce@Example.ORG", tampered); err == nil {
		t.Fatal("tampered message accepted")
	}
	if err := send(t, addr, "relay.example.net", "x@nopolicy.example", mail("a@nopolicy.example")); err != nil {
		t.Fatal(err)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.obs) != 2 {
		t.Fatalf("%d observations, want 2 (none without a policy): %+v", len(rep.obs), rep.obs)
	}
	pass, fail := rep.obs[0], rep.obs[1]
	if pass.SourceIP.String() != "127.0.0.1" || pass.EnvelopeFrom != "example.org" || pass.SPFScope != "mfrom" || pass.SPFDomain != "example.org" ||
		len(pass.DKIM) != 1 || pass.DKIM[0] != (dkim.SignatureResult{Result: "pass", Domain: "example.org", Selector: "mx2026"}) ||
		pass.Evaluation.Status != dmarc.Pass || !pass.Evaluation.DKIMAligned || pass.Evaluation.RecordDomain != "example.org" || pass.Time.IsZero() {
		t.Errorf("pass: %+v", pass)
	}
	if fail.EnvelopeFrom != "example.org" || len(fail.DKIM) != 1 || fail.DKIM[0].Result != "fail" || fail.DKIM[0].Selector != "mx2026" ||
		fail.Evaluation.Disposition != dmarc.PolicyReject || fail.Evaluation.DKIMAligned || fail.Evaluation.Record.Policy != dmarc.PolicyReject {
		t.Errorf("fail: %+v", fail)
	}
}
