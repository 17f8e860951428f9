package dns

import (
	"errors"
	"fmt"

	mdns "github.com/miekg/dns"
)

// The three classes every lookup result falls into. A caller decides with
// errors.Is (or IsNotFound / IsTemporary / IsPermanent) and never by
// matching error text.
var (
	// ErrNotFound is a definite "there is nothing": NXDOMAIN, or the name
	// exists without records of the asked type (NODATA, RFC 2308 section 2.2).
	ErrNotFound = errors.New("not found")
	// ErrTemporary is a failure that may go away if asked again later:
	// timeouts, SERVFAIL, REFUSED, network errors, answers we had to discard.
	ErrTemporary = errors.New("temporary failure")
	// ErrPermanent is a failure that asking again will not fix: an invalid
	// name, a CNAME loop, an answer too large to accept.
	ErrPermanent = errors.New("permanent failure")
)

// kindError is a finer-grained sentinel that also matches its class.
type kindError struct {
	msg   string
	class error
}

func (k *kindError) Error() string { return k.msg }
func (k *kindError) Unwrap() error { return k.class }

// Finer kinds; each matches exactly one of the classes above with errors.Is.
var (
	ErrNXDomain      error = &kindError{"no such domain (NXDOMAIN)", ErrNotFound}
	ErrNoData        error = &kindError{"no records of the requested type", ErrNotFound}
	ErrTimeout       error = &kindError{"timeout", ErrTemporary}
	ErrServerFailure error = &kindError{"server failure", ErrTemporary}
	ErrBadResponse   error = &kindError{"unusable response", ErrTemporary}
	ErrNoServers     error = &kindError{"no DNS servers configured", ErrTemporary}
	ErrInvalidName   error = &kindError{"invalid domain name", ErrPermanent}
	ErrCNAMELoop     error = &kindError{"CNAME loop or chain too long", ErrPermanent}
	ErrTooLarge      error = &kindError{"answer too large", ErrPermanent}
)

// LookupError says which question failed and why. Err is one of the kinds
// above, possibly wrapping the underlying network error.
type LookupError struct {
	Name   string // the name asked, as a fully qualified domain name
	Type   uint16 // the query type
	Server string // the server whose answer decided, if any
	Err    error
}

func (e *LookupError) Error() string {
	s := fmt.Sprintf("dns: %s %s", mdns.TypeToString[e.Type], e.Name)
	if e.Server != "" {
		s += " @" + e.Server
	}
	return s + ": " + e.Err.Error()
}

func (e *LookupError) Unwrap() error { return e.Err }

// causeError attaches an underlying cause (a net error, an rcode) to a kind
// while keeping errors.Is working for both.
type causeError struct {
	kind  error
	cause error
}

func (c *causeError) Error() string   { return c.kind.Error() + ": " + c.cause.Error() }
func (c *causeError) Unwrap() []error { return []error{c.kind, c.cause} }

func withCause(kind, cause error) error {
	if cause == nil {
		return kind
	}
	return &causeError{kind: kind, cause: cause}
}

// IsNotFound reports whether err is a definite negative answer (NXDOMAIN or
// no data).
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsTemporary reports whether err may go away if the question is asked again.
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }

// IsPermanent reports whether err is a failure that retrying will not fix.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
