package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"postern/internal/cliflags"
)

// Exit statuses of KeygenMain and CheckMain.
const (
	ExitOK      = 0 // done (CheckMain: results printed, whatever they are)
	ExitFailure = 1 // could not do it (a file could not be written, DNS not usable)
	ExitUsage   = 2 // bad arguments
)

// Key sizes keygen accepts for RSA. RFC 8301 section 3.2 wants at least
// 1024 bits for verifying and 2048 for signing; 4096-bit keys do not fit
// every DNS provider's TXT handling, but an admin may want them.
const (
	minRSABits     = 2048
	maxRSABits     = 4096
	defaultRSABits = 2048
)

// PublicKeyRecord returns the DKIM key record (RFC 6376 section 3.6.1) that
// publishes pub: "v=DKIM1; k=rsa; p=BASE64".
func PublicKeyRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("dkim: public key record: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		// RFC 8463 section 4.2: the raw 32-octet key, base64.
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("dkim: public key record: unsupported key type %T", pub)
}

// DNSRecord returns the zone-file line that publishes key:
//
//	SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=...; p=..." "..."
//
// with the value split into character-strings of at most 255 octets
// (RFC 1035 section 3.3.14; a verifier joins them, RFC 6376 section
// 3.6.2.2).
func DNSRecord(key Key) (string, error) {
	rec, err := PublicKeyRecord(key.Signer.Public())
	if err != nil {
		return "", err
	}
	var parts []string
	for len(rec) > 255 {
		parts = append(parts, `"`+rec[:255]+`"`)
		rec = rec[255:]
	}
	parts = append(parts, `"`+rec+`"`)
	return fmt.Sprintf("%s._domainkey.%s. IN TXT %s", key.Selector, strings.TrimSuffix(key.Domain, "."), strings.Join(parts, " ")), nil
}

// GenerateKey makes a new private key: keyType "ed25519" or "rsa" (bits
// between 2048 and 4096).
func GenerateKey(keyType string, bits int) (crypto.Signer, error) {
	switch keyType {
	case "ed25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dkim: generate ed25519 key: %w", err)
		}
		return priv, nil
	case "rsa":
		if bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("dkim: generate rsa key: %d bits is outside %d..%d", bits, minRSABits, maxRSABits)
		}
		priv, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("dkim: generate rsa key: %w", err)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("dkim: generate key: unknown type %q (want ed25519 or rsa)", keyType)
}

