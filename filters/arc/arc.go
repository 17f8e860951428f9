// Package arc verifies and adds Authenticated Received Chain header fields
// (RFC 8617).
//
// A forwarder (a mailing list, an alias to another provider) changes a
// message or its path so that SPF and often DKIM fail at the next hop, and
// with them the author domain's DMARC policy. ARC lets each such handler
// record what it found and vouch for the message as it passed it on: it
// adds an ARC set of three header fields, numbered by instance (i=1 for
// the first handler, up to 50): ARC-Authentication-Results (AAR, a copy
// of its Authentication-Results), ARC-Message-Signature (AMS, a DKIM-like
// signature over the message as it forwards it) and ARC-Seal (AS, a
// signature over all the ARC sets so far, with cv= saying whether the
// chain it received was valid). A receiver verifies the chain (section
// 5.2): the sets are complete and numbered 1..N, the newest AMS verifies
// (the message was not changed after the last handler), and every AS
// verifies (the chain was not edited). The result is none (no chain),
// pass or fail; a receiver that trusts the handler that sealed a chain may
// believe its recorded results where its own checks failed, e.g. override
// a DMARC reject for mail a trusted mailing list forwarded.
//
// Keys are DKIM keys (RFC 6376 section 3.6.1), fetched through the shared
// resolver of postern/filters/dns; sealing uses the DKIM keys of
// postern/filters/dkim. The canonicalization and key record parsing are
// written here: go-msgauth keeps them unexported.
package arc

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"postern/filters/dns"
)

// MaxInstances is the highest instance an ARC set may have (RFC 8617
// section 4.2.1).
const MaxInstances = 50

// Header field names (RFC 8617 section 4.1).
const (
	FieldAAR = "ARC-Authentication-Results"
	FieldAMS = "ARC-Message-Signature"
	FieldAS  = "ARC-Seal"
)

// Status is the chain validation status (RFC 8617 section 4.4), with a
// temporary error for keys that could not be fetched now. Section 5.2.1
// makes every error a fail, and Authentication-Results says fail for it;
// TempError tells the rules and the sealer (which then does not seal a
// chain our own DNS trouble would mark dead) that it was ours.
type Status int

const (
	None      Status = iota // no ARC sets
	Pass                    // a valid chain
	Fail                    // a broken, forged or malformed chain
	TempError               // a key could not be fetched now; asking later may pass
)

var statusNames = [...]string{"none", "pass", "fail", "temperror"}

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

// Set is one ARC set as found in the message.
type Set struct {
	Instance int
	// Sealer is the ARC-Seal's d= (lower case), Selector its s=.
	Sealer, Selector string
	// CV is the ARC-Seal's cv= (none, pass, fail).
	CV string
	// AuthResults is the ARC-Authentication-Results value after "i=N;":
	// the authserv-id and the results that handler recorded.
	AuthResults string

	aar, ams, as field
	amsTags      map[string]string
	asTags       map[string]string
}

// Verification is the outcome of checking a message's chain.
type Verification struct {
	Status Status
	// Reason says why, in one line.
	Reason string
	// Sets are the ARC sets in instance order (1..N) when the chain's
	// structure is valid; nil otherwise.
	Sets []Set
	// OldestPass, for a passing chain, is the oldest instance whose AMS
	// still verifies, going down from the newest without a gap, or 0 when
	// every AMS verifies (RFC 8617 section 5.2 step 5; the value of
	// header.oldest-pass). It shows where the message was last changed.
	OldestPass int
}

// Instances is N, the newest instance (0 without a valid chain).
func (v Verification) Instances() int { return len(v.Sets) }

// OldestSealer is the d= of the first handler's ARC-Seal (i=1) of a valid
// chain, "" otherwise.
func (v Verification) OldestSealer() string {
	if v.Status != Pass || len(v.Sets) == 0 {
		return ""
	}
	return v.Sets[0].Sealer
}

// NewestSealer is the d= of the newest ARC-Seal, "" without a valid chain.
func (v Verification) NewestSealer() string {
	if len(v.Sets) == 0 {
		return ""
	}
	return v.Sets[len(v.Sets)-1].Sealer
}

