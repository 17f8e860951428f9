package filters

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseServiceAddress reads the address of a service a check talks to (a
// milter, a policy server) as Postfix writes it: "unix:/path" (or
// "local:/path", or "/path" alone) and "inet:HOST:PORT" (or "HOST:PORT";
// "inet:[::1]:PORT"). what names the service in errors ("milter").
func ParseServiceAddress(s, what string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		network, address = "unix", strings.TrimPrefix(s, "unix:")
	case strings.HasPrefix(s, "local:"):
		network, address = "unix", strings.TrimPrefix(s, "local:")
	case strings.HasPrefix(s, "inet:"):
		network, address = "tcp", strings.TrimPrefix(s, "inet:")
	case strings.HasPrefix(s, "/"):
		network, address = "unix", s
	default:
		network, address = "tcp", s
	}
	if network == "unix" {
		if !strings.HasPrefix(address, "/") {
			return "", "", fmt.Errorf("%s address %q: want an absolute socket path", what, s)
		}
		return network, address, nil
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" || strings.ContainsAny(host, " /") {
		return "", "", fmt.Errorf("%s address %q: want inet:HOST:PORT or unix:/PATH", what, s)
	}
	if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%s address %q: bad port", what, s)
	}
	return network, address, nil
}

// OnError is what a check that asks a service (a milter, a policy server)
// makes of a service that cannot be reached, times out or answers
// nonsense.
type OnError int

const (
	OnErrorTempfail OnError = iota // the default: the client tries again later
	OnErrorAccept                  // no opinion
	OnErrorReject
)

// Reply is an SMTP reply a check may give.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// ServiceFailure is the result for a service that could not be asked:
// by on, no opinion, or the reject or tempfail reply; reason says why.
func ServiceFailure(filter, reason string, on OnError, reject, tempfail Reply) Result {
	r := Result{Filter: filter, Reason: reason}
	switch on {
	case OnErrorAccept:
		r.Verdict = NoOpinion
	case OnErrorReject:
		r.Verdict, r.Code, r.Enhanced, r.Message = Reject, reject.Code, reject.Enhanced, reject.Text
	default:
		r.Verdict, r.Code, r.Enhanced, r.Message = Tempfail, tempfail.Code, tempfail.Enhanced, tempfail.Text
	}
	return r
}
