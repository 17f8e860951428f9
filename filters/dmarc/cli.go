package dmarc

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"postern/filters"
	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/filters/spf"
	"postern/internal/cliflags"
)

// Exit statuses of CheckMain.
const (
	ExitOK      = 0 // results printed, whatever they are
	ExitFailure = 1 // the check could not run (unreadable message, no DNS configuration)
	ExitUsage   = 2 // bad arguments
)

// maxCheckMessage bounds the message CheckMain reads from standard input.
const maxCheckMessage = 64 << 20

// CheckMain is `postern check dmarc`: it runs, as the gateway would, SPF
// for the given client, DKIM over the message on standard input, and DMARC
// over both, printing each step, the SMTP answer the gateway would give,
// and the Authentication-Results field.
//
//	postern check dmarc --ip IP --helo NAME --sender ADDR [--dns HOST:PORT]
//	                    [--authserv-id NAME] [--timeout D] < message
func CheckMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check dmarc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ipText := fs.String("ip", "", "client IP address (IPv4 or IPv6)")
	helo := fs.String("helo", "", "HELO/EHLO name the client gave")
	sender := fs.String("sender", "", "MAIL FROM address; empty for the null sender (<>)")
	var servers dkim.ServerList
	fs.Var(&servers, "dns", "DNS server to ask, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	authservID := fs.String("authserv-id", "", "our host name, for the Authentication-Results line")
	timeout := fs.Duration("timeout", 20*time.Second, "time limit of each step")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern check dmarc --ip IP --helo NAME --sender ADDR [--dns HOST:PORT] [--authserv-id NAME] [--timeout D] < message")
		fs.PrintDefaults()
	}
	if err := cliflags.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the usage is printed
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern check dmarc: unexpected argument %q (the message is read from standard input)\n", fs.Arg(0))
		return ExitUsage
	}
	ip, err := netip.ParseAddr(strings.Trim(*ipText, "[]"))
	if err != nil {
		fmt.Fprintf(stderr, "postern check dmarc: --ip: %q is not an IP address\n", *ipText)
		return ExitUsage
	}
	if *helo == "" {
		fmt.Fprintln(stderr, "postern check dmarc: --helo is required")
		return ExitUsage
	}
	msg, err := io.ReadAll(io.LimitReader(stdin, maxCheckMessage+1))
	if err != nil {
		fmt.Fprintf(stderr, "postern check dmarc: reading the message: %v\n", err)
		return ExitFailure
	}
	if len(msg) > maxCheckMessage {
		fmt.Fprintf(stderr, "postern check dmarc: message larger than %d bytes\n", maxCheckMessage)
		return ExitFailure
	}
	r, err := dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2})
	if err != nil {
		fmt.Fprintf(stderr, "postern check dmarc: %v\n", err)
		return ExitFailure
	}
	ctx := context.Background()
	w := stdout
	var authResults []string

	fmt.Fprintln(w, "== SPF")
	spfRes := spf.CheckAddr(ctx, r, ip, *helo, *sender, spf.IdentityMailFrom, spf.Options{Timeout: *timeout, Receiver: *authservID})
	fmt.Fprintf(w, "result: %s\n", spfRes.Code)
	fmt.Fprintf(w, "domain: %s\n", spfRes.Domain)
	if spfRes.Record != "" {
		fmt.Fprintf(w, "record: %s\n", spfRes.Record)
	}
	fmt.Fprintf(w, "reason: %s\n", spfRes.Reason)
	authResults = append(authResults, spf.AuthenticationResults(spfRes))

	fmt.Fprintln(w, "== DKIM")
	v, err := dkim.Verify(ctx, r, bytes.NewReader(msg), dkim.VerifyOptions{Timeout: *timeout})
	dkimTemp := false
	if err != nil {
		fmt.Fprintf(w, "result: temperror\nreason: %v\n", err)
		dkimTemp = true
		authResults = append(authResults, "dkim=temperror")
	} else {
		var report strings.Builder
		dkim.WriteReport(&report, v, *authservID)
		// Everything but the Authentication-Results line, printed once below.
		text := report.String()
		if i := strings.Index(text, "Authentication-Results:"); i >= 0 {
			text = text[:i]
		}
		fmt.Fprint(w, text)
		authResults = append(authResults, v.AuthResults()...)
		for _, s := range v.Signatures {
			dkimTemp = dkimTemp || s.Status == dkim.TempError
		}
	}

	fmt.Fprintln(w, "== DMARC")
	f := &Filter{opts: Options{Scores: &DefaultScores}}
	fields, err := ReadFromField(bytes.NewReader(msg), 0)
	var res filters.Result
	if err == nil {
		var domain string
		domain, err = FromDomain(fields)
		if err == nil {
			in := Input{FromDomain: domain, SPF: spfRes.Code, SPFDomain: spfRes.Domain, DKIMTempError: dkimTemp}
			if v.Signatures != nil {
				in.DKIMDomains = v.PassingDomains()
			}
			ev := Evaluate(ctx, r, in, EvalOptions{Timeout: *timeout})
			writeEvaluation(w, ev)
			ev, _ = f.override(ev, nil)
			res = f.result(ev)
		}
	}
	if err != nil {
		fmt.Fprintf(w, "result: permerror\nreason: %v\n", err)
		res = f.badFrom(err)
	}
	authResults = append(authResults, res.AuthResults...)
	switch res.Verdict {
	case filters.Reject, filters.Tempfail:
		fmt.Fprintf(w, "smtp: %d %s %s\n", res.Code, res.Enhanced, res.Message)
	case filters.Quarantine:
		fmt.Fprintln(w, "smtp: 250 accepted, filed into the recipient's Junk folder (quarantine)")
	default:
		fmt.Fprintln(w, "smtp: no objection from DMARC")
	}
	id := *authservID
	if id == "" {
		id = "unknown"
	}
	fmt.Fprintf(w, "Authentication-Results: %s;\n\t%s\n", id, strings.Join(authResults, ";\n\t"))
	return ExitOK
}

func writeEvaluation(w io.Writer, ev Evaluation) {
	fmt.Fprintf(w, "from domain: %s\n", ev.FromDomain)
	fmt.Fprintf(w, "organizational domain: %s\n", ev.OrgDomain)
	for _, l := range ev.Lookups {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if ev.RecordDomain != "" {
		fmt.Fprintf(w, "record: _dmarc.%s: %s\n", ev.RecordDomain, ev.Record)
		for _, n := range ev.Record.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		fmt.Fprintf(w, "spf aligned: %v\n", yesNo(ev.SPFAligned))
		fmt.Fprintf(w, "dkim aligned: %v\n", yesNo(ev.DKIMAligned))
	}
	fmt.Fprintf(w, "result: %s\n", ev.Status)
	if ev.Policy != "" {
		fmt.Fprintf(w, "policy: %s\n", ev.Policy)
		fmt.Fprintf(w, "disposition: %s", ev.Disposition)
		if ev.SampledOut {
			fmt.Fprintf(w, " (pct=%d left this message out of the full policy)", ev.Record.Percent)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "reason: %s\n", ev.Reason)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
