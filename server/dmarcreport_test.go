package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/filters/dmarc/report"
	"postern/filters/dns/dnstest"
)

// DMARC aggregate reports end to end: with "dmarcreports yes", three real
// SMTP transactions (two aligned SPF passes from one address; one SPF
// softfail from another, which fails DMARC and is refused at DATA by
// p=reject) are recorded by the dmarc check; the
// preview over the control socket is the Appendix C report of them; --send
// and the periodic run queue it to the rua address in another domain that
// authorized it (RFC 7489 section 7.1), delivered by the queue to the
// remote MTA, and not to the rua address whose domain did not.
func TestDMARCReportsEndToEnd(t *testing.T) {
	remote, h := dmarcReportServer(t,
		`_dmarc.sender.example. 300 IN TXT "v=DMARC1; p=reject; aspf=s; rua=mailto:dmarc@remote.example!10m,mailto:nope@refuse.example"`,
		map[string]string{"dmarcreports": "yes\n", "dmarcreportorg": "Example Test Mail\n"})
	t.Cleanup(h.stop)

	msg := []byte("From: News <news@sender.example>\r\nTo: alice@example.test\r\nSubject: hi\r\nMessage-ID: <1@sender.example>\r\n\r\nhello\r\n")
	for i, tc := range []struct {
		ip   string
		code int
	}{{"192.0.2.10", 250}, {"192.0.2.10", 250}, {"203.0.113.7", 550}} {
		c := dialRaw(t, h.addr("smtp"))
		c.as(tc.ip, "mta.sender.example")
		if code, text := c.send("bounce@sender.example", h.user, msg); code != tc.code {
			t.Fatalf("message %d from %s: %d %s, want %d", i, tc.ip, code, text, tc.code)
		}
		c.cmd("QUIT")
	}
	dayFile := filepath.Join(h.dir, "data", "state", "dmarc", time.Now().UTC().Format(time.DateOnly)+".jsonl")
	b, err := os.ReadFile(dayFile)
	if err != nil || bytes.Count(b, []byte("\n")) != 3 {
		t.Fatalf("day file: %v\n%s", err, b)
	}

	// The rows survive a restart: the report below is built by the new
	// server from what the old one wrote.
	h.restart()

	// The preview, asked of the running server as the command does.
	ctx := context.Background()
	reply, err := Control(ctx, filepath.Join(h.dir, "data"), ControlRequest{Command: "dmarcreport", Args: []string{"--preview", "--domain", "sender.example"}})
	if err != nil || reply.Status != 0 {
		t.Fatalf("preview: %v %+v", err, reply)
	}
	var fb report.Feedback
	if err := xml.Unmarshal([]byte(reply.Stdout), &fb); err != nil {
		t.Fatalf("preview is not the XML: %v\n%s", err, reply.Stdout)
	}
	checkSenderReport(t, fb)
	if !strings.Contains(reply.Stderr, "sender.example: 3 messages, 2 records") {
		t.Errorf("preview's note: %q", reply.Stderr)
	}

	// --send: queued now, delivered to the verified external address only.
	reply, err = Control(ctx, filepath.Join(h.dir, "data"), ControlRequest{Command: "dmarcreport", Args: []string{"--send", "--period", "current"}})
	if err != nil || reply.Status != 0 || !strings.HasPrefix(reply.Stdout, "1 report message(s) queued") {
		t.Fatalf("send: %v %+v", err, reply)
	}
	waitFor(t, "the report at the remote MTA", func() bool { return len(remote.messages()) == 1 })
	got := remote.messages()[0]
	if got.from != "dmarc-reports@example.test" || len(got.rcpts) != 1 || got.rcpts[0] != "dmarc@remote.example" {
		t.Fatalf("report envelope: from %s to %v", got.from, got.rcpts)
	}
	fb, name, subject := parseReportMail(t, got.data)
	checkSenderReport(t, fb)
	begin, _ := h.srv.mta.DMARCSender(h.srv.Config()).Period(0)
	if want := "example.test!sender.example!" + strconv.FormatInt(begin.Unix(), 10) + "!" + strconv.FormatInt(begin.Add(24*time.Hour).Unix()-1, 10) + ".xml.gz"; name != want {
		t.Errorf("attachment %q, want %q", name, want)
	}
	if want := "Report Domain: sender.example Submitter: example.test Report-ID: <" + fb.Metadata.ReportID + ">"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}

	// The periodic run, once the day is over: the same report, once.
	s := h.srv.mta.DMARCSender(h.srv.Config())
	s.Now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	if n, err := s.SendDue(ctx); n != 1 || err != nil {
		t.Fatalf("SendDue: %d, %v", n, err)
	}
	waitFor(t, "the day's report at the remote MTA", func() bool { return len(remote.messages()) == 2 })
	if n, _ := s.SendDue(ctx); n != 0 {
		t.Errorf("the day was reported twice")
	}
	time.Sleep(200 * time.Millisecond)
	for _, m := range remote.messages() {
		if m.rcpts[0] != "dmarc@remote.example" {
			t.Errorf("report sent to %v, which did not authorize it", m.rcpts)
		}
	}
	if _, err := os.Stat(dayFile); !os.IsNotExist(err) {
		t.Errorf("the reported day is still kept: %v", err)
	}
}

