package autoconfig

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"postern/filters/dkim"
	"postern/policy"
)

// RecordInputs are what a domain's DNS records are made from, beyond the
// Settings: the parts of the configuration that are not about clients.
type RecordInputs struct {
	Domain string
	// DKIM are the domain's signing keys (CONFIGDIR/dkim).
	DKIM []dkim.Key
	// DMARCRua is the address DMARC aggregate reports are asked for at
	// ("" when dmarcreports is off: no rua).
	DMARCRua string
	// TLSRPTRua is where SMTP TLS reports (RFC 8460) are asked for.
	TLSRPTRua string
	// Certificate is the certificate port 25 presents for me (nil: none
	// configured, no TLSA record).
	Certificate *x509.Certificate
	// ACME: certificates come from an ACME CA (acmehosts).
	ACME bool
	// WebsPort is the HTTPS web listener's port, 0 without one.
	WebsPort int
}

// InputsFromConfig gathers the RecordInputs of domain from cfg.
func InputsFromConfig(cfg *policy.Config, domain string) (RecordInputs, error) {
	in := RecordInputs{Domain: domain, ACME: cfg.ACME != nil}
	keys, err := dkim.LoadKeys(filepath.Join(cfg.Dir, dkim.KeyDir))
	if err != nil {
		return in, err
	}
	for _, k := range keys {
		if k.Domain == domain {
			in.DKIM = append(in.DKIM, k)
		}
	}
	sort.Slice(in.DKIM, func(i, j int) bool { return in.DKIM[i].Selector < in.DKIM[j].Selector })
	postmaster := "postmaster@" + domain
	if cfg.DMARCReports {
		in.DMARCRua = postmaster
		if cfg.DMARCReportFrom != "" {
			in.DMARCRua = cfg.DMARCReportFrom
		}
	}
	in.TLSRPTRua = postmaster
	if cfg.TLSRPTFrom != "" {
		in.TLSRPTRua = cfg.TLSRPTFrom
	}
	in.Certificate = certificateFor(cfg, cfg.Me)
	for _, l := range cfg.ListenersNamed(policy.ListenWebs) {
		if _, port, err := net.SplitHostPort(l.Address); err == nil {
			if n, _ := strconv.Atoi(port); n > 0 {
				in.WebsPort = n
				break
			}
		}
	}
	return in, nil
}

// certificateFor is the tlscert certificate a client asking for host
// gets: the first whose names cover it, else the first.
func certificateFor(cfg *policy.Config, host string) *x509.Certificate {
	var first *x509.Certificate
	for _, c := range cfg.TLSCertificates {
		if c == nil || len(c.Certificate) == 0 {
			continue
		}
		leaf := c.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				continue
			}
		}
		if leaf.VerifyHostname(host) == nil {
			return leaf
		}
		if first == nil {
			first = leaf
		}
	}
	return first
}

// srvServices are the SRV names of RFC 6186 and RFC 8314 with the listener
// that offers each.
var srvServices = []struct{ srv, listener string }{
	{"_submissions._tcp", policy.ListenSubmissions},
	{"_submission._tcp", policy.ListenSubmission},
	{"_imaps._tcp", policy.ListenIMAPS},
	{"_imap._tcp", policy.ListenIMAP},
	{"_pop3s._tcp", policy.ListenPOP3S},
	{"_pop3._tcp", policy.ListenPOP3},
}

