// Package dkim verifies and creates DomainKeys Identified Mail signatures
// (RFC 6376).
//
// A signer hashes a canonical form of the message body and of a chosen list
// of header fields, signs the hash with a private key, and adds a
// DKIM-Signature header field naming its domain (d=) and selector (s=). A
// verifier fetches the public key from DNS at SELECTOR._domainkey.DOMAIN and
// checks both hashes. A valid signature proves that the signing domain took
// responsibility for the message and that the signed parts were not changed
// on the way; DMARC (postern/filters/dmarc) then asks whether that domain is
// aligned with the author's From domain.
//
// The cryptography and canonicalization are github.com/emersion/go-msgauth's;
// this package adds what the gateway needs around it: public keys through the
// shared resolver of postern/filters/dns (never the system resolver), a bound
// on the number of signatures checked, a result per signature in RFC 8601
// terms (pass, fail, neutral, policy, temperror, permerror; none when the
// message is unsigned) with the d=, s= and b= values that identify it, and
// the filter that runs at the DATA stage. Keys weaker than RFC 8301 allows
// (RSA under 1024 bits, SHA-1) are refused; Ed25519 keys (RFC 8463) are
// accepted.
//
// For outgoing mail, Signer signs with a per-domain key kept in the
// configuration directory (dkim/DOMAIN.SELECTOR.key), and KeygenMain creates
// such keys and prints the DNS record to publish. StripForgedAuthResults
// lives in postern/filters/authres.
package dkim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"postern/filters/authres"
	"postern/filters/dns"
)

// Status is the result of checking one signature, in the words of RFC 8601
// section 2.7.1.
type Status int

const (
	None      Status = iota // the message was not signed
	Pass                    // the signature verified
	Fail                    // the signature or the body hash did not verify: the message was changed
	Neutral                 // the signature could not be processed (a syntax error in it)
	Policy                  // the signature verified or might, but we do not accept its form (l= body length)
	TempError               // the key could not be fetched now (DNS trouble); try later
	PermError               // the key is missing, revoked, too weak or unusable, or the signature expired
)

