package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"postern/gateway/outbound"
	"postern/gateway/smtpd"
	"postern/policy"
)

const checkRouteUsage = `Usage: postern check route ADDRESS|DOMAIN [--sender ADDR] [--dns HOST:PORT]
       testmxlookup DOMAIN [--sender ADDR] [--dns HOST:PORT]

Says where mail would go, with the lookups the server makes and without
sending anything. For an ADDRESS: what the server answers an unauthenticated
client's RCPT TO (taken, or the refusal), then what it becomes (a local
account, an alias's targets, a program) and, for each remote domain, how it
leaves. For a DOMAIN: how mail for it leaves: the routes rule that applies
(or MX), the hosts in the order they are tried with their addresses, port
and TLS requirement (STARTTLS, DANE with its TLSA records, MTA-STS), or why
it cannot leave (no such domain, null MX, a loop).

With --sender ADDR the senderroutes rules take part as they do for mail
from that envelope sender: the output names the rule (routes or
senderroutes) that chose the relay. --sender '<>' (or '') is the null
sender of bounces.

Exit status: 0 when the mail would be taken and can leave; 1 when it would
be refused or bounced; 75 when it cannot leave for now (DNS trouble); 64
for a usage error, 78 for a configuration error. See docs/routes.md.
`

func runCheckRoute(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, checkRouteUsage)
		return 0
	}
	fs := flag.NewFlagSet("postern check route", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dnsAddr := fs.String("dns", "", "ask this DNS server (`HOST:PORT`) instead of those in resolvers")
	sender := fs.String("sender", "", "plan for mail from this envelope sender (`ADDR`; '<>' for bounces)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkRouteUsage) }
	// The target may come before the options.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	} else if fs.NArg() != 0 || target == "" {
		fs.Usage()
		return 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern check route: configuration:\n%v\n", err)
		return 78
	}
	hasSender := false
	fs.Visit(func(f *flag.Flag) { hasSender = hasSender || f.Name == "sender" })
	from := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(*sender), "<"), ">")
	if *dnsAddr != "" {
		c := *cfg
		c.Resolvers = []string{*dnsAddr}
		cfg = &c
	}
	h, closeFn, err := openGateway(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern check route: %v\n", err)
		return 1
	}
	defer closeFn()
	plan := func(ctx context.Context, domain string) outbound.Plan {
		if hasSender {
			return h.mta.PlanFrom(ctx, from, domain)
		}
		return h.mta.Plan(ctx, domain)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if !strings.Contains(target, "@") && !strings.EqualFold(target, "postmaster") {
		return printPlan(e.stdout, plan(ctx, strings.ToLower(strings.TrimSuffix(target, "."))))
	}
	w := e.stdout
	status := 0
	mailbox, err := smtpd.ParseRecipient(target)
	if err != nil {
		fmt.Fprintf(w, "Refused at RCPT TO by every client: 501 5.1.3 %v\n", err)
		return 1
	}
	target = mailbox
	if _, ref := h.router.Resolve(ctx, target, false); ref != nil {
		fmt.Fprintf(w, "From the internet: refused at RCPT TO: %d %s %s (%s)\n", ref.Code, ref.Enhanced, ref.Text, ref.Reason)
	} else {
		fmt.Fprintf(w, "From the internet: taken at RCPT TO\n")
	}
	targets, ref := h.router.Resolve(ctx, target, true)
	if ref != nil {
		fmt.Fprintf(w, "From authenticated users: refused: %d %s %s (%s)\n", ref.Code, ref.Enhanced, ref.Text, ref.Reason)
		if ref.Code/100 == 4 {
			return 75
		}
		return 1
	}
	var remote []string
	seen := map[string]bool{}
	for _, t := range targets {
		rc := t.Recipient
		switch {
		case rc.Pipe != "":
			fmt.Fprintf(w, "%s: alias delivery to %s (through the queue)\n", rc.Addr, rc.Pipe)
		case rc.Local:
			name := ""
			if t.Account != nil {
				name = t.Account.Name
			}
			ext := ""
			if t.Extension != "" {
				ext = ", extension " + t.Extension
			}
			fmt.Fprintf(w, "%s: local account %s%s\n", rc.Addr, name, ext)
		default:
			fmt.Fprintf(w, "%s: remote\n", rc.Addr)
			if _, d, ok := strings.Cut(rc.Addr, "@"); ok && !seen[strings.ToLower(d)] {
				seen[strings.ToLower(d)] = true
				remote = append(remote, strings.ToLower(d))
			}
		}
	}
	for _, d := range remote {
		fmt.Fprintln(w)
		if s := printPlan(w, plan(ctx, d)); s > status {
			status = s
		}
	}
	return status
}

// printPlan writes a Plan and returns the exit status it means.
func printPlan(w io.Writer, p outbound.Plan) int {
	r := p.Route
	if p.HasSender {
		from := p.Sender
		if from == "" {
			from = "<> (the null sender)"
		}
		fmt.Fprintf(w, "From %s:\n", from)
	}
	table := "routes"
	if p.Source == outbound.SourceSender {
		table = "senderroutes"
	}
	switch {
	case !p.Matched:
		fmt.Fprintf(w, "Domain %s: by MX (no routes rule)\n", p.Domain)
	case r.UsesMX():
		fmt.Fprintf(w, "Domain %s: by MX, %s rule %q (%s:%d), %s\n", p.Domain, table, routePattern(r), r.Origin.File, r.Origin.Num, r.Security)
	default:
		proto := "SMTP"
		if r.LMTP {
			proto = "LMTP"
		}
		fmt.Fprintf(w, "Domain %s: relayed by %s to %s, %s rule %q (%s:%d), %s\n", p.Domain, proto, relayName(r), table, routePattern(r), r.Origin.File, r.Origin.Num, r.Security)
	}
	if p.Err != nil {
		kind := "cannot leave for now (retried)"
		if p.Permanent {
			kind = "would bounce"
		}
		fmt.Fprintf(w, "  %s: %s %v\n", kind, p.Status, p.Err)
		if p.Permanent {
			return 1
		}
		return 75
	}
	for i, hst := range p.Hosts {
		var notes []string
		if hst.TLSA > 0 || hst.DANE != "opportunistic" {
			n := "DANE " + hst.DANE
			if hst.TLSA > 0 {
				n += fmt.Sprintf(", %d usable TLSA records at _%d._tcp.%s", hst.TLSA, hst.Port, hst.TLSABase)
			}
			notes = append(notes, n)
		}
		if hst.STS != "" {
			notes = append(notes, "MTA-STS "+hst.STS)
		}
		extra := ""
		if len(notes) > 0 {
			extra = " (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintf(w, "  %d. %s port %d, TLS %s%s\n", i+1, hst.Name, hst.Port, hst.Security, extra)
		for _, a := range hst.Addrs {
			fmt.Fprintf(w, "       %s\n", a)
		}
	}
	return 0
}

func routePattern(r outbound.Route) string {
	if r.Pattern == "" {
		return "*"
	}
	return r.Pattern
}

func relayName(r outbound.Route) string {
	if r.RelayAddr.IsValid() {
		return "[" + r.RelayAddr.String() + "]"
	}
	return r.Relay
}
