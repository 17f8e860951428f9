package server

import (
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/web/autoconfig"
)

func (h *harness) port(name string) int {
	h.t.Helper()
	_, p, _ := net.SplitHostPort(h.addr(name))
	n, _ := strconv.Atoi(p)
	return n
}

// webGet does a request against the web listener with a Host header.
func (h *harness) webDo(method, host, path, body string) (int, http.Header, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+h.addr("web")+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// The web listener answers Thunderbird, Outlook and Apple devices with
// the ports the listeners got, and the MTA-STS policy for mta-sts.DOMAIN.
func TestAutoconfigOnWebListener(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("mtastspolicy", "example.test mode=enforce max_age=604800\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}

	code, _, body := h.webDo("GET", "autoconfig.example.test", "/mail/config-v1.1.xml?emailaddress=alice%40example.test", "")
	if code != 200 {
		t.Fatalf("thunderbird: %d %s", code, body)
	}
	var cc autoconfig.ClientConfig
	if err := xml.Unmarshal([]byte(body), &cc); err != nil {
		t.Fatal(err)
	}
	in := cc.Provider.Incoming
	if len(in) != 3 || in[0].Port != h.port("imaps") || in[0].SocketType != "SSL" || in[1].Port != h.port("imap") ||
		in[1].SocketType != "STARTTLS" || in[2].Type != "pop3" || in[2].Port != h.port("pop3") || in[0].Hostname != "mail.example.test" {
		t.Errorf("incoming %+v", in)
	}
	if out := cc.Provider.Outgoing; len(out) != 1 || out[0].Port != h.port("submission") || out[0].SocketType != "STARTTLS" {
		t.Errorf("outgoing %+v", out)
	}
	if code, _, _ := h.webDo("GET", "autoconfig.example.net", "/mail/config-v1.1.xml", ""); code != 404 {
		t.Errorf("unknown domain: %d", code)
	}

	code, _, body = h.webDo("POST", "autodiscover.example.test", "/autodiscover/autodiscover.xml",
		`<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.test</EMailAddress></Request></Autodiscover>`)
	var ad autoconfig.AutodiscoverResponse
	if err := xml.Unmarshal([]byte(body), &ad); code != 200 || err != nil {
		t.Fatalf("autodiscover: %d %v %s", code, err, body)
	}
	ps := ad.Response.Account.Protocols
	if len(ps) != 3 || ps[0].Type != "IMAP" || ps[0].Port != h.port("imaps") || ps[2].Type != "SMTP" || ps[2].Port != h.port("submission") || ps[2].Encryption != "TLS" {
		t.Errorf("autodiscover protocols %+v", ps)
	}
	if code, _, _ := h.webDo("POST", "x", "/autodiscover/autodiscover.xml", strings.Repeat("<a>", 70000)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized autodiscover: %d", code)
	}

	code, hdr, body := h.webDo("GET", "mail.example.test", "/mail/apple.mobileconfig?emailaddress=alice%40example.test", "")
	if code != 200 || hdr.Get("Content-Type") != autoconfig.AppleContentType || !strings.Contains(body, "<integer>"+strconv.Itoa(h.port("imaps"))+"</integer>") {
		t.Errorf("apple: %d %q\n%s", code, hdr.Get("Content-Type"), body)
	}
	if err := xml.Unmarshal([]byte(body), new(struct{})); err != nil {
		t.Errorf("apple profile: %v", err)
	}

	code, hdr, body = h.webDo("GET", "mta-sts.example.test", "/.well-known/mta-sts.txt", "")
	if want := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"; code != 200 || body != want || hdr.Get("Content-Type") != "text/plain" {
		t.Errorf("mta-sts: %d %q %q", code, hdr.Get("Content-Type"), body)
	}
	if code, _, _ := h.webDo("GET", "mail.example.test", "/.well-known/mta-sts.txt", ""); code != 404 {
		t.Errorf("mta-sts for another host: %d", code)
	}
	// The webmail keeps the rest of /mail/.
	if code, _, _ := h.webDo("GET", "mail.example.test", "/mail/", ""); code == 404 {
		t.Errorf("webmail gone: %d", code)
	}
}

// A bad mtastspolicy line refuses the reload (file:line), and the
// running policy stays.
func TestBadMTASTSPolicyRefusesReload(t *testing.T) {
	h := newHarness(t)
	h.writeSetting("mtastspolicy", "example.test mode=testing max_age=86400\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	h.writeSetting("mtastspolicy", "example.test mode=testing max_age=86400\n# fine so far\nexample.test mode=strict max_age=1\n")
	err := h.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), "mtastspolicy:3: ") {
		t.Fatalf("reload: %v", err)
	}
	if err := CheckConfig(h.srv.Config()); err == nil || !strings.Contains(err.Error(), "mtastspolicy:3: ") {
		t.Errorf("CheckConfig: %v", err)
	}
	if code, _, body := h.webDo("GET", "mta-sts.example.test", "/.well-known/mta-sts.txt", ""); code != 200 || !strings.Contains(body, "mode: testing") {
		t.Errorf("after a refused reload: %d %q", code, body)
	}
}