// VerifyOptions tune Verify. The zero value uses the defaults below.
type VerifyOptions struct {
	// Timeout bounds the whole verification.
	Timeout time.Duration
	// MaxHeaderBytes bounds the header section read.
	MaxHeaderBytes int
	// Now is the clock for t= checks; nil means time.Now.
	Now func() time.Time
	// MaxKeys bounds the distinct keys fetched from DNS: a chain of 50
	// sets under 100 selectors must not cost 100 lookups. A chain that
	// needs more fails.
	MaxKeys int
}

// Defaults for VerifyOptions fields left zero.
const (
	DefaultVerifyTimeout  = 20 * time.Second
	DefaultMaxHeaderBytes = 1 << 20
	DefaultMaxKeys        = 20
)

// maxClockSkew: a signature dated further in the future than this is
// refused (t= must not be in the future, RFC 6376 section 3.5, with room
// for clocks that differ).
const maxClockSkew = 15 * time.Minute

// Verify checks the ARC chain of the message read from msg (CRLF or LF line
// endings), fetching keys through r (RFC 8617 section 5.2). It returns an
// error only when the message cannot be read (including ctx ending); what
// is wrong with the chain is in the Verification.
func Verify(ctx context.Context, r *dns.Resolver, msg io.Reader, opts VerifyOptions) (Verification, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultVerifyTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	br := bufio.NewReader(msg)
	fields, err := readHeader(br, opts.MaxHeaderBytes)
	if err != nil {
		return Verification{}, fmt.Errorf("arc: verify: %w", err)
	}
	sets, v := collectSets(fields)
	if v.Status != Pass {
		return v, nil // none, or a structural failure
	}

	// Step 4: the newest AMS, like a DKIM signature. Its body hash needs
	// the body; older AMSes (step 5) may use other canonicalizations, so
	// each distinct one is hashed in the same pass.
	bodies, err := hashBodies(ctx, br, sets)
	if err != nil {
		return Verification{}, fmt.Errorf("arc: verify: reading message: %w", err)
	}
	keys := keyCache{r: r, got: map[string]keyResult{}, max: opts.MaxKeys}
	n := len(sets)
	if st, why := verifyAMS(ctx, &keys, fields, sets[n-1], bodies, opts.Now()); st != Pass {
		return Verification{Status: st, Reason: fmt.Sprintf("ARC-Message-Signature i=%d (d=%s): %s", n, sets[n-1].amsTags["d"], why)}, nil
	}
	// Step 5: the oldest instance whose AMS still verifies (M+1 for the
	// first M that fails going down), 0 when all do.
	oldest := 0
	for i := n - 1; i >= 1; i-- {
		if st, _ := verifyAMS(ctx, &keys, fields, sets[i-1], bodies, opts.Now()); st != Pass {
			oldest = i + 1
			break
		}
	}
	// Step 6: every ARC-Seal, newest first.
	for i := n; i >= 1; i-- {
		if st, why := verifyAS(ctx, &keys, sets[:i], opts.Now()); st != Pass {
			return Verification{Status: st, Reason: fmt.Sprintf("ARC-Seal i=%d (d=%s): %s", i, sets[i-1].Sealer, why)}, nil
		}
	}
	return Verification{
		Status:     Pass,
		Reason:     fmt.Sprintf("chain of %d verified, sealed by %s", n, strings.Join(sealers(sets), ", ")),
		Sets:       sets,
		OldestPass: oldest,
	}, nil
}

func sealers(sets []Set) []string {
	out := make([]string, len(sets))
	for i, s := range sets {
		out[i] = s.Sealer
	}
	return out
}

