package spf

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"postern/filters/dns"
	"postern/internal/cliflags"
)

// Exit statuses of CheckMain.
const (
	ExitChecked = 0 // a result was printed, whatever it is
	ExitFailure = 1 // the check could not run (no usable DNS configuration)
	ExitUsage   = 2 // bad arguments
)

// CheckMain is `postern check spf`: it evaluates SPF for the given client
// address, HELO name and sender and prints the result in RFC 7208 terms,
// then why: the deciding mechanism, the record, the DNS lookups made, and the
// Received-SPF and Authentication-Results lines a receiving gateway would
// add.
//
//	postern check spf --ip IP --helo NAME --sender ADDR [--dns HOST:PORT]
//	                  [--identity mailfrom|helo] [--receiver NAME] [--timeout D]
func CheckMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check spf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ipText := fs.String("ip", "", "client IP address (IPv4 or IPv6)")
	helo := fs.String("helo", "", "HELO/EHLO name the client gave")
	sender := fs.String("sender", "", "MAIL FROM address; empty for the null sender (<>)")
	var servers multiFlag
	fs.Var(&servers, "dns", "DNS server to ask, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	identity := fs.String("identity", IdentityMailFrom, "identity to check: mailfrom or helo")
	receiver := fs.String("receiver", "", "our host name, for %{r} and Received-SPF")
	timeout := fs.Duration("timeout", DefaultTimeout, "overall time limit of the check")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern check spf --ip IP --helo NAME --sender ADDR [--dns HOST:PORT] [--identity mailfrom|helo] [--receiver NAME] [--timeout D]")
		fs.PrintDefaults()
	}
	if err := cliflags.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the usage is printed
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern check spf: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	ip, err := netip.ParseAddr(strings.Trim(*ipText, "[]"))
	if err != nil {
		fmt.Fprintf(stderr, "postern check spf: --ip: %q is not an IP address\n", *ipText)
		return ExitUsage
	}
	if *identity != IdentityMailFrom && *identity != IdentityHELO {
		fmt.Fprintf(stderr, "postern check spf: --identity: want mailfrom or helo, not %q\n", *identity)
		return ExitUsage
	}
	if *helo == "" && (*sender == "" || *identity == IdentityHELO) {
		fmt.Fprintln(stderr, "postern check spf: --helo is needed for the null sender and for --identity helo")
		return ExitUsage
	}
	r, err := dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2})
	if err != nil {
		fmt.Fprintf(stderr, "postern check spf: %v\n", err)
		return ExitFailure
	}
	res := CheckAddr(context.Background(), r, ip, *helo, *sender, *identity,
		Options{Receiver: *receiver, Timeout: *timeout})
	writeReport(stdout, res, *receiver)
	return ExitChecked
}

func writeReport(w io.Writer, res Result, receiver string) {
	fmt.Fprintf(w, "result: %s\n", res.Code)
	fmt.Fprintf(w, "identity: %s\n", res.Identity)
	fmt.Fprintf(w, "domain: %s\n", res.Domain)
	fmt.Fprintf(w, "sender: %s\n", res.Sender)
	fmt.Fprintf(w, "client-ip: %s\n", res.IP)
	if res.Record != "" {
		fmt.Fprintf(w, "record: %s\n", res.Record)
	}
	if res.Mechanism != "" {
		where := ""
		if res.MatchDomain != "" && res.MatchDomain != res.Domain {
			where = " (in the record of " + res.MatchDomain + ")"
		}
		fmt.Fprintf(w, "mechanism: %s%s\n", res.Mechanism, where)
	}
	fmt.Fprintf(w, "reason: %s\n", res.Reason)
	if res.Explanation != "" {
		fmt.Fprintf(w, "explanation: %s\n", res.Explanation)
	}
	fmt.Fprintf(w, "lookups: %d DNS-querying terms (limit %d), %d void (limit %d)\n",
		res.DNSTerms, DefaultMaxDNSTerms, res.VoidLookups, DefaultMaxVoidLookups)
	for _, l := range res.Lookups {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintln(w, ReceivedSPF(res, receiver))
	fmt.Fprintf(w, "Authentication-Results: %s; %s\n", orUnknown(receiver), AuthenticationResults(res))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

// Set adds a server; a bare address gets port 53.
func (m *multiFlag) Set(v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		v = net.JoinHostPort(strings.Trim(v, "[]"), "53")
	}
	*m = append(*m, v)
	return nil
}