var statusNames = [...]string{"none", "pass", "fail", "neutral", "policy", "temperror", "permerror"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// ParseStatus returns the Status named s (case-insensitive).
func ParseStatus(s string) (Status, bool) {
	for i, n := range statusNames {
		if strings.EqualFold(s, n) {
			return Status(i), true
		}
	}
	return 0, false
}

// Signature is the outcome of checking one DKIM-Signature header field.
type Signature struct {
	Status Status
	// Domain (d=), Selector (s=), Algorithm (a=) and Identifier (i=) as the
	// signature states them; empty when the field was too broken to say.
	Domain     string
	Selector   string
	Algorithm  string
	Identifier string
	// B is the signature value (b=) without white space; the first
	// characters of it tell several signatures of one domain apart
	// (RFC 6008).
	B string
	// HeaderKeys are the signed header field names (h=).
	HeaderKeys []string
	// Reason says why, in one line.
	Reason string
}

// Verification is the outcome of checking a message.
type Verification struct {
	// Signatures in the order their fields appear in the header, at most
	// VerifyOptions.MaxSignatures of them.
	Signatures []Signature
	// Skipped counts the signatures beyond the limit that were not checked.
	Skipped int
}

// PassingDomains returns the distinct d= domains (lower case) of the
// signatures that passed, in order: what DMARC aligns against.
func (v Verification) PassingDomains() []string {
	var out []string
	for _, s := range v.Signatures {
		d := strings.ToLower(s.Domain)
		if s.Status == Pass && d != "" && !contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Overall sums the signatures up in one word for rules and logs: pass if
// any passed; else temperror if any had one (asking later may pass); else
// fail, permerror, policy, neutral in that order; none if unsigned.
func (v Verification) Overall() Status {
	if len(v.Signatures) == 0 {
		return None
	}
	for _, want := range []Status{Pass, TempError, Fail, PermError, Policy, Neutral} {
		for _, s := range v.Signatures {
			if s.Status == want {
				return want
			}
		}
	}
	return Neutral
}

// AuthResults returns the RFC 8601 resinfo parts, one per signature
// ("dkim=pass header.d=example.org header.s=sel header.b=abcd1234"), or a
// single "dkim=none" for an unsigned message.
func (v Verification) AuthResults() []string {
	if len(v.Signatures) == 0 {
		return []string{"dkim=none"}
	}
	out := make([]string, 0, len(v.Signatures))
	for i, s := range v.Signatures {
		var b strings.Builder
		b.WriteString("dkim=")
		b.WriteString(s.Status.String())
		if s.Status != Pass && s.Reason != "" {
			b.WriteString(" (")
			b.WriteString(authres.Comment(s.Reason))
			b.WriteString(")")
		}
		if s.Domain != "" {
			b.WriteString(" header.d=")
			b.WriteString(authres.Value(s.Domain))
		}
		if s.Identifier != "" && s.Identifier != "@"+s.Domain {
			b.WriteString(" header.i=")
			b.WriteString(authres.Value(s.Identifier))
		}
		if s.Selector != "" {
			b.WriteString(" header.s=")
			b.WriteString(authres.Value(s.Selector))
		}
		if s.Algorithm != "" {
			b.WriteString(" header.a=")
			b.WriteString(authres.Value(s.Algorithm))
		}
		if p := bPrefix(v.Signatures, i); p != "" {
			b.WriteString(" header.b=")
			b.WriteString(authres.Value(p))
		}
		out = append(out, b.String())
	}
	return out
}

// bPrefix is the shortest prefix of signature i's b= value, at least 8
// characters (RFC 6008 section 4), that no other signature shares.
func bPrefix(sigs []Signature, i int) string {
	b := sigs[i].B
	n := min(8, len(b))
	for ; n < len(b); n++ {
		unique := true
		for j, o := range sigs {
			if j != i && strings.HasPrefix(o.B, b[:n]) {
				unique = false
				break
			}
		}
		if unique {
			break
		}
	}
	return b[:n]
}

// VerifyOptions tune Verify. The zero value uses the defaults below.
type VerifyOptions struct {
	// MaxSignatures bounds the signatures checked; the rest are skipped (a
	// message with hundreds of signatures must not cost hundreds of DNS
	// lookups and hashes).
	MaxSignatures int
	// Timeout bounds the whole verification.
	Timeout time.Duration
	// MaxHeaderBytes bounds the header section read to find signatures.
	MaxHeaderBytes int
}

// Defaults for VerifyOptions fields left zero.
const (
	DefaultMaxSignatures  = 10
	DefaultVerifyTimeout  = 20 * time.Second
	DefaultMaxHeaderBytes = 1 << 20
)

// ErrHeaderTooLarge is returned when the header section exceeds
// VerifyOptions.MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("dkim: header section too large")

// Verify checks every DKIM-Signature of the message read from msg (CRLF or
// LF line endings), fetching keys through r. It returns an error only when
// the message cannot be read (including ctx ending); what is wrong with a
// signature is in that signature's Status and Reason.
func Verify(ctx context.Context, r *dns.Resolver, msg io.Reader, opts VerifyOptions) (Verification, error) {
	if opts.MaxSignatures <= 0 {
		opts.MaxSignatures = DefaultMaxSignatures
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultVerifyTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	br := bufio.NewReader(msg)
	rawHeader, fields, complete, err := readHeader(br, opts.MaxHeaderBytes)
	if err != nil {
		return Verification{}, fmt.Errorf("dkim: verify: %w", err)
	}
	var sigFields []string
	for _, f := range fields {
		if name, value := splitField(f); strings.EqualFold(name, "DKIM-Signature") {
			sigFields = append(sigFields, value)
		}
	}
	var v Verification
	if len(sigFields) == 0 {
		return v, nil
	}
	if len(sigFields) > opts.MaxSignatures {
		v.Skipped = len(sigFields) - opts.MaxSignatures
		sigFields = sigFields[:opts.MaxSignatures]
	}

	// Parse each signature ourselves first: the library's Verification does
	// not carry s=, a= or b=, and RFC 8601 section 2.7.1 wants a signature
	// with syntax errors reported as neutral rather than as an error.
	v.Signatures = make([]Signature, len(sigFields))
	for i, f := range sigFields {
		v.Signatures[i] = describeSignature(f)
	}

	// The header is given again to the library, followed by the rest of the
	// message. A message that ends inside its header has an empty body
	// (RFC 5322 section 3.5): give the library the blank line it needs.
	head := rawHeader
	if !complete {
		if len(head) > 0 && !bytes.HasSuffix(head, []byte("\n")) {
			head = append(head, "\r\n"...)
		}
		head = append(head, "\r\n"...)
	}
	body := &guardedReader{ctx: ctx, r: br}
	full := io.MultiReader(bytes.NewReader(head), body)

	lookup := func(name string) ([]string, error) {
		txts, err := r.LookupTXT(ctx, name)
		if err != nil && (dns.IsTemporary(err) || ctx.Err() != nil) {
			// go-msgauth recognises a temporary failure only as a
			// net.Error whose Temporary() is true.
			return nil, temporaryLookupError{err}
		}
		return txts, err
	}
	verifs, err := msgdkim.VerifyWithOptions(full, &msgdkim.VerifyOptions{
		LookupTXT:        lookup,
		MaxVerifications: opts.MaxSignatures,
	})
	if body.err != nil {
		return Verification{}, fmt.Errorf("dkim: verify: reading message: %w", body.err)
	}
	if err != nil && !errors.Is(err, msgdkim.ErrTooManySignatures) {
		return Verification{}, fmt.Errorf("dkim: verify: %w", err)
	}
	for i := range v.Signatures {
		s := &v.Signatures[i]
		if s.Status != None {
			continue // decided by our own parse (neutral, policy)
		}
		if i >= len(verifs) || verifs[i] == nil {
			s.Status, s.Reason = PermError, "signature not processed"
			continue
		}
		s.Status, s.Reason = classify(verifs[i].Err)
	}
	return v, nil
}

// describeSignature parses the tag list of a DKIM-Signature field value
// (RFC 6376 section 3.5) for the facts that identify it. A signature
// with syntax errors is decided here as neutral; one with l= as policy;
// otherwise Status stays None for the cryptographic check to decide.
func describeSignature(value string) Signature {
	var s Signature
	tags, err := parseTagList(value)
	s.Domain = strings.ToLower(stripSpace(tags["d"]))
	s.Selector = stripSpace(tags["s"])
	s.Algorithm = strings.ToLower(stripSpace(tags["a"]))
	s.Identifier = stripSpace(tags["i"])
	s.B = stripSpace(tags["b"])
	if h, ok := tags["h"]; ok {
		for _, k := range strings.Split(h, ":") {
			if k = stripSpace(k); k != "" {
				s.HeaderKeys = append(s.HeaderKeys, k)
			}
		}
	}
	switch {
	case err != nil:
		s.Status, s.Reason = Neutral, "malformed signature: "+err.Error()
	case stripSpace(tags["v"]) != "1":
		s.Status, s.Reason = Neutral, "unknown signature version (v= is not 1)"
	default:
		for _, t := range []string{"a", "b", "bh", "d", "h", "s"} {
			if _, ok := tags[t]; !ok {
				s.Status, s.Reason = Neutral, "signature lacks the required "+t+"= tag"
				return s
			}
		}
		if _, ok := tags["l"]; ok {
			// RFC 6376 section 8.2: l= lets anyone append content under
			// the signature; we do not accept such signatures.
			s.Status, s.Reason = Policy, "signature covers only part of the body (l= tag)"
		}
	}
	return s
}

// classify maps go-msgauth's error of one verification to a Status.
func classify(err error) (Status, string) {
	switch {
	case err == nil:
		return Pass, "signature verified"
	case msgdkim.IsTempFail(err):
		return TempError, trimLibraryPrefix(err)
	case msgdkim.IsPermFail(err):
		return PermError, trimLibraryPrefix(err)
	default:
		// The library's remaining class is "the signature or body hash did
		// not verify".
		return Fail, trimLibraryPrefix(err)
	}
}

func trimLibraryPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "dkim: ")
}

// temporaryLookupError marks a DNS failure as temporary for go-msgauth.
type temporaryLookupError struct{ err error }

func (e temporaryLookupError) Error() string   { return e.err.Error() }
func (e temporaryLookupError) Unwrap() error   { return e.err }
func (e temporaryLookupError) Timeout() bool   { return true }
func (e temporaryLookupError) Temporary() bool { return true }

// guardedReader ends the stream (io.EOF) instead of failing, and keeps the
// failure: go-msgauth leaks its per-signature goroutines when the reader it
// copies from returns an error, so the library always sees a clean end and
// Verify reports the error itself. It also stops at ctx's end.
type guardedReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (g *guardedReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, io.EOF
	}
	if err := g.ctx.Err(); err != nil {
		g.err = err
		return 0, io.EOF
	}
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		g.err = err
		return n, io.EOF
	}
	return n, err
}