// collectSets finds the ARC sets and checks their structure (RFC 8617
// section 5.2 steps 1-3, section 4.2.1): every field names a valid
// instance, each instance has exactly one field of each kind, instances
// run 1..N without a gap, the newest seal does not say cv=fail, the first
// says cv=none and the others cv=pass. The returned Verification is None,
// Fail with its reason, or Pass meaning "structure valid, go on".
func collectSets(fields []field) ([]Set, Verification) {
	byInstance := map[int]*Set{}
	fail := func(format string, a ...any) ([]Set, Verification) {
		return nil, Verification{Status: Fail, Reason: fmt.Sprintf(format, a...)}
	}
	found := 0
	for _, f := range fields {
		kind := 0
		switch {
		case strings.EqualFold(f.Name, FieldAAR):
			kind = 1
		case strings.EqualFold(f.Name, FieldAMS):
			kind = 2
		case strings.EqualFold(f.Name, FieldAS):
			kind = 3
		default:
			continue
		}
		found++
		if found > 3*MaxInstances {
			return fail("more than %d ARC header fields", 3*MaxInstances)
		}
		var inst int
		var tags map[string]string
		var err error
		if kind == 1 {
			inst, err = aarInstance(f.value())
		} else {
			tags, err = parseTags(f.value())
			if err == nil {
				inst, err = parseInstance(tags["i"])
			}
		}
		if err != nil {
			return fail("%s: %v", f.Name, err)
		}
		s := byInstance[inst]
		if s == nil {
			s = &Set{Instance: inst}
			byInstance[inst] = s
		}
		switch kind {
		case 1:
			if s.aar.Raw != "" {
				return fail("two %s fields with i=%d", FieldAAR, inst)
			}
			s.aar = f
			_, rest, _ := strings.Cut(f.value(), ";")
			s.AuthResults = strings.Join(strings.Fields(rest), " ")
		case 2:
			if s.ams.Raw != "" {
				return fail("two %s fields with i=%d", FieldAMS, inst)
			}
			s.ams, s.amsTags = f, tags
		case 3:
			if s.as.Raw != "" {
				return fail("two %s fields with i=%d", FieldAS, inst)
			}
			s.as, s.asTags = f, tags
			s.Sealer = strings.ToLower(stripSpace(tags["d"]))
			s.Selector = stripSpace(tags["s"])
			s.CV = strings.ToLower(stripSpace(tags["cv"]))
		}
	}
	if found == 0 {
		return nil, Verification{Status: None, Reason: "no ARC sets"}
	}
	sets := make([]Set, len(byInstance))
	for i := 1; i <= len(byInstance); i++ {
		s, ok := byInstance[i]
		if !ok {
			return fail("ARC instances are not numbered 1 to %d (i=%d missing)", len(byInstance), i)
		}
		switch {
		case s.aar.Raw == "":
			return fail("ARC set i=%d has no %s", i, FieldAAR)
		case s.ams.Raw == "":
			return fail("ARC set i=%d has no %s", i, FieldAMS)
		case s.as.Raw == "":
			return fail("ARC set i=%d has no %s", i, FieldAS)
		}
		sets[i-1] = *s
	}
	n := len(sets)
	if sets[n-1].CV == "fail" {
		return fail("the newest ARC-Seal (i=%d, d=%s) says the chain had already failed (cv=fail)", n, sets[n-1].Sealer)
	}
	for _, s := range sets {
		want := "pass"
		if s.Instance == 1 {
			want = "none"
		}
		if s.CV != want {
			return fail("ARC-Seal i=%d has cv=%s, want cv=%s", s.Instance, truncate(s.CV, 10), want)
		}
	}
	return sets, Verification{Status: Pass}
}

// bodyKey names one body hash: canonicalization and length.
type bodyKey struct{ relaxed bool }