// WriteRecords writes the zone-file records the domain should publish,
// each after comments that say what it is for.
func (s Settings) WriteRecords(w io.Writer, in RecordInputs) error {
	d := in.Domain + "."
	me := s.Hostname + "."
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	txt := func(name, value string) { line("%s IN TXT %s", name, quoteTXT(value)) }

	line("; DNS records for %s, served by %s (postern dns records).", in.Domain, s.Hostname)
	line("; Publish them in the zone of %s; names end in '.', so they are absolute.", in.Domain)
	line("")
	line("; %s itself needs A and/or AAAA records with its public addresses, and", s.Hostname)
	line("; each address a PTR record naming %s: receivers check both.", s.Hostname)
	line("")
	line("; MX: mail for %s is delivered to %s (RFC 5321 section 5.1).", in.Domain, s.Hostname)
	line("%s IN MX 10 %s", d, me)
	line("")
	line("; SPF (RFC 7208): the domain's MX hosts send its mail. ~all (softfail) rather")
	line("; than -all: some receivers reject a -all failure at MAIL FROM, before DKIM")
	line("; and DMARC are looked at, which loses forwarded mail that DKIM would have")
	line("; vouched for (RFC 7489 section 10.1); DMARC's p= is where to be strict.")
	txt(d, "v=spf1 mx ~all")
	line("")
	if len(in.DKIM) == 0 {
		line("; DKIM: no signing key for %s yet. Make one with", in.Domain)
		line(";   postern dkim keygen %s", in.Domain)
		line("; and run this command again for its record.")
	} else {
		line("; DKIM (RFC 6376 section 3.6.2): the public key of each signing key, from")
		line("; CONFIG/dkim. Publish a new key before the server signs with it.")
		for _, k := range in.DKIM {
			rec, err := dkim.DNSRecord(k)
			if err != nil {
				return fmt.Errorf("dkim key %s: %w", k.File, err)
			}
			line("%s", rec)
		}
	}
	line("")
	line("; DMARC (RFC 7489): start with p=none and watch the reports; move to")
	line("; p=quarantine, then p=reject, once all of the domain's mail passes.")
	dmarc := "v=DMARC1; p=none"
	if in.DMARCRua != "" {
		line("; Aggregate reports go to %s (dmarcreports is on).", in.DMARCRua)
		dmarc += "; rua=mailto:" + in.DMARCRua
	} else {
		line("; No rua=: with dmarcreports off nobody here reads reports. Add")
		line("; \"; rua=mailto:ADDRESS\" to have receivers send them.")
	}
	txt("_dmarc."+d, dmarc)
	if _, ruaDomain, ok := strings.Cut(in.DMARCRua, "@"); ok && !strings.EqualFold(ruaDomain, in.Domain) {
		line("; The reports go to another domain, which must agree to take them")
		line("; (RFC 7489 section 7.1), in ITS zone:")
		txt(in.Domain+"._report._dmarc."+strings.ToLower(ruaDomain)+".", "v=DMARC1")
	}
	line("")
	line("; SMTP TLS reporting (RFC 8460): where senders report TLS failures")
	line("; reaching %s.", s.Hostname)
	txt("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:"+in.TLSRPTRua)
	line("")
	if p, ok := s.MTASTS.Get(in.Domain); ok {
		line("; MTA-STS (RFC 8461): the policy (mode %s) is served at", p.Mode)
		line("; https://mta-sts.%s/.well-known/mta-sts.txt; the id changes with it.", in.Domain)
		txt("_mta-sts."+d, "v=STSv1; id="+p.ID)
		line("; Senders fetch the policy over HTTPS on port 443 with a certificate valid")
		line("; for mta-sts.%s (list the name in acmehosts), from the webs listener.", in.Domain)
		line("mta-sts.%s IN CNAME %s", d, me)
	} else {
		line("; MTA-STS: no policy for %s. Add a line to the mtastspolicy setting", in.Domain)
		line("; (\"%s mode=testing max_age=604800\") to serve one (docs/autoconfig.md).", in.Domain)
	}
	line("")
	line("; Client autoconfiguration: Thunderbird asks autoconfig.%s, Outlook", in.Domain)
	line("; autodiscover.%s, over HTTPS; both are answered by the web listeners.", in.Domain)
	line("autoconfig.%s IN CNAME %s", d, me)
	line("autodiscover.%s IN CNAME %s", d, me)
	if in.WebsPort > 0 {
		line("; Outlook also looks for Autodiscover by SRV.")
		line("_autodiscover._tcp.%s IN SRV 0 1 %d %s", d, in.WebsPort, me)
	}
	line("")
	line("; Mail client services (RFC 6186, RFC 8314 section 5.1): implicit TLS is")
	line("; preferred (priority 0) over STARTTLS (priority 10). A service not offered")
	line("; has the target \".\" (RFC 6186 section 4).")
	var loopback []string
	for _, svc := range s.Services {
		if svc.Loopback {
			loopback = append(loopback, svc.Listener)
		}
	}
	if len(loopback) > 0 {
		line("; Note: %s listen on loopback only (listen): clients elsewhere cannot", strings.Join(loopback, ", "))
		line("; reach them until they listen on a public address.")
	}
	for _, ss := range srvServices {
		var svc *Service
		for i := range s.Services {
			if s.Services[i].Listener == ss.listener {
				svc = &s.Services[i]
				break
			}
		}
		if svc == nil {
			line("%s.%s IN SRV 0 0 0 .", ss.srv, d)
			continue
		}
		prio := 0
		if !svc.ImplicitTLS {
			prio = 10
		}
		line("%s.%s IN SRV %d 1 %d %s", ss.srv, d, prio, svc.Port, me)
	}
	line("")
	switch {
	case in.Certificate != nil:
		sum := sha256.Sum256(in.Certificate.RawSubjectPublicKeyInfo)
		line("; DANE (RFC 7672): senders that validate DNSSEC check %s's", s.Hostname)
		line("; certificate on port 25 against this: DANE-EE, SPKI, SHA-256 (3 1 1). Only")
		line("; with DNSSEC; publish the new key's record before changing the key.")
		if in.ACME {
			line("; ACME renewals must keep the key (or the record be updated first).")
		}
		line("_25._tcp.%s IN TLSA 3 1 1 %s", me, hex.EncodeToString(sum[:]))
	case in.ACME:
		line("; DANE: the certificate comes from ACME and is not issued yet; run this")
		line("; again once it is for the TLSA record.")
	default:
		line("; DANE: no certificate configured (tlscert), so no TLSA record.")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// quoteTXT writes a TXT value as zone-file character-strings of at most
// 255 octets (RFC 1035 section 3.3.14).
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}
