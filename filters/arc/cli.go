package arc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/internal/cliflags"
)

// Exit statuses of CheckMain.
const (
	ExitOK      = 0 // the report is printed, whatever the result
	ExitFailure = 1 // the message could not be read, or DNS not used
	ExitUsage   = 2 // bad arguments
)

// CheckMain is `postern check arc`: it reads a message on stdin, verifies
// its ARC chain the way the gateway does, and prints every set, the result
// with the why, and the Authentication-Results field the gateway would
// add.
//
//	postern check arc [--dns HOST:PORT]... [--ip IP] [--authserv-id NAME] [--timeout D] < message
func CheckMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check arc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var servers dkim.ServerList
	fs.Var(&servers, "dns", "DNS server to ask, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	ip := fs.String("ip", "", "the client address, for smtp.remote-ip")
	authservID := fs.String("authserv-id", "", "our host name, for the Authentication-Results line")
	timeout := fs.Duration("timeout", DefaultVerifyTimeout, "overall time limit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern check arc [--dns HOST:PORT] [--ip IP] [--authserv-id NAME] [--timeout D] < message")
		fs.PrintDefaults()
	}
	if err := cliflags.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK // the usage is printed
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern check arc: unexpected argument %q (the message is read from standard input)\n", fs.Arg(0))
		return ExitUsage
	}
	remote := ""
	if *ip != "" {
		a, err := netip.ParseAddr(*ip)
		if err != nil {
			fmt.Fprintf(stderr, "postern check arc: --ip %q is not an IP address\n", *ip)
			return ExitUsage
		}
		remote = a.String()
	}
	r, err := dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2})
	if err != nil {
		fmt.Fprintf(stderr, "postern check arc: %v\n", err)
		return ExitFailure
	}
	v, err := Verify(context.Background(), r, stdin, VerifyOptions{Timeout: *timeout})
	if err != nil {
		fmt.Fprintf(stderr, "postern check arc: %v\n", err)
		return ExitFailure
	}
	WriteReport(stdout, v, *authservID, remote)
	return ExitOK
}

// WriteReport prints v for an admin: each set of a valid chain, the
// result and why, and the Authentication-Results field.
func WriteReport(w io.Writer, v Verification, authservID, remoteIP string) {
	fmt.Fprintf(w, "sets: %d\n", v.Instances())
	for _, s := range v.Sets {
		fmt.Fprintf(w, "set %d: sealed by %s (key %s._domainkey.%s), cv=%s\n", s.Instance, s.Sealer, s.Selector, s.Sealer, s.CV)
		fmt.Fprintf(w, "  results: %s\n", s.AuthResults)
	}
	fmt.Fprintf(w, "result: %s\n", v.Status)
	fmt.Fprintf(w, "reason: %s\n", v.Reason)
	if v.Status == Pass {
		fmt.Fprintf(w, "oldest-pass: %d\n", v.OldestPass)
	}
	id := authservID
	if id == "" {
		id = "unknown"
	}
	fmt.Fprintf(w, "Authentication-Results: %s;\n\t%s\n", id, v.AuthResult(remoteIP))
}