// hashBodies reads the body once and returns its SHA-256 under every body
// canonicalization the sets' AMSes ask for.
func hashBodies(ctx context.Context, br *bufio.Reader, sets []Set) (map[bodyKey][]byte, error) {
	hashes := map[bodyKey]hash.Hash{}
	canons := map[bodyKey]*bodyCanon{}
	var writers []io.Writer
	for _, s := range sets {
		_, body := splitCanon(s.amsTags["c"])
		k := bodyKey{relaxed: body == "relaxed"}
		if _, ok := hashes[k]; ok {
			continue
		}
		h := sha256.New()
		c := &bodyCanon{out: h, relaxed: k.relaxed}
		hashes[k], canons[k] = h, c
		writers = append(writers, c)
	}
	buf := make([]byte, 32*1024)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := br.Read(buf)
		for _, w := range writers {
			w.Write(buf[:n]) // writes to a hash do not fail
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	out := map[bodyKey][]byte{}
	for k, h := range hashes {
		canons[k].Close()
		out[k] = h.Sum(nil)
	}
	return out, nil
}

// splitCanon reads c= ("relaxed/relaxed", "simple", ...): the body part
// defaults to simple, and so does a missing c= (RFC 6376 section 3.5).
func splitCanon(c string) (header, body string) {
	c = strings.ToLower(stripSpace(c))
	header, body, ok := strings.Cut(c, "/")
	if header == "" {
		header = "simple"
	}
	if !ok || body == "" {
		body = "simple"
	}
	return header, body
}

// verifyAMS checks one ARC-Message-Signature like a DKIM signature (RFC
// 8617 section 5.1.1 as a verifier reads it): its tags, body hash, the
// header fields it names, and the signature with the key from DNS.
func verifyAMS(ctx context.Context, keys *keyCache, fields []field, s Set, bodies map[bodyKey][]byte, now time.Time) (Status, string) {
	t := s.amsTags
	for _, name := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := t[name]; !ok {
			return Fail, "lacks the required " + name + "= tag"
		}
	}
	if _, ok := t["l"]; ok {
		return Fail, "has an l= body length tag, which would let anyone append to the body"
	}
	hc, bc := splitCanon(t["c"])
	if hc != "simple" && hc != "relaxed" || bc != "simple" && bc != "relaxed" {
		return Fail, "unknown canonicalization c=" + truncate(t["c"], 30)
	}
	if why := checkTime(t["t"], now); why != "" {
		return Fail, why
	}
	var signed []string
	for _, h := range strings.Split(t["h"], ":") {
		h = strings.Trim(h, " \t\r\n")
		if h == "" {
			continue
		}
		// Section 4.1.2: the seal is never part of the AMS.
		if strings.EqualFold(h, FieldAS) {
			return Fail, "h= includes ARC-Seal"
		}
		signed = append(signed, h)
	}
	if len(signed) == 0 {
		return Fail, "h= names no header field"
	}
	bh, err := base64.StdEncoding.DecodeString(stripSpace(t["bh"]))
	if err != nil {
		return Fail, "bh= is not base64"
	}
	if got := bodies[bodyKey{relaxed: bc == "relaxed"}]; !slices.Equal(got, bh) {
		return Fail, "body hash did not verify: the body was changed"
	}
	h := sha256.New()
	for _, f := range selectFields(fields, signed, s.ams) {
		io.WriteString(h, canonHeader(f.Raw, hc))
	}
	io.WriteString(h, strings.TrimSuffix(canonHeader(stripBValue(s.ams.Raw), hc), "\r\n"))
	return checkSignature(ctx, keys, t, h.Sum(nil))
}

// selectFields picks, for each name in h=, the last not yet used field of
// that name above nothing in particular: RFC 6376 section 5.4.2 takes
// instances from the bottom of the header up. The signature field itself
// (self) is never picked; a name with no field left contributes nothing.
func selectFields(fields []field, names []string, self field) []field {
	used := make([]bool, len(fields))
	var out []field
	for _, name := range names {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && fields[i].Raw != self.Raw && strings.EqualFold(fields[i].Name, name) {
				used[i] = true
				out = append(out, fields[i])
				break
			}
		}
	}
	return out
}

// verifyAS checks the ARC-Seal of the newest set in sets over every set up
// to it (RFC 8617 section 5.1.1): for each instance in order, its AAR, AMS
// and AS in relaxed header canonicalization, the last AS with b= empty
// and without its CRLF.
func verifyAS(ctx context.Context, keys *keyCache, sets []Set, now time.Time) (Status, string) {
	s := sets[len(sets)-1]
	t := s.asTags
	for _, name := range []string{"a", "b", "cv", "d", "s"} {
		if _, ok := t[name]; !ok {
			return Fail, "lacks the required " + name + "= tag"
		}
	}
	if _, ok := t["h"]; ok {
		return Fail, "has an h= tag, which an ARC-Seal must not have (section 4.1.3)"
	}
	if why := checkTime(t["t"], now); why != "" {
		return Fail, why
	}
	h := sha256.New()
	io.WriteString(h, sealInput(sets[:len(sets)-1], s.aar.Raw, s.ams.Raw, s.as.Raw))
	return checkSignature(ctx, keys, t, h.Sum(nil))
}