func checkSenderReport(t *testing.T, fb report.Feedback) {
	t.Helper()
	if fb.Metadata.OrgName != "Example Test Mail" || fb.Metadata.Email != "dmarc-reports@example.test" {
		t.Errorf("metadata %+v", fb.Metadata)
	}
	if pp := fb.PolicyPublished; pp.Domain != "sender.example" || pp.P != "reject" || pp.SP != "reject" || pp.ASPF != "s" || pp.ADKIM != "r" || pp.Pct != 100 {
		t.Errorf("policy_published %+v", pp)
	}
	if len(fb.Records) != 2 {
		t.Fatalf("records %+v", fb.Records)
	}
	pass, fail := fb.Records[0], fb.Records[1]
	if pass.Row.SourceIP != "192.0.2.10" || pass.Row.Count != 2 || pass.Row.PolicyEvaluated.SPF != "pass" || pass.Row.PolicyEvaluated.DKIM != "fail" ||
		pass.Row.PolicyEvaluated.Disposition != "none" || pass.Identifiers.HeaderFrom != "sender.example" || pass.Identifiers.EnvelopeFrom != "sender.example" ||
		len(pass.AuthResults.SPF) != 1 || pass.AuthResults.SPF[0] != (report.SPFAuth{Domain: "sender.example", Scope: "mfrom", Result: "pass"}) {
		t.Errorf("passing record %+v", pass)
	}
	if fail.Row.SourceIP != "203.0.113.7" || fail.Row.Count != 1 || fail.Row.PolicyEvaluated.SPF != "fail" || fail.Row.PolicyEvaluated.Disposition != "reject" ||
		fail.AuthResults.SPF[0].Result != "softfail" {
		t.Errorf("failing record %+v", fail)
	}
}

// parseReportMail returns a report message's XML, attachment name and
// subject.
func parseReportMail(t *testing.T, raw []byte) (report.Feedback, string, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no gzip attachment: %v\n%s", err, raw)
		}
		if p.Header.Get("Content-Type") != "application/gzip" {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		var fb report.Feedback
		if err := xml.Unmarshal(doc, &fb); err != nil {
			t.Fatal(err)
		}
		return fb, p.FileName(), m.Header.Get("Subject")
	}
}

// dmarcReportServer starts a remote MTA for remote.example and
// refuse.example (which authorizes no reports, where remote.example
// authorizes sender.example's), a DNS server with sender.example's SPF
// (192.0.2.0/24, ~all) and DMARC record dmarcRecord, and a server with
// the spf, dkim and dmarc checks, dmarcreportfrom
// dmarc-reports@example.test and the settings given.
func dmarcReportServer(t *testing.T, dmarcRecord string, settings map[string]string) (*remoteMTA, *harness) {
	t.Helper()
	remote := startRemoteMTA(t)
	_, port, _ := net.SplitHostPort(remote.addr)
	dnsSrv := dnstest.Start(t, dnstest.NewZone().Add(
		"remote.example. 300 IN MX 10 mx.remote.example.",
		"refuse.example. 300 IN MX 10 mx.remote.example.",
		"mx.remote.example. 300 IN A 127.0.0.2",
		`sender.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"`,
		dmarcRecord,
		`sender.example._report._dmarc.remote.example. 300 IN TXT "v=DMARC1"`,
	))
	h := &harness{t: t, dir: t.TempDir(), user: "alice@example.test", pass: "s3cret pass"}
	h.etc = filepath.Join(h.dir, "etc")
	if err := writeInit(h); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"resolvers": dnsSrv.Addr + "\n", "xclient": "127.0.0.1\n", "filters": "spf\ndkim\ndmarc\n",
		"remoteport": port + "\n", "retryalpha": "1s\n", "retrygamma": "1s\n",
		"dmarcreportfrom": "dmarc-reports@example.test\n",
	}
	for k, v := range settings {
		all[k] = v
	}
	for k, v := range all {
		h.writeSetting(k, v)
	}
	h.start()
	return remote, h
}