// readHeader reads the header section the way go-msgauth does (one entry
// per field, continuation lines joined; a line is ended by LF with an
// optional CR before it) so that signature indexes match, and also returns
// the raw bytes read. complete is false when the message ended before the
// blank line that ends the header.
func readHeader(br *bufio.Reader, max int) (raw []byte, fields []string, complete bool, err error) {
	for {
		start := len(raw)
		var rerr error
		for {
			var chunk []byte
			chunk, rerr = br.ReadSlice('\n')
			if len(raw)+len(chunk) > max {
				return nil, nil, false, ErrHeaderTooLarge
			}
			raw = append(raw, chunk...)
			if rerr != bufio.ErrBufferFull {
				break
			}
		}
		if rerr != nil && rerr != io.EOF {
			return nil, nil, false, rerr
		}
		line := raw[start:]
		if len(line) == 0 { // io.EOF at a line start
			return raw, fields, false, nil
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
		if text == "" && rerr == nil {
			return raw, fields, true, nil
		}
		if len(fields) > 0 && text != "" && (text[0] == ' ' || text[0] == '\t') {
			fields[len(fields)-1] += text + "\r\n"
		} else {
			fields = append(fields, text+"\r\n")
		}
		if rerr == io.EOF {
			return raw, fields, false, nil
		}
	}
}

// splitField splits "Name: value" as go-msgauth does.
func splitField(f string) (name, value string) {
	name, value, _ = strings.Cut(f, ":")
	return strings.TrimSpace(name), strings.TrimSpace(value)
}

// maxTags bounds the tags of one tag list; real signatures have about 12.
const maxTags = 64

// parseTagList parses an RFC 6376 section 3.2 tag list ("v=1; a=rsa-sha256;
// ..."). It returns what it could parse along with the first error: a tag
// without "=", an empty or duplicate tag name, too many tags.
func parseTagList(s string) (map[string]string, error) {
	tags := make(map[string]string)
	var firstErr error
	for n, part := range strings.Split(s, ";") {
		if n >= maxTags {
			return tags, errors.New("too many tags")
		}
		name, value, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok {
			if strings.TrimSpace(part) != "" && firstErr == nil {
				firstErr = fmt.Errorf("tag without '=': %q", truncate(strings.TrimSpace(part), 20))
			}
			continue
		}
		if name == "" || !isTagName(name) {
			if firstErr == nil {
				firstErr = fmt.Errorf("bad tag name %q", truncate(name, 20))
			}
			continue
		}
		if _, dup := tags[name]; dup {
			if firstErr == nil {
				firstErr = fmt.Errorf("duplicate tag %q", name)
			}
			continue
		}
		tags[name] = strings.TrimSpace(value)
	}
	return tags, firstErr
}

// isTagName: ALPHA *ALNUMPUNC (RFC 6376 section 3.2).
func isTagName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !alpha || !(alpha || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