// MarshalPrivateKey encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dkim: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// KeygenMain is `postern dkim keygen`: it creates a signing key for a
// domain in CONFIGDIR/dkim/DOMAIN.SELECTOR.key (mode 0600) and prints the
// TXT record to publish on standard output. args are the words after
// "keygen".
//
//	postern dkim keygen DOMAIN [--selector S] [--type rsa|ed25519] [--bits N] [--force]
func KeygenMain(args []string, stdout, stderr io.Writer, configDir string) int {
	fs := flag.NewFlagSet("postern dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	selector := fs.String("selector", "", "selector (default: s + today's date, e.g. s20260115)")
	keyType := fs.String("type", "rsa", "key type: rsa or ed25519 (RFC 8463; not every verifier knows it yet)")
	bits := fs.Int("bits", defaultRSABits, "RSA key size in bits (2048..4096)")
	force := fs.Bool("force", false, "replace an existing key of the same domain and selector")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern dkim keygen DOMAIN [--selector S] [--type rsa|ed25519] [--bits N] [--force]")
		fs.PrintDefaults()
	}
	// Flags may come before or after DOMAIN.
	var positional []string
	rest := args
	for {
		if err := cliflags.Parse(fs, rest, stdout); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0 // the usage is printed
			}
			return ExitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, "postern dkim keygen: want exactly one DOMAIN")
		fs.Usage()
		return ExitUsage
	}
	domain := strings.ToLower(strings.TrimSuffix(positional[0], "."))
	if err := checkDomainName(domain); err != nil {
		fmt.Fprintf(stderr, "postern dkim keygen: %q: %v\n", positional[0], err)
		return ExitUsage
	}
	if *selector == "" {
		*selector = DefaultSelector(time.Now())
	}
	if err := checkSelector(*selector); err != nil {
		fmt.Fprintf(stderr, "postern dkim keygen: --selector %q: %v\n", *selector, err)
		return ExitUsage
	}
	if *keyType != "rsa" && *keyType != "ed25519" {
		fmt.Fprintf(stderr, "postern dkim keygen: --type: want rsa or ed25519, not %q\n", *keyType)
		return ExitUsage
	}
	if *keyType == "rsa" && (*bits < minRSABits || *bits > maxRSABits) {
		fmt.Fprintf(stderr, "postern dkim keygen: --bits: want %d..%d, not %d\n", minRSABits, maxRSABits, *bits)
		return ExitUsage
	}
	if configDir == "" {
		fmt.Fprintln(stderr, "postern dkim keygen: no configuration directory")
		return ExitFailure
	}

	key, path, err := Keygen(configDir, domain, *selector, *keyType, *bits, *force)
	if errors.Is(err, ErrKeyExists) {
		fmt.Fprintf(stderr, "postern dkim keygen: %s exists; choose another --selector or use --force\n", path)
		return ExitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern dkim keygen: %v\n", err)
		return ExitFailure
	}
	signer := key.Signer
	record, err := DNSRecord(key)
	if err != nil {
		fmt.Fprintf(stderr, "postern dkim keygen: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stderr, "wrote %s (%s); publish this record, then reload:\n", path, describeKey(signer))
	fmt.Fprintln(stdout, record)
	return ExitOK
}

// ErrKeyExists: Keygen found a key of that domain and selector and was not
// told to replace it.
var ErrKeyExists = errors.New("dkim: key exists")

// DefaultSelector is keygen's selector when none is given: "s" and
// today's date (UTC), so that a later key sorts after it.
func DefaultSelector(now time.Time) string { return "s" + now.UTC().Format("20060102") }

// Keygen makes a signing key for domain (keyType "rsa" or "ed25519", bits
// for RSA) and writes it to CONFIGDIR/dkim/DOMAIN.SELECTOR.key, mode 0600,
// as `postern dkim keygen` does; it returns the key and the file's path.
// An existing file is kept (ErrKeyExists) unless force.
func Keygen(configDir, domain, selector, keyType string, bits int, force bool) (Key, string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if err := checkDomainName(domain); err != nil {
		return Key{}, "", fmt.Errorf("dkim: keygen %q: %w", domain, err)
	}
	if err := checkSelector(selector); err != nil {
		return Key{}, "", fmt.Errorf("dkim: keygen selector %q: %w", selector, err)
	}
	if configDir == "" {
		return Key{}, "", errors.New("dkim: keygen: no configuration directory")
	}
	dir := filepath.Join(configDir, KeyDir)
	path := filepath.Join(dir, KeyFileName(domain, selector))
	if _, err := os.Stat(path); err == nil && !force {
		return Key{}, path, ErrKeyExists
	}
	signer, err := GenerateKey(keyType, bits)
	if err != nil {
		return Key{}, path, err
	}
	pemData, err := MarshalPrivateKey(signer)
	if err != nil {
		return Key{}, path, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Key{}, path, fmt.Errorf("dkim: keygen: %w", err)
	}
	if err := writeKeyFile(path, pemData); err != nil {
		return Key{}, path, err
	}
	return Key{Domain: domain, Selector: selector, Signer: signer, File: path}, path, nil
}

func describeKey(k crypto.Signer) string {
	if r, ok := k.(*rsa.PrivateKey); ok {
		return fmt.Sprintf("rsa %d bits", r.N.BitLen())
	}
	return "ed25519"
}

// writeKeyFile writes the key through a temporary file created 0600 (so it
// is never readable by others, not even for a moment), fsync, rename, and
// an fsync of the directory.
func writeKeyFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// checkDomainName accepts an LDH domain name of at least two labels.
func checkDomainName(d string) error {
	if len(d) == 0 || len(d) > 253 {
		return errors.New("not a domain name")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return errors.New("not a fully qualified domain name")
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	return nil
}

// checkSelector: a selector is one DNS label here (RFC 6376 section 3.1
// allows dotted selectors, but our file layout uses the dot as separator).
func checkSelector(s string) error {
	if strings.Contains(s, ".") {
		return errors.New("a selector with a dot cannot be stored as DOMAIN.SELECTOR.key")
	}
	return checkLabel(s)
}

func checkLabel(l string) error {
	if l == "" || len(l) > 63 {
		return errors.New("empty or over-long label")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return errors.New("label starts or ends with '-'")
	}
	return nil
}
