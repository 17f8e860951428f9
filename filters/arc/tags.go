package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxTags bounds the tags of one tag list; real ARC fields have about 10.
const maxTags = 64

// parseTags parses an RFC 6376 section 3.2 tag list ("i=1; a=rsa-sha256;
// ..."). Values keep their inner white space (b= and bh= are stripped of
// it by the caller); a tag without "=", a bad or duplicate name, or too
// many tags is an error.
func parseTags(s string) (map[string]string, error) {
	tags := make(map[string]string)
	parts := strings.Split(s, ";")
	if len(parts) > maxTags {
		return nil, errors.New("too many tags")
	}
	for n, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			if strings.Trim(part, " \t\r\n") == "" && n == len(parts)-1 {
				continue // a trailing ";" is allowed
			}
			return nil, fmt.Errorf("tag without '=': %q", truncate(strings.TrimSpace(part), 20))
		}
		name = strings.Trim(name, " \t\r\n")
		if !isTagName(name) {
			return nil, fmt.Errorf("bad tag name %q", truncate(name, 20))
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("duplicate tag %q", name)
		}
		tags[name] = strings.Trim(value, " \t\r\n")
	}
	return tags, nil
}

// isTagName: ALPHA *ALNUMPUNC (RFC 6376 section 3.2).
func isTagName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !alpha || !(alpha || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseInstance reads an i= value: 1 to MaxInstances (RFC 8617 section
// 4.2.1).
func parseInstance(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxInstances || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("instance %q is not a number from 1 to %d", truncate(s, 10), MaxInstances)
	}
	return n, nil
}

// aarInstance reads the instance of an ARC-Authentication-Results value,
// which starts "i=N;" before the authserv-id (RFC 8617 section 4.1.1).
func aarInstance(value string) (int, error) {
	head, _, ok := strings.Cut(value, ";")
	name, v, eq := strings.Cut(head, "=")
	if !ok || !eq || strings.Trim(name, " \t\r\n") != "i" {
		return 0, errors.New("ARC-Authentication-Results does not start with i=")
	}
	return parseInstance(strings.Trim(v, " \t\r\n"))
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

// publicKey is a key record's key (RFC 6376 section 3.6.1).
type publicKey struct {
	rsa     *rsa.PublicKey
	ed25519 ed25519.PublicKey
}

// errKeyPerm is a key record that is there but unusable.
var errKeyPerm = errors.New("unusable key record")

// parseKeyRecord reads a DKIM key record: v=DKIM1 (first when present),
// k=rsa (default) or ed25519, h= (when present it must allow sha256),
// s= (email or *), and p= (empty: the key is revoked). RSA keys under 1024
// bits are refused (RFC 8301 section 3.2).
func parseKeyRecord(txt string) (publicKey, error) {
	tags, err := parseTags(txt)
	if err != nil {
		return publicKey{}, fmt.Errorf("%w: %v", errKeyPerm, err)
	}
	if v, ok := tags["v"]; ok && (v != "DKIM1" || !strings.HasPrefix(strings.TrimLeft(txt, " \t"), "v")) {
		return publicKey{}, fmt.Errorf("%w: v= is not DKIM1 at the start", errKeyPerm)
	}
	if h, ok := tags["h"]; ok && !containsFold(strings.Split(stripSpace(h), ":"), "sha256") {
		return publicKey{}, fmt.Errorf("%w: h= does not allow sha256", errKeyPerm)
	}
	if s, ok := tags["s"]; ok {
		list := strings.Split(stripSpace(s), ":")
		if !containsFold(list, "*") && !containsFold(list, "email") {
			return publicKey{}, fmt.Errorf("%w: key not meant for email (s=)", errKeyPerm)
		}
	}
	p, ok := tags["p"]
	if !ok {
		return publicKey{}, fmt.Errorf("%w: no p=", errKeyPerm)
	}
	p = stripSpace(p)
	if p == "" {
		return publicKey{}, fmt.Errorf("%w: key revoked (p= empty)", errKeyPerm)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return publicKey{}, fmt.Errorf("%w: p= is not base64", errKeyPerm)
	}
	switch k := strings.ToLower(stripSpace(tags["k"])); k {
	case "", "rsa":
		var pub *rsa.PublicKey
		if any, err := x509.ParsePKIXPublicKey(der); err == nil {
			pub, _ = any.(*rsa.PublicKey)
		} else if r, err := x509.ParsePKCS1PublicKey(der); err == nil {
			pub = r
		}
		if pub == nil {
			return publicKey{}, fmt.Errorf("%w: p= is not an RSA public key", errKeyPerm)
		}
		if pub.N.BitLen() < 1024 {
			return publicKey{}, fmt.Errorf("%w: RSA key of %d bits is too weak (RFC 8301)", errKeyPerm, pub.N.BitLen())
		}
		return publicKey{rsa: pub}, nil
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return publicKey{}, fmt.Errorf("%w: Ed25519 key of %d octets", errKeyPerm, len(der))
		}
		return publicKey{ed25519: ed25519.PublicKey(der)}, nil
	default:
		return publicKey{}, fmt.Errorf("%w: unknown key type k=%s", errKeyPerm, truncate(k, 20))
	}
}

// verify checks sig over the SHA-256 digest with the algorithm a= names.
func (k publicKey) verify(algorithm string, digest, sig []byte) error {
	switch algorithm {
	case "rsa-sha256":
		if k.rsa == nil {
			return errors.New("a=rsa-sha256 but the key is not RSA")
		}
		if rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest, sig) != nil {
			return errors.New("signature did not verify")
		}
	case "ed25519-sha256":
		// RFC 8463 section 3: Ed25519 signs the SHA-256 digest.
		if k.ed25519 == nil {
			return errors.New("a=ed25519-sha256 but the key is not Ed25519")
		}
		if !ed25519.Verify(k.ed25519, digest, sig) {
			return errors.New("signature did not verify")
		}
	default:
		return fmt.Errorf("unsupported algorithm a=%s", truncate(algorithm, 20))
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
