package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"postern/policy"
	"postern/web/autoconfig"
)

const dnsUsage = `Usage: postern dns records [DOMAIN...]

Prints, as a zone-file snippet with a comment before each record, every DNS
record a domain this server hosts should publish: MX, SPF, DKIM (one per
signing key in CONFIG/dkim), DMARC, SMTP TLS reporting, MTA-STS (when the
mtastspolicy setting lists the domain), the autoconfig and autodiscover
names, the RFC 6186 SRV records of the mail client services with the ports
of the listen setting, and the DANE TLSA record of the certificate. Without
DOMAIN, the records of every domain in acceptmailfor and hosteddomains.
See docs/dnsrecords.md.
`

// runDNS is `postern dns records`.
func runDNS(e *env, args []string) int {
	if len(args) == 0 {
		io.WriteString(e.stderr, dnsUsage)
		return 64
	}
	switch args[0] {
	case "-h", "--help", "help":
		io.WriteString(e.stdout, dnsUsage)
		return 0
	case "records":
	default:
		fmt.Fprintf(e.stderr, "postern dns: unknown subcommand %q\n", args[0])
		io.WriteString(e.stderr, dnsUsage)
		return 64
	}
	args = args[1:]
	if wantsHelp(args) {
		io.WriteString(e.stdout, dnsUsage)
		return 0
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			fmt.Fprintf(e.stderr, "postern dns records: unknown option %q\n", a)
			io.WriteString(e.stderr, dnsUsage)
			return 64
		}
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern dns records: configuration:\n%v\n", err)
		return 78
	}
	sts, err := autoconfig.LoadPolicies(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern dns records: configuration:\n%v\n", err)
		return 78
	}
	domains := args
	if len(domains) == 0 {
		for d := range cfg.AcceptMailFor {
			domains = append(domains, d)
		}
		sort.Strings(domains)
	}
	set := autoconfig.FromConfig(cfg, sts, nil)
	for i, d := range domains {
		d = strings.TrimSuffix(strings.ToLower(d), ".")
		if !cfg.HasDomain(d) {
			fmt.Fprintf(e.stderr, "postern dns records: %s is not a domain this server accepts mail for (acceptmailfor, hosteddomains)\n", d)
			return 1
		}
		in, err := autoconfig.InputsFromConfig(cfg, d)
		if err != nil {
			fmt.Fprintf(e.stderr, "postern dns records: %v\n", err)
			return 1
		}
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		if err := set.WriteRecords(e.stdout, in); err != nil {
			fmt.Fprintf(e.stderr, "postern dns records: %v\n", err)
			return 1
		}
	}
	return 0
}
