// Package passwd checks and makes password hashes in the forms mail servers
// keep them: crypt(3) strings (bcrypt "$2a$/$2b$/$2y$", SHA-512-crypt "$6$",
// SHA-256-crypt "$5$", MD5-crypt "$1$"), Dovecot's "{SCHEME}"-prefixed
// forms, and the "{MD5}"/"{SHA}" base64 digests Courier's userdbpw and
// authlib use.
//
// It owns no state. Every comparison of secret material is constant-time, an
// unknown or malformed hash is an error (never a silent match), and an empty
// hash never matches. Work per call is bounded: passwords longer than
// MaxPasswordLen, bcrypt costs above MaxBcryptCost and SHA-crypt rounds above
// MaxSHACryptRounds are refused, so a hostile hash or password cannot pin a
// CPU.
package passwd

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/GehirnInc/crypt"
	"github.com/GehirnInc/crypt/md5_crypt"
	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/bcrypt"
)

// Errors returned by Verify and Hash; test them with errors.Is.
var (
	// ErrUnknownScheme means the hash is in a form this package does not know.
	ErrUnknownScheme = errors.New("passwd: unknown password scheme")
	// ErrMalformedHash means the scheme is known but the hash is not valid for it.
	ErrMalformedHash = errors.New("passwd: malformed hash")
	// ErrTooCostly means the hash asks for more work than Postern allows.
	ErrTooCostly = errors.New("passwd: hash cost above Postern's limit")
	// ErrPasswordTooLong means the password exceeds MaxPasswordLen bytes.
	ErrPasswordTooLong = errors.New("passwd: password too long")
)

// Limits on the work one Verify may do.
const (
	// MaxPasswordLen bounds the password; SHA-crypt's work grows with the
	// square of the password length.
	MaxPasswordLen = 1024
	// MaxBcryptCost bounds bcrypt's cost (2^cost rounds); 16 already takes
	// seconds.
	MaxBcryptCost = 16
	// MaxSHACryptRounds bounds "rounds=" of SHA-crypt (the format allows
	// 999,999,999).
	MaxSHACryptRounds = 1_000_000
	// DefaultBcryptCost is the cost Hash uses for "bcrypt" unless the
	// environment variable BcryptCostEnv sets another.
	DefaultBcryptCost = 10
	// BcryptCostEnv names the environment variable that sets the cost of
	// new bcrypt hashes: a number from bcrypt.MinCost (4) to
	// MaxBcryptCost. Existing hashes keep the cost they were made with.
	BcryptCostEnv = "POSTERN_BCRYPT_COST"
)

// bcryptCost is the cost of new bcrypt hashes: BcryptCostEnv's, read
// once, or DefaultBcryptCost. A value out of range is an error each Hash
// reports, not a silent default.
var bcryptCost = sync.OnceValues(func() (int, error) { return parseBcryptCost(os.LookupEnv(BcryptCostEnv)) })