// sealInput is what an ARC-Seal signs: the earlier sets, then the new
// AAR, AMS and AS (its b= emptied here, without the final CRLF).
func sealInput(earlier []Set, aar, ams, as string) string {
	var b strings.Builder
	for _, e := range earlier {
		b.WriteString(canonHeaderRelaxed(e.aar.Raw))
		b.WriteString(canonHeaderRelaxed(e.ams.Raw))
		b.WriteString(canonHeaderRelaxed(e.as.Raw))
	}
	b.WriteString(canonHeaderRelaxed(aar))
	b.WriteString(canonHeaderRelaxed(ams))
	b.WriteString(strings.TrimSuffix(canonHeaderRelaxed(stripBValue(as)), "\r\n"))
	return b.String()
}

// checkTime refuses a t= that is not a number or lies in the future.
func checkTime(v string, now time.Time) string {
	if v == "" {
		return ""
	}
	sec, err := strconv.ParseInt(stripSpace(v), 10, 64)
	if err != nil || sec < 0 {
		return "t= is not a time"
	}
	if time.Unix(sec, 0).After(now.Add(maxClockSkew)) {
		return "t= is in the future"
	}
	return ""
}

// checkSignature fetches the key of d= and s= and verifies b= over digest.
func checkSignature(ctx context.Context, keys *keyCache, t map[string]string, digest []byte) (Status, string) {
	sig, err := base64.StdEncoding.DecodeString(stripSpace(t["b"]))
	if err != nil || len(sig) == 0 {
		return Fail, "b= is not base64"
	}
	d, sel := strings.ToLower(stripSpace(t["d"])), stripSpace(t["s"])
	if d == "" || sel == "" {
		return Fail, "d= or s= is empty"
	}
	k, err := keys.get(ctx, sel+"._domainkey."+d)
	if err != nil {
		if errors.Is(err, errTemporary) {
			return TempError, err.Error()
		}
		return Fail, err.Error()
	}
	if err := k.verify(strings.ToLower(stripSpace(t["a"])), digest, sig); err != nil {
		return Fail, err.Error()
	}
	return Pass, ""
}

var errTemporary = errors.New("key lookup failed temporarily")

type keyResult struct {
	key publicKey
	err error
}

// keyCache fetches each key once per verification: a chain sealed by one
// handler several times, or its AMS and AS, use the same key.
type keyCache struct {
	r   *dns.Resolver
	got map[string]keyResult
	max int // 0: no bound
}

func (c *keyCache) get(ctx context.Context, name string) (publicKey, error) {
	if k, ok := c.got[name]; ok {
		return k.key, k.err
	}
	if c.max > 0 && len(c.got) >= c.max {
		return publicKey{}, fmt.Errorf("the chain needs more than %d keys", c.max)
	}
	k, err := c.fetch(ctx, name)
	c.got[name] = keyResult{k, err}
	return k, err
}

func (c *keyCache) fetch(ctx context.Context, name string) (publicKey, error) {
	txts, err := c.r.LookupTXT(ctx, name)
	switch {
	case dns.IsNotFound(err):
		return publicKey{}, fmt.Errorf("no key at %s", name)
	case err != nil && (dns.IsTemporary(err) || ctx.Err() != nil):
		return publicKey{}, fmt.Errorf("%w: %s: %v", errTemporary, name, err)
	case err != nil:
		return publicKey{}, fmt.Errorf("key at %s: %v", name, err)
	case len(txts) == 0:
		return publicKey{}, fmt.Errorf("no key at %s", name)
	case len(txts) > 1:
		return publicKey{}, fmt.Errorf("%d key records at %s", len(txts), name)
	}
	k, err := parseKeyRecord(txts[0])
	if err != nil {
		return publicKey{}, fmt.Errorf("key at %s: %v", name, err)
	}
	return k, nil
}
