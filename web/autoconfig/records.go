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

// Record is one DNS record a domain should publish, with the comment
// lines that explain it. An entry with an empty Type is a comment only
// (a record that cannot be made yet, or a note).
type Record struct {
	// Break: a blank line goes before it in the zone-file text.
	Break bool
	// Comment lines, without the leading "; ".
	Comment []string
	Name    string // absolute owner name, ending in '.'
	Type    string // MX, TXT, CNAME, SRV, TLSA
	// Value is the record data in zone-file form (a TXT value quoted and
	// split into character-strings of at most 255 octets).
	Value string
	// Text is a TXT record's value as one unquoted string.
	Text string
}

// Line is the record as a zone-file line ("" for a comment-only entry).
func (r Record) Line() string {
	if r.Type == "" {
		return ""
	}
	return r.Name + " IN " + r.Type + " " + r.Value
}

// WriteRecords writes the zone-file records the domain should publish,
// each after comments that say what it is for.
func (s Settings) WriteRecords(w io.Writer, in RecordInputs) error {
	recs, err := s.Records(in)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range recs {
		if r.Break {
			b.WriteString("\n")
		}
		for _, c := range r.Comment {
			b.WriteString("; " + c + "\n")
		}
		if r.Type != "" {
			b.WriteString(r.Line() + "\n")
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// Records returns the records the domain should publish, in the order
// WriteRecords writes them.
func (s Settings) Records(in RecordInputs) ([]Record, error) {
	d := in.Domain + "."
	me := s.Hostname + "."
	var out []Record
	var pending []string
	brk := false
	comment := func(format string, args ...any) { pending = append(pending, fmt.Sprintf(format, args...)) }
	blank := func() {
		if len(pending) > 0 {
			out = append(out, Record{Break: brk, Comment: pending})
			pending, brk = nil, false
		}
		brk = true
	}
	rec := func(name, typ, value, text string) {
		out = append(out, Record{Break: brk, Comment: pending, Name: name, Type: typ, Value: value, Text: text})
		pending, brk = nil, false
	}
	txt := func(name, value string) { rec(name, "TXT", quoteTXT(value), value) }

	comment("DNS records for %s, served by %s (postern dns records).", in.Domain, s.Hostname)
	comment("Publish them in the zone of %s; names end in '.', so they are absolute.", in.Domain)
	blank()
	comment("%s itself needs A and/or AAAA records with its public addresses, and", s.Hostname)
	comment("each address a PTR record naming %s: receivers check both.", s.Hostname)
	blank()
	comment("MX: mail for %s is delivered to %s (RFC 5321 section 5.1).", in.Domain, s.Hostname)
	rec(d, "MX", "10 "+me, "")
	blank()
	comment("SPF (RFC 7208): the domain's MX hosts send its mail. ~all (softfail) rather")
	comment("than -all: some receivers reject a -all failure at MAIL FROM, before DKIM")
	comment("and DMARC are looked at, which loses forwarded mail that DKIM would have")
	comment("vouched for (RFC 7489 section 10.1); DMARC's p= is where to be strict.")
	txt(d, "v=spf1 mx ~all")
	blank()
	if len(in.DKIM) == 0 {
		comment("DKIM: no signing key for %s yet. Make one with", in.Domain)
		comment("  postern dkim keygen %s", in.Domain)
		comment("and run this command again for its record.")
	} else {
		comment("DKIM (RFC 6376 section 3.6.2): the public key of each signing key, from")
		comment("CONFIG/dkim. Publish a new key before the server signs with it.")
		for _, k := range in.DKIM {
			value, err := dkim.PublicKeyRecord(k.Signer.Public())
			if err != nil {
				return nil, fmt.Errorf("dkim key %s: %w", k.File, err)
			}
			txt(k.Selector+"._domainkey."+d, value)
		}
	}
	blank()
	comment("DMARC (RFC 7489): start with p=none and watch the reports; move to")
	comment("p=quarantine, then p=reject, once all of the domain's mail passes.")
	dmarc := "v=DMARC1; p=none"
	if in.DMARCRua != "" {
		comment("Aggregate reports go to %s (dmarcreports is on).", in.DMARCRua)
		dmarc += "; rua=mailto:" + in.DMARCRua
	} else {
		comment("No rua=: with dmarcreports off nobody here reads reports. Add")
		comment("\"; rua=mailto:ADDRESS\" to have receivers send them.")
	}
	txt("_dmarc."+d, dmarc)
	if _, ruaDomain, ok := strings.Cut(in.DMARCRua, "@"); ok && !strings.EqualFold(ruaDomain, in.Domain) {
		comment("The reports go to another domain, which must agree to take them")
		comment("(RFC 7489 section 7.1), in ITS zone:")
		txt(in.Domain+"._report._dmarc."+strings.ToLower(ruaDomain)+".", "v=DMARC1")
	}
	blank()
	comment("SMTP TLS reporting (RFC 8460): where senders report TLS failures")
	comment("reaching %s.", s.Hostname)
	txt("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:"+in.TLSRPTRua)
	blank()
	if p, ok := s.MTASTS.Get(in.Domain); ok {
		comment("MTA-STS (RFC 8461): the policy (mode %s) is served at", p.Mode)
		comment("https://mta-sts.%s/.well-known/mta-sts.txt; the id changes with it.", in.Domain)
		txt("_mta-sts."+d, "v=STSv1; id="+p.ID)
		comment("Senders fetch the policy over HTTPS on port 443 with a certificate valid")
		comment("for mta-sts.%s (list the name in acmehosts), from the webs listener.", in.Domain)
		rec("mta-sts."+d, "CNAME", me, "")
	} else {
		comment("MTA-STS: no policy for %s. Add a line to the mtastspolicy setting", in.Domain)
		comment("(\"%s mode=testing max_age=604800\") to serve one (docs/autoconfig.md).", in.Domain)
	}
	blank()
	comment("Client autoconfiguration: Thunderbird asks autoconfig.%s, Outlook", in.Domain)
	comment("autodiscover.%s, over HTTPS; both are answered by the web listeners.", in.Domain)
	rec("autoconfig."+d, "CNAME", me, "")
	rec("autodiscover."+d, "CNAME", me, "")
	if in.WebsPort > 0 {
		comment("Outlook also looks for Autodiscover by SRV.")
		rec("_autodiscover._tcp."+d, "SRV", fmt.Sprintf("0 1 %d %s", in.WebsPort, me), "")
	}
	blank()
	comment("Mail client services (RFC 6186, RFC 8314 section 5.1): implicit TLS is")
	comment("preferred (priority 0) over STARTTLS (priority 10). A service not offered")
	comment("has the target \".\" (RFC 6186 section 4).")
	var loopback []string
	for _, svc := range s.Services {
		if svc.Loopback {
			loopback = append(loopback, svc.Listener)
		}
	}
	if len(loopback) > 0 {
		comment("Note: %s listen on loopback only (listen): clients elsewhere cannot", strings.Join(loopback, ", "))
		comment("reach them until they listen on a public address.")
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
			rec(ss.srv+"."+d, "SRV", "0 0 0 .", "")
			continue
		}
		prio := 0
		if !svc.ImplicitTLS {
			prio = 10
		}
		rec(ss.srv+"."+d, "SRV", fmt.Sprintf("%d 1 %d %s", prio, svc.Port, me), "")
	}
	blank()
	switch {
	case in.Certificate != nil:
		sum := sha256.Sum256(in.Certificate.RawSubjectPublicKeyInfo)
		comment("DANE (RFC 7672): senders that validate DNSSEC check %s's", s.Hostname)
		comment("certificate on port 25 against this: DANE-EE, SPKI, SHA-256 (3 1 1). Only")
		comment("with DNSSEC; publish the new key's record before changing the key.")
		if in.ACME {
			comment("ACME renewals must keep the key (or the record be updated first).")
		}
		rec("_25._tcp."+me, "TLSA", "3 1 1 "+hex.EncodeToString(sum[:]), "")
	case in.ACME:
		comment("DANE: the certificate comes from ACME and is not issued yet; run this")
		comment("again once it is for the TLSA record.")
	default:
		comment("DANE: no certificate configured (tlscert), so no TLSA record.")
	}
	if len(pending) > 0 {
		out = append(out, Record{Break: brk, Comment: pending})
	}
	return out, nil
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
