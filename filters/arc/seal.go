package arc

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/filters/dkim"
)

// Errors of Seal, for errors.Is.
var (
	// ErrChainFull: the message already has MaxInstances sets.
	ErrChainFull = errors.New("arc: seal: the chain already has 50 sets")
	// ErrNotSealable: the chain we received ends with cv=fail already
	// (RFC 8617 section 5.1 step 2: a broken chain is not continued), or
	// its verification did not complete.
	ErrNotSealable = errors.New("arc: seal: chain not sealable")
)

// SealOptions are what a sealer (RFC 8617 section 5.1) needs besides the
// message.
type SealOptions struct {
	// Key signs the AMS and the AS; its Domain and Selector become d= and
	// s=.
	Key dkim.Key
	// AuthservID is our name, first in the AAR (as in our
	// Authentication-Results).
	AuthservID string
	// AuthResults are the resinfo parts of our Authentication-Results
	// ("spf=pass smtp.mailfrom=...", "arc=pass ..."), copied into the AAR;
	// none gives "none".
	AuthResults []string
	// Chain is our verification of the chain the message came with: it
	// gives the new instance (N+1) and cv=.
	Chain Verification
	// Now dates the signatures (t=); zero means time.Now.
	Now time.Time
	// MaxHeaderBytes bounds the header section read; 0 means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
}

// signedFields are the header fields an AMS signs when present: DKIM's
// list plus the DKIM signatures themselves, so that the next hop sees they
// are the ones this handler passed on.
var signedFields = append(append([]string{}, dkim.SignedHeaders...), "DKIM-Signature")

