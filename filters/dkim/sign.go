package dkim

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// KeyDir is the directory, inside the configuration directory, that holds
// signing keys: one PEM file per key, named DOMAIN.SELECTOR.key (mode 0600).
// The selector is the part after the last dot, so a selector cannot itself
// contain a dot in this layout.
const KeyDir = "dkim"

// SignedHeaders are the header fields signed when present (RFC 6376
// section 5.4.1's list of fields that matter to the reader). Every present
// instance is signed, and From once more than it occurs ("over-signed",
// section 8.15) so that nobody can add a second From under the signature.
var SignedHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"In-Reply-To", "References",
}

// Key is one signing key.
type Key struct {
	Domain   string // the SDID (d=), lower case
	Selector string // s=
	Signer   crypto.Signer
	File     string // where it was loaded from, for messages
}

// Algorithm returns "rsa" or "ed25519" (the k= of the DNS record).
func (k Key) Algorithm() string {
	if _, ok := k.Signer.Public().(ed25519.PublicKey); ok {
		return "ed25519"
	}
	return "rsa"
}

// Errors of signing and key loading, for errors.Is.
var (
	ErrNoKey      = errors.New("dkim: no signing key for domain")
	ErrBadKeyFile = errors.New("dkim: unusable key file")
)

// KeyFileName is the file name of the key for domain and selector.
func KeyFileName(domain, selector string) string {
	return strings.ToLower(domain) + "." + selector + ".key"
}

// LoadKeys reads every DOMAIN.SELECTOR.key file of dir (normally
// CONFIGDIR/dkim). A missing directory means no keys. A file that is not a
// usable private key, or that others may read, is an error naming it, so
// that a bad key is refused at load rather than at the first message.
func LoadKeys(dir string) ([]Key, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: keys %s: %w", dir, err)
	}
	var keys []Key
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".key") || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		base := strings.TrimSuffix(name, ".key")
		dot := strings.LastIndexByte(base, '.')
		if dot <= 0 || dot == len(base)-1 {
			return nil, fmt.Errorf("dkim: key %s: %w: name is not DOMAIN.SELECTOR.key", filepath.Join(dir, name), ErrBadKeyFile)
		}
		path := filepath.Join(dir, name)
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("dkim: key %s: %w", path, err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("dkim: key %s: %w: mode %04o lets others read it (want 0600)", path, ErrBadKeyFile, info.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("dkim: key %s: %w", path, err)
		}
		signer, err := ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("dkim: key %s: %w", path, err)
		}
		keys = append(keys, Key{
			Domain:   strings.ToLower(base[:dot]),
			Selector: base[dot+1:],
			Signer:   signer,
			File:     path,
		})
	}
	return keys, nil
}

// ParsePrivateKey reads a PEM private key: PKCS#8 (RSA or Ed25519, what
// keygen writes) or PKCS#1 RSA (what openssl genrsa and opendkim-genkey
// write). RSA keys under 1024 bits are refused (RFC 8301 section 3.2).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadKeyFile)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a private key", ErrBadKeyFile, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("%w: RSA key of %d bits is too weak (RFC 8301: at least 1024)", ErrBadKeyFile, k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: %T keys cannot sign DKIM", ErrBadKeyFile, key)
}

// Signer signs outgoing mail with a key per domain. It is safe for
// concurrent use; build a new one on reload.
type Signer struct {
	byDomain       map[string]Key
	maxHeaderBytes int
}

// NewSigner returns a Signer for keys. When a domain has several keys, the
// one with the lexically greatest selector signs, so that date-named
// selectors (keygen's default, s20260115) roll over to the newest key.
func NewSigner(keys []Key) *Signer {
	sorted := append([]Key(nil), keys...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Selector < sorted[j].Selector })
	s := &Signer{byDomain: make(map[string]Key), maxHeaderBytes: DefaultMaxHeaderBytes}
	for _, k := range sorted {
		s.byDomain[strings.ToLower(strings.TrimSuffix(k.Domain, "."))] = k
	}
	return s
}

// LoadSigner is NewSigner over the keys in CONFIGDIR/dkim.
func LoadSigner(configDir string) (*Signer, error) {
	keys, err := LoadKeys(filepath.Join(configDir, KeyDir))
	if err != nil {
		return nil, err
	}
	return NewSigner(keys), nil
}

// KeyFor returns the key that signs for domain: the domain's own key, else
// the key of the nearest parent domain that has one (mail from
// lists.example.org signed with d=example.org still aligns with its From
// under DMARC's default relaxed mode). A bare top-level label never
// matches.
func (s *Signer) KeyFor(domain string) (Key, bool) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	for strings.Contains(d, ".") {
		if k, ok := s.byDomain[d]; ok {
			return k, true
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return Key{}, false
}

// Domains lists the domains the Signer has keys for, sorted.
func (s *Signer) Domains() []string {
	out := make([]string, 0, len(s.byDomain))
	for d := range s.byDomain {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Sign reads the message from msg (CRLF line endings, as it will be sent)
// and returns the DKIM-Signature header field to prepend: "DKIM-Signature:
// v=1; a=...", folded with CRLF, without the final CRLF. It signs with
// domain's key (see KeyFor), relaxed/relaxed canonicalization and SHA-256, over the
// SignedHeaders present in the message. It fails with ErrNoKey (wrapped)
// when there is no key for domain.
func (s *Signer) Sign(ctx context.Context, domain string, msg io.Reader) (headerField string, err error) {
	key, ok := s.KeyFor(domain)
	if !ok {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, ErrNoKey)
	}
	br := bufio.NewReader(msg)
	raw, fields, complete, err := readHeader(br, s.maxHeaderBytes)
	if err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	headerKeys := headersToSign(fields)
	if !contains(headerKeys, "From") {
		return "", fmt.Errorf("dkim: sign for %s: message has no From header field", domain)
	}
	signer, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 key.Domain,
		Selector:               key.Selector,
		Signer:                 key.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	head := raw
	if !complete {
		if len(head) > 0 && !bytes.HasSuffix(head, []byte("\n")) {
			head = append(head, "\r\n"...)
		}
		head = append(head, "\r\n"...)
	}
	body := &guardedReader{ctx: ctx, r: br}
	_, copyErr := io.Copy(signer, io.MultiReader(bytes.NewReader(head), body))
	closeErr := signer.Close()
	switch {
	case body.err != nil:
		return "", fmt.Errorf("dkim: sign for %s: reading message: %w", domain, body.err)
	case copyErr != nil:
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, copyErr)
	case closeErr != nil:
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, closeErr)
	}
	return strings.TrimSuffix(signer.Signature(), "\r\n"), nil
}

// headersToSign lists, for h=, each SignedHeaders field as often as it
// occurs, plus one extra From.
func headersToSign(fields []string) []string {
	count := make(map[string]int)
	for _, f := range fields {
		name, _ := splitField(f)
		count[strings.ToLower(name)]++
	}
	var keys []string
	for _, h := range SignedHeaders {
		n := count[strings.ToLower(h)]
		if h == "From" && n > 0 {
			n++
		}
		for range n {
			keys = append(keys, h)
		}
	}
	return keys
}
