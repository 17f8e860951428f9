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

// Signer signs outgoing mail with the keys of each domain. It is safe for
// concurrent use; build a new one on reload.
type Signer struct {
	// byDomain holds, per domain, the newest key of each algorithm: RSA
	// first, then Ed25519.
	byDomain       map[string][]Key
	maxHeaderBytes int
}

// NewSigner returns a Signer for keys. Per domain and algorithm, the key
// with the lexically greatest selector signs, so that date-named selectors
// (keygen's default, s20260115) roll over to the newest key. A domain with
// both an RSA and an Ed25519 key gets two signatures (RFC 8463 section 3
// suggests it: verifiers that do not know Ed25519 still find the RSA one).
func NewSigner(keys []Key) *Signer {
	newest := make(map[[2]string]Key) // (domain, algorithm) -> key
	for _, k := range keys {
		id := [2]string{strings.ToLower(strings.TrimSuffix(k.Domain, ".")), k.Algorithm()}
		if old, ok := newest[id]; !ok || k.Selector > old.Selector {
			newest[id] = k
		}
	}
	s := &Signer{byDomain: make(map[string][]Key), maxHeaderBytes: DefaultMaxHeaderBytes}
	for id, k := range newest {
		s.byDomain[id[0]] = append(s.byDomain[id[0]], k)
	}
	for _, ks := range s.byDomain {
		sort.Slice(ks, func(i, j int) bool { return ks[i].Algorithm() > ks[j].Algorithm() }) // rsa, then ed25519
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

// KeysFor returns the keys that sign for domain: the domain's own, else
// those of the nearest parent domain that has any (mail from
// lists.example.org signed with d=example.org still aligns with its From
// under DMARC's default relaxed mode). A bare top-level label never
// matches.
func (s *Signer) KeysFor(domain string) []Key {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	for strings.Contains(d, ".") {
		if ks, ok := s.byDomain[d]; ok {
			return ks
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return nil
}

// KeyFor returns the first key KeysFor finds (the RSA one when there are
// two).
func (s *Signer) KeyFor(domain string) (Key, bool) {
	ks := s.KeysFor(domain)
	if len(ks) == 0 {
		return Key{}, false
	}
	return ks[0], true
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
// v=1; a=...", folded with CRLF, without the final CRLF; when the domain
// has an RSA and an Ed25519 key, two such fields separated by CRLF. It
// signs with the keys of KeysFor(domain), relaxed/relaxed canonicalization
// and SHA-256, over the SignedHeaders present in the message. It fails with
// ErrNoKey (wrapped) when there is no key for domain.
func (s *Signer) Sign(ctx context.Context, domain string, msg io.Reader) (headerField string, err error) {
	keys := s.KeysFor(domain)
	if len(keys) == 0 {
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
	signers := make([]*msgdkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	for _, key := range keys {
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
			for _, sg := range signers {
				sg.Close()
			}
			return "", fmt.Errorf("dkim: sign for %s with %s: %w", domain, key.Selector, err)
		}
		signers = append(signers, signer)
		writers = append(writers, signer)
	}
	head := raw
	if !complete {
		if len(head) > 0 && !bytes.HasSuffix(head, []byte("\n")) {
			head = append(head, "\r\n"...)
		}
		head = append(head, "\r\n"...)
	}
	body := &guardedReader{ctx: ctx, r: br}
	_, copyErr := io.Copy(io.MultiWriter(writers...), io.MultiReader(bytes.NewReader(head), body))
	// Every signer is closed, whatever happened, so that its goroutine ends.
	var closeErr error
	for _, sg := range signers {
		if err := sg.Close(); err != nil && closeErr == nil {
			closeErr = err
		}
	}
	switch {
	case body.err != nil:
		return "", fmt.Errorf("dkim: sign for %s: reading message: %w", domain, body.err)
	case copyErr != nil:
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, copyErr)
	case closeErr != nil:
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, closeErr)
	}
	out := make([]string, len(signers))
	for i, sg := range signers {
		out[i] = strings.TrimSuffix(sg.Signature(), "\r\n")
	}
	return strings.Join(out, "\r\n"), nil
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
