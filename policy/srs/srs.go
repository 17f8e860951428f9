// Package srs implements the Sender Rewriting Scheme, so that mail this
// server forwards keeps passing SPF and its bounces still reach the author.
//
// A forwarder that resends alice@a.example's message to bob@b.example from
// its own IP address fails a.example's SPF at b.example unless it changes
// the envelope sender to an address of its own. SRS makes that address
// carry the original one, signed, so that a bounce sent to it can be
// turned back into the original address and passed on, and nobody else can
// use the forwarder as a relay by inventing such addresses:
//
//	alice@a.example  →  SRS0=HHHH=TT=a.example=alice@fwd.example
//
// HHHH is a keyed hash (HMAC-SHA256, first 4 base64 characters) of the
// timestamp and the address, TT the day it was made (days since the epoch
// modulo 1024, in two base32 characters); an address older than MaxAge
// days, or whose hash does not verify under any of the secrets, is refused.
// A sender that is already an SRS0 address of another forwarder becomes
// SRS1, which names that forwarder and keeps its SRS0 part verbatim, so
// the address does not grow at each hop:
//
//	SRS0=HHHH=TT=a.example=alice@fwd1.example  →  SRS1=GGGG=fwd1.example==HHHH=TT=a.example=alice@fwd.example
//
// The layout is the one Shevek's libsrs2 defined and postsrsd, OpenSMTPD
// and Exim use; the hash is ours (only the forwarder that made an address
// ever checks it). Hashes are compared without regard to case, as some
// MTAs fold the local part.
package srs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of Reverse.
var (
	ErrNotSRS    = errors.New("srs: not an SRS address")
	ErrMalformed = errors.New("srs: malformed SRS address")
	ErrBadHash   = errors.New("srs: hash does not verify")
	ErrExpired   = errors.New("srs: address has expired")
)

// DefaultMaxAge is how many days an SRS address stays valid (postsrsd's
// and libsrs2's default): long enough for a bounce after the queue's
// lifetime.
const DefaultMaxAge = 21

const (
	hashLen   = 4
	base32    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	daySlots  = 1024 // two base32 characters
	separator = "="
)

// Rewriter rewrites senders for one SRS domain. Its fields are read only.
type Rewriter struct {
	Domain  string   // the domain of the SRS addresses: ours, so bounces come back
	Secrets [][]byte // the first signs; every one verifies (rotation)
	MaxAge  int      // days; 0 means DefaultMaxAge
	Now     func() time.Time
}

// New returns a Rewriter, or an error when domain or secrets are unusable.
func New(domain string, secrets [][]byte) (*Rewriter, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.ContainsAny(domain, "@= \t") {
		return nil, fmt.Errorf("srs: bad domain %q", domain)
	}
	if len(secrets) == 0 {
		return nil, errors.New("srs: no secret")
	}
	for _, s := range secrets {
		if len(s) < 16 {
			return nil, errors.New("srs: a secret must be at least 16 characters")
		}
	}
	return &Rewriter{Domain: domain, Secrets: secrets}, nil
}

// IsSRS reports whether local is an SRS local part (SRS0 or SRS1 followed
// by one of libsrs2's separators).
func IsSRS(local string) bool {
	return len(local) > 5 && (strings.EqualFold(local[:4], "SRS0") || strings.EqualFold(local[:4], "SRS1")) && isSep(local[4])
}

func isSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// Forward returns the SRS address to use as envelope sender when
// forwarding a message from sender. The null sender stays null, and an
// address already at our SRS domain is kept (it is ours to reverse).
func (r *Rewriter) Forward(sender string) (string, error) {
	if sender == "" {
		return "", nil
	}
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return "", fmt.Errorf("srs: sender %q has no domain", sender)
	}
	local, domain := sender[:at], sender[at+1:]
	if strings.ContainsAny(domain, "= \t") {
		return "", fmt.Errorf("srs: sender %q: bad domain", sender)
	}
	if strings.EqualFold(strings.TrimSuffix(domain, "."), r.Domain) {
		return sender, nil
	}
	switch {
	case IsSRS(local) && strings.EqualFold(local[:4], "SRS0"):
		// Another forwarder's SRS0: name it and keep its part as is.
		rest := local[4:] // starts with its separator
		return r.srs1(domain, rest), nil
	case IsSRS(local): // SRS1: keep the first forwarder and its SRS0 part
		host, rest, ok := splitSRS1(local)
		if !ok {
			return r.srs0(local, domain), nil // not really SRS1: wrap it whole
		}
		return r.srs1(host, rest), nil
	}
	return r.srs0(local, domain), nil
}