// parseBcryptCost reads BcryptCostEnv's value v (ok: it is set).
func parseBcryptCost(v string, ok bool) (int, error) {
	if !ok || v == "" {
		return DefaultBcryptCost, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < bcrypt.MinCost || n > MaxBcryptCost {
		return 0, fmt.Errorf("passwd: %s=%q: want a bcrypt cost from %d to %d", BcryptCostEnv, v, bcrypt.MinCost, MaxBcryptCost)
	}
	return n, nil
}

// Verify reports whether password matches hash. A mismatch is (false, nil);
// an unusable hash is (false, error wrapping ErrUnknownScheme,
// ErrMalformedHash or ErrTooCostly). An empty hash, and a crypt-style locked
// hash beginning with "!" or "*", never match and are not errors.
func Verify(hash, password string) (bool, error) {
	if len(password) > MaxPasswordLen {
		return false, ErrPasswordTooLong
	}
	if hash == "" || hash[0] == '!' || hash[0] == '*' {
		return false, nil
	}
	if hash[0] == '{' {
		end := strings.IndexByte(hash, '}')
		if end < 0 {
			return false, fmt.Errorf("%w: unterminated {SCHEME} prefix", ErrMalformedHash)
		}
		return verifyScheme(strings.ToUpper(hash[1:end]), hash[end+1:], password)
	}
	return verifyCrypt(hash, password)
}

// verifyScheme handles the "{SCHEME}rest" forms of Dovecot and Courier.
func verifyScheme(scheme, rest, password string) (bool, error) {
	// Dovecot allows an explicit encoding suffix: {SHA256.HEX}, {SSHA.B64}.
	encoding := ""
	if i := strings.LastIndexByte(scheme, '.'); i >= 0 {
		encoding = scheme[i+1:]
		scheme = scheme[:i]
		switch encoding {
		case "HEX", "B64", "BASE64":
		default:
			return false, fmt.Errorf("%w: {%s.%s}", ErrUnknownScheme, scheme, encoding)
		}
	}
	switch scheme {
	case "BLF-CRYPT":
		if !isBcrypt(rest) {
			return false, fmt.Errorf("%w: {BLF-CRYPT} is not a bcrypt string", ErrMalformedHash)
		}
		return verifyCrypt(rest, password)
	case "SHA512-CRYPT":
		if !strings.HasPrefix(rest, "$6$") {
			return false, fmt.Errorf("%w: {SHA512-CRYPT} is not a $6$ string", ErrMalformedHash)
		}
		return verifyCrypt(rest, password)
	case "SHA256-CRYPT":
		if !strings.HasPrefix(rest, "$5$") {
			return false, fmt.Errorf("%w: {SHA256-CRYPT} is not a $5$ string", ErrMalformedHash)
		}
		return verifyCrypt(rest, password)
	case "MD5-CRYPT":
		if !strings.HasPrefix(rest, "$1$") {
			return false, fmt.Errorf("%w: {MD5-CRYPT} is not a $1$ string", ErrMalformedHash)
		}
		return verifyCrypt(rest, password)
	case "CRYPT":
		return verifyCrypt(rest, password)
	case "PLAIN", "CLEARTEXT":
		if rest == "" {
			return false, nil
		}
		return subtle.ConstantTimeCompare([]byte(rest), []byte(password)) == 1, nil
	case "MD5":
		// Dovecot's {MD5} is MD5-crypt; Courier's {MD5} is the base64 of
		// the raw MD5 digest. The "$1$" tells them apart.
		if strings.HasPrefix(rest, "$1$") {
			return verifyCrypt(rest, password)
		}
		return verifyDigest(md5.New, false, encoding, rest, password)
	case "PLAIN-MD5", "LDAP-MD5":
		return verifyDigest(md5.New, false, encoding, rest, password)
	case "SMD5":
		return verifyDigest(md5.New, true, encoding, rest, password)
	case "SHA", "SHA1":
		return verifyDigest(sha1.New, false, encoding, rest, password)
	case "SSHA":
		return verifyDigest(sha1.New, true, encoding, rest, password)
	case "SHA256":
		return verifyDigest(sha256.New, false, encoding, rest, password)
	case "SSHA256":
		return verifyDigest(sha256.New, true, encoding, rest, password)
	case "SHA512":
		return verifyDigest(sha512.New, false, encoding, rest, password)
	case "SSHA512":
		return verifyDigest(sha512.New, true, encoding, rest, password)
	}
	return false, fmt.Errorf("%w: {%s}", ErrUnknownScheme, scheme)
}

// verifyDigest checks a plain or salted digest. The stored value is the
// digest, followed by the salt when salted (Dovecot's and Courier's layout,
// as in RFC 2307-style {SSHA}), encoded in base64 or hex. With no explicit
// encoding the length decides: a hex string of exactly the digest's length
// is hex (Dovecot writes {PLAIN-MD5} that way), anything else base64.
func verifyDigest(newHash func() hash.Hash, salted bool, encoding, stored, password string) (bool, error) {
	h := newHash()
	size := h.Size()
	raw, err := decodeDigest(encoding, stored, size, salted)
	if err != nil {
		return false, err
	}
	if len(raw) < size || (!salted && len(raw) != size) || (salted && len(raw) == size) {
		want := strconv.Itoa(size)
		if salted {
			want += " plus salt"
		}
		return false, fmt.Errorf("%w: digest is %d bytes, want %s", ErrMalformedHash, len(raw), want)
	}
	h.Write([]byte(password))
	h.Write(raw[size:])
	return subtle.ConstantTimeCompare(h.Sum(nil), raw[:size]) == 1, nil
}

func decodeDigest(encoding, stored string, size int, salted bool) ([]byte, error) {
	if encoding == "" {
		encoding = "B64"
		if !salted && len(stored) == 2*size && isHex(stored) {
			encoding = "HEX"
		}
	}
	var raw []byte
	var err error
	if encoding == "HEX" {
		raw, err = hex.DecodeString(stored)
	} else {
		raw, err = base64.StdEncoding.DecodeString(stored)
		if err != nil {
			// Some tools drop the padding.
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(stored, "="))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedHash, err)
	}
	return raw, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// verifyCrypt checks a crypt(3) string.
func verifyCrypt(h, password string) (bool, error) {
	switch {
	case isBcrypt(h):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, err)
		}
		if cost > MaxBcryptCost {
			return false, fmt.Errorf("%w: bcrypt cost %d > %d", ErrTooCostly, cost, MaxBcryptCost)
		}
		err = bcrypt.CompareHashAndPassword([]byte(h), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
			// bcrypt reads at most 72 bytes; x/crypto refuses longer
			// passwords, which therefore cannot be the one stored.
			return false, nil
		default:
			return false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, err)
		}
	case strings.HasPrefix(h, "$6$"):
		return verifyGehirn(sha512_crypt.New(), h, password, true)
	case strings.HasPrefix(h, "$5$"):
		return verifyGehirn(sha256_crypt.New(), h, password, true)
	case strings.HasPrefix(h, "$1$"):
		return verifyGehirn(md5_crypt.New(), h, password, false)
	}
	return false, fmt.Errorf("%w: crypt string %q", ErrUnknownScheme, schemeHint(h))
}