// Seal returns the ARC set to add on top of msg (CRLF line endings, the
// message as it will be sent on, our Received and Authentication-Results
// fields included): "ARC-Seal: ...\r\nARC-Message-Signature:
// ...\r\nARC-Authentication-Results: ...\r\n". The AMS uses relaxed/relaxed
// canonicalization and SHA-256.
func Seal(ctx context.Context, msg io.Reader, opts SealOptions) (string, error) {
	if opts.Key.Signer == nil || opts.Key.Domain == "" || opts.Key.Selector == "" {
		return "", errors.New("arc: seal: no key")
	}
	if opts.AuthservID == "" {
		return "", errors.New("arc: seal: no authserv-id")
	}
	var cv string
	switch opts.Chain.Status {
	case None:
		cv = "none"
	case Pass:
		cv = "pass"
	case Fail:
		cv = "fail"
	default:
		return "", fmt.Errorf("%w: chain status %s", ErrNotSealable, opts.Chain.Status)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	br := bufio.NewReader(msg)
	fields, err := readHeader(br, opts.MaxHeaderBytes)
	if err != nil {
		return "", fmt.Errorf("arc: seal: %w", err)
	}
	// The sets found again here, as Verify saw them: a failed chain has no
	// valid structure to add to, so its instance is the highest one found.
	sets, structure := collectSets(fields)
	n := len(sets) + 1
	if structure.Status == Fail {
		if lastCV(fields) == "fail" {
			return "", fmt.Errorf("%w: it already ends in cv=fail", ErrNotSealable)
		}
		n = highestInstance(fields) + 1
		cv = "fail"
	}
	if n > MaxInstances {
		return "", ErrChainFull
	}
	algorithm := "rsa-sha256"
	if _, ok := opts.Key.Signer.Public().(ed25519.PublicKey); ok {
		algorithm = "ed25519-sha256"
	}
	d, s := strings.ToLower(opts.Key.Domain), opts.Key.Selector
	ts := strconv.FormatInt(opts.Now.Unix(), 10)

	// The AAR (section 4.1.1).
	results := "none"
	if len(opts.AuthResults) > 0 {
		results = strings.Join(opts.AuthResults, ";\r\n\t")
	}
	aar := fmt.Sprintf("%s: i=%d; %s;\r\n\t%s\r\n", FieldAAR, n, opts.AuthservID, results)

	// The AMS (section 4.1.2): a DKIM signature without v=.
	bodyHash := sha256.New()
	canon := &bodyCanon{out: bodyHash, relaxed: true}
	if _, err := io.Copy(canon, &ctxReader{ctx: ctx, r: br}); err != nil {
		return "", fmt.Errorf("arc: seal: reading message: %w", err)
	}
	canon.Close()
	var hnames []string
	for _, f := range fields {
		if containsFold(signedFields, f.Name) {
			hnames = append(hnames, f.Name)
		}
	}
	if !containsFold(hnames, "From") {
		return "", errors.New("arc: seal: message has no From header field")
	}
	ams := fmt.Sprintf("%s: i=%d; a=%s; c=relaxed/relaxed; d=%s; s=%s; t=%s;\r\n\th=%s;\r\n\tbh=%s;\r\n\tb=\r\n",
		FieldAMS, n, algorithm, d, s, ts, foldList(hnames), base64.StdEncoding.EncodeToString(bodyHash.Sum(nil)))
	h := sha256.New()
	for _, f := range selectFields(fields, hnames, field{}) {
		io.WriteString(h, canonHeaderRelaxed(f.Raw))
	}
	io.WriteString(h, strings.TrimSuffix(canonHeaderRelaxed(ams), "\r\n"))
	sig, err := sign(opts.Key.Signer, h.Sum(nil))
	if err != nil {
		return "", fmt.Errorf("arc: seal: AMS: %w", err)
	}
	ams = strings.TrimSuffix(ams, "\r\n") + foldB(sig) + "\r\n"

	// The AS (section 4.1.3) over the sets before it and the new one.
	as := fmt.Sprintf("%s: i=%d; a=%s; t=%s; cv=%s;\r\n\td=%s; s=%s;\r\n\tb=\r\n", FieldAS, n, algorithm, ts, cv, d, s)
	// Section 5.1.2: a seal with cv=fail signs only its own set, as if it
	// were the only one.
	var earlier []Set
	if cv != "fail" {
		earlier = sets
	}
	h = sha256.New()
	io.WriteString(h, sealInput(earlier, aar, ams, as))
	sig, err = sign(opts.Key.Signer, h.Sum(nil))
	if err != nil {
		return "", fmt.Errorf("arc: seal: AS: %w", err)
	}
	as = strings.TrimSuffix(as, "\r\n") + foldB(sig) + "\r\n"
	return as + ams + aar, nil
}

// sign signs a SHA-256 digest: PKCS #1 v1.5 for RSA, and for Ed25519 the
// digest itself as the message (RFC 8463 section 3).
func sign(k crypto.Signer, digest []byte) ([]byte, error) {
	if _, ok := k.Public().(ed25519.PublicKey); ok {
		return k.Sign(rand.Reader, digest, crypto.Hash(0))
	}
	return k.Sign(rand.Reader, digest, crypto.SHA256)
}

// foldB writes a signature value in lines of at most 76 characters.
func foldB(sig []byte) string {
	v := base64.StdEncoding.EncodeToString(sig)
	var b strings.Builder
	for len(v) > 70 {
		b.WriteString(v[:70])
		b.WriteString("\r\n\t ")
		v = v[70:]
	}
	b.WriteString(v)
	return b.String()
}

// foldList joins header names with ":", folding long lists.
func foldList(names []string) string {
	var b strings.Builder
	line := 4
	for i, n := range names {
		if i > 0 {
			b.WriteByte(':')
			line++
			if line+len(n) > 72 {
				b.WriteString("\r\n\t ")
				line = 2
			}
		}
		b.WriteString(n)
		line += len(n)
	}
	return b.String()
}

// lastCV is the cv= of the ARC-Seal with the highest instance found, ""
// when none reads.
func lastCV(fields []field) string {
	best, cv := 0, ""
	for _, f := range fields {
		if !strings.EqualFold(f.Name, FieldAS) {
			continue
		}
		tags, err := parseTags(f.value())
		if err != nil {
			continue
		}
		if i, err := parseInstance(tags["i"]); err == nil && i > best {
			best, cv = i, strings.ToLower(stripSpace(tags["cv"]))
		}
	}
	return cv
}

// highestInstance is the highest i= among the ARC fields that name one.
func highestInstance(fields []field) int {
	best := 0
	for _, f := range fields {
		var i int
		var err error
		switch {
		case strings.EqualFold(f.Name, FieldAAR):
			i, err = aarInstance(f.value())
		case strings.EqualFold(f.Name, FieldAMS), strings.EqualFold(f.Name, FieldAS):
			var tags map[string]string
			if tags, err = parseTags(f.value()); err == nil {
				i, err = parseInstance(tags["i"])
			}
		default:
			continue
		}
		if err == nil && i > best {
			best = i
		}
	}
	return best
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SealMessage is Seal over a message in memory, returning the message
// with the new set on top.
func SealMessage(ctx context.Context, msg []byte, opts SealOptions) ([]byte, error) {
	set, err := Seal(ctx, bytes.NewReader(msg), opts)
	if err != nil {
		return nil, err
	}
	return append([]byte(set), msg...), nil
}