func (r *Rewriter) srs0(local, domain string) string {
	ts := timestamp(r.now())
	return "SRS0=" + r.hash(r.Secrets[0], ts, domain, local) + separator + ts + separator + domain + separator + local + "@" + r.Domain
}

func (r *Rewriter) srs1(host, rest string) string {
	return "SRS1=" + r.hash(r.Secrets[0], host, rest) + separator + host + separator + rest + "@" + r.Domain
}

// splitSRS1 takes "SRS1=GGGG=host==rest" apart into host and "=rest".
func splitSRS1(local string) (host, rest string, ok bool) {
	s := local[5:] // after "SRS1="
	if len(s) < hashLen+1 || !isSep(s[hashLen]) {
		return "", "", false
	}
	s = s[hashLen+1:]
	i := strings.IndexByte(s, '=')
	if i <= 0 || i+2 >= len(s) || !isSep(s[i+1]) {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// Reverse turns an SRS address of ours back into the address it stands
// for: the original sender for SRS0, the previous forwarder's SRS0
// address for SRS1. The domain of addr is not checked; the caller knows
// which domains are ours.
func (r *Rewriter) Reverse(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	local := addr
	if at >= 0 {
		local = addr[:at]
	}
	if !IsSRS(local) {
		return "", ErrNotSRS
	}
	if strings.EqualFold(local[:4], "SRS1") {
		host, rest, ok := splitSRS1(local)
		if !ok {
			return "", ErrMalformed
		}
		if !r.verify(local[5:5+hashLen], host, rest) {
			return "", ErrBadHash
		}
		return "SRS0" + rest + "@" + host, nil
	}
	// SRS0=HHHH=TT=domain=local
	s := local[5:]
	if len(s) < hashLen+1+2+1 || !isSep(s[hashLen]) || !isSep(s[hashLen+3]) {
		return "", ErrMalformed
	}
	h, ts := s[:hashLen], s[hashLen+1:hashLen+3]
	s = s[hashLen+4:]
	i := strings.IndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return "", ErrMalformed
	}
	domain, orig := s[:i], s[i+1:]
	if !r.verify(h, ts, domain, orig) {
		return "", ErrBadHash
	}
	if err := r.checkAge(ts); err != nil {
		return "", err
	}
	return orig + "@" + domain, nil
}

// checkAge accepts a timestamp from the last MaxAge days, or tomorrow (a
// clock a little ahead).
func (r *Rewriter) checkAge(ts string) error {
	then, ok := decodeTimestamp(ts)
	if !ok {
		return ErrMalformed
	}
	maxAge := r.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	today := day(r.now())
	age := (today - then + daySlots) % daySlots
	if age <= maxAge || age == daySlots-1 {
		return nil
	}
	return ErrExpired
}

func (r *Rewriter) verify(h string, parts ...string) bool {
	for _, secret := range r.Secrets {
		if strings.EqualFold(h, r.hash(secret, parts...)) {
			return true
		}
	}
	return false
}

// hash is the first hashLen base64 characters of an HMAC-SHA256 of the
// parts, lower-cased (the address may come back in another case) and
// NUL-separated (so that no two splits of one string hash alike).
func (r *Rewriter) hash(secret []byte, parts ...string) string {
	m := hmac.New(sha256.New, secret)
	for _, p := range parts {
		m.Write([]byte(strings.ToLower(p)))
		m.Write([]byte{0})
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))[:hashLen]
}

func (r *Rewriter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func day(t time.Time) int { return int(t.Unix()/86400) % daySlots }

func timestamp(t time.Time) string {
	d := day(t)
	return string([]byte{base32[d>>5&31], base32[d&31]})
}

func decodeTimestamp(ts string) (int, bool) {
	if len(ts) != 2 {
		return 0, false
	}
	hi := strings.IndexByte(base32, upper(ts[0]))
	lo := strings.IndexByte(base32, upper(ts[1]))
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return hi<<5 | lo, true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
