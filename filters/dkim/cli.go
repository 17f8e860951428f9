package dkim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"postern/filters/dns"
	"postern/internal/cliflags"
)

// CheckMain is `postern check dkim`: it reads a message on stdin, checks
// every DKIM-Signature the way the gateway does, and prints each
// signature's result with the why, then the overall result and the
// Authentication-Results field the gateway would add.
//
//	postern check dkim [--dns HOST:PORT] [--authserv-id NAME] [--timeout D] < message
func CheckMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check dkim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var servers ServerList
	fs.Var(&servers, "dns", "DNS server to ask, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	authservID := fs.String("authserv-id", "", "our host name, for the Authentication-Results line")
	timeout := fs.Duration("timeout", DefaultVerifyTimeout, "overall time limit")
	maxSigs := fs.Int("max-signatures", DefaultMaxSignatures, "signatures checked at most")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern check dkim [--dns HOST:PORT] [--authserv-id NAME] [--timeout D] < message")
		fs.PrintDefaults()
	}
	if err := cliflags.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the usage is printed
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern check dkim: unexpected argument %q (the message is read from standard input)\n", fs.Arg(0))
		return ExitUsage
	}
	r, err := dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2})
	if err != nil {
		fmt.Fprintf(stderr, "postern check dkim: %v\n", err)
		return ExitFailure
	}
	v, err := Verify(context.Background(), r, stdin, VerifyOptions{Timeout: *timeout, MaxSignatures: *maxSigs})
	if err != nil {
		fmt.Fprintf(stderr, "postern check dkim: %v\n", err)
		return ExitFailure
	}
	WriteReport(stdout, v, *authservID)
	return ExitOK
}

// WriteReport prints v for an admin: each signature, the overall result,
// and the Authentication-Results field.
func WriteReport(w io.Writer, v Verification, authservID string) {
	fmt.Fprintf(w, "signatures: %d\n", len(v.Signatures)+v.Skipped)
	for i, s := range v.Signatures {
		fmt.Fprintf(w, "signature %d: %s\n", i+1, s.Status)
		fmt.Fprintf(w, "  domain: %s\n", orDash(s.Domain))
		fmt.Fprintf(w, "  selector: %s\n", orDash(s.Selector))
		if s.Domain != "" && s.Selector != "" {
			fmt.Fprintf(w, "  key: %s._domainkey.%s TXT\n", s.Selector, s.Domain)
		}
		fmt.Fprintf(w, "  algorithm: %s\n", orDash(s.Algorithm))
		if s.Identifier != "" {
			fmt.Fprintf(w, "  identifier: %s\n", s.Identifier)
		}
		if len(s.HeaderKeys) > 0 {
			fmt.Fprintf(w, "  signed header fields: %s\n", strings.Join(s.HeaderKeys, ":"))
		}
		fmt.Fprintf(w, "  reason: %s\n", s.Reason)
	}
	if v.Skipped > 0 {
		fmt.Fprintf(w, "not checked: %d signature(s) beyond the limit\n", v.Skipped)
	}
	fmt.Fprintf(w, "result: %s\n", v.Overall())
	if d := v.PassingDomains(); len(d) > 0 {
		fmt.Fprintf(w, "passing domains: %s\n", strings.Join(d, " "))
	}
	id := authservID
	if id == "" {
		id = "unknown"
	}
	fmt.Fprintf(w, "Authentication-Results: %s;\n\t%s\n", id, strings.Join(v.AuthResults(), ";\n\t"))
}

// ServerList is a repeatable --dns flag: HOST:PORT, a bare address gets
// port 53.
type ServerList []string

func (m *ServerList) String() string { return strings.Join(*m, ",") }

// Set adds a server.
func (m *ServerList) Set(v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		v = net.JoinHostPort(strings.Trim(v, "[]"), "53")
	}
	*m = append(*m, v)
	return nil
}