// schemeHint shows the start of a hash in errors without echoing it whole.
func schemeHint(h string) string {
	if i := strings.IndexByte(h[min(1, len(h)):], '$'); i >= 0 && i < 8 {
		return h[:i+2]
	}
	if len(h) > 4 {
		return h[:4] + "..."
	}
	return h
}

func verifyGehirn(c crypt.Crypter, h, password string, hasRounds bool) (bool, error) {
	// "$id$[rounds=N$]salt$digest": exactly 4 or 5 parts, and a digest.
	parts := strings.Split(h, "$")
	if len(parts) != 4 && !(hasRounds && len(parts) == 5 && strings.HasPrefix(parts[2], "rounds=")) {
		return false, fmt.Errorf("%w: crypt string has %d parts", ErrMalformedHash, len(parts))
	}
	if parts[len(parts)-1] == "" || parts[len(parts)-2] == "" {
		return false, fmt.Errorf("%w: empty salt or digest", ErrMalformedHash)
	}
	if len(parts) == 5 {
		rounds, err := strconv.Atoi(strings.TrimPrefix(parts[2], "rounds="))
		if err != nil || rounds < 0 {
			return false, fmt.Errorf("%w: bad rounds", ErrMalformedHash)
		}
		if rounds > MaxSHACryptRounds {
			return false, fmt.Errorf("%w: rounds=%d > %d", ErrTooCostly, rounds, MaxSHACryptRounds)
		}
	}
	// Generate from the settings part only ("$id$[rounds=N$]salt"): the
	// library mis-splits a full hash that carries "rounds=".
	settings := h[:strings.LastIndexByte(h, '$')]
	got, err := c.Generate([]byte(password), []byte(settings))
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrMalformedHash, err)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h)) == 1, nil
}

// Schemes Hash can make.
const (
	SchemeBcrypt      = "bcrypt"
	SchemeSHA512Crypt = "sha512-crypt"
	SchemeSHA256Crypt = "sha256-crypt"
	SchemeMD5Crypt    = "md5-crypt"
)

// Hash returns a crypt(3) string for password in scheme ("bcrypt" when
// scheme is empty, "sha512-crypt", "sha256-crypt", "md5-crypt"), with a fresh
// random salt from crypto/rand. The result carries no {SCHEME} prefix: bare
// crypt strings are what Courier's authlib and Dovecot both read.
func Hash(password, scheme string) (string, error) {
	if len(password) > MaxPasswordLen {
		return "", ErrPasswordTooLong
	}
	switch strings.ToLower(scheme) {
	case "", SchemeBcrypt, "blf-crypt":
		cost, err := bcryptCost()
		if err != nil {
			return "", err
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
		if err != nil {
			return "", fmt.Errorf("passwd: bcrypt: %w", err)
		}
		return string(h), nil
	case SchemeSHA512Crypt:
		return generateGehirn(sha512_crypt.New(), "$6$", 16, password)
	case SchemeSHA256Crypt:
		return generateGehirn(sha256_crypt.New(), "$5$", 16, password)
	case SchemeMD5Crypt:
		return generateGehirn(md5_crypt.New(), "$1$", 8, password)
	}
	return "", fmt.Errorf("%w: %q (want bcrypt, sha512-crypt, sha256-crypt or md5-crypt)", ErrUnknownScheme, scheme)
}

// cryptAlphabet is the salt alphabet of crypt(3).
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func generateGehirn(c crypt.Crypter, prefix string, saltLen int, password string) (string, error) {
	raw := make([]byte, saltLen)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("passwd: salt: %w", err)
	}
	salt := make([]byte, saltLen)
	for i, b := range raw {
		salt[i] = cryptAlphabet[int(b)%len(cryptAlphabet)] // 256 % 64 == 0: unbiased
	}
	h, err := c.Generate([]byte(password), append([]byte(prefix), salt...))
	if err != nil {
		return "", fmt.Errorf("passwd: %s: %w", prefix, err)
	}
	return h, nil
}
