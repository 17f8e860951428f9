package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"postern/internal/atomicfile"
)

// DefaultListeners are the loopback addresses `postern init` writes: every
// service on an unprivileged port so that a fresh setup runs without root.
var DefaultListeners = []struct{ name, addr string }{
	{ListenSMTP, "127.0.0.1:2525"},
	{ListenSubmission, "127.0.0.1:2587"},
	{ListenSubmissions, "127.0.0.1:2465"},
	{ListenIMAP, "127.0.0.1:2143"},
	{ListenIMAPS, "127.0.0.1:2993"},
	{ListenPOP3, "127.0.0.1:2110"},
	{ListenPOP3S, "127.0.0.1:2995"},
	{ListenSMAP, "127.0.0.1:2144"},
	{ListenManageSieve, "127.0.0.1:14190"},
	{ListenWeb, "127.0.0.1:8080"},
	{ListenWebs, "127.0.0.1:8443"},
}

// Init writes a complete working setup into dir: the configuration
// directory dir/etc and the data directory dir/data (see docs/init.md).
// An existing configuration is kept unless force is set.
func Init(dir, domain, hostname string, force bool) error {
	etc := filepath.Join(dir, "etc")
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(etc, "me")); err == nil && !force {
		return fmt.Errorf("%s already holds a configuration (use --force to overwrite)", etc)
	}
	_, statErr := os.Stat(dir)
	createdDir := errors.Is(statErr, fs.ErrNotExist)
	for _, d := range []string{etc, filepath.Join(etc, "certs"), data, filepath.Join(data, "mail"), filepath.Join(data, "queue"), filepath.Join(data, "state")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	// Local users' sendmail reads etc/datadir and connects to
	// data/submit.sock: both directories may be searched (not listed) by
	// everyone, as /etc/postfix and Postfix's public/ directory are.
	searchable := []string{etc, data}
	if createdDir {
		searchable = append(searchable, dir) // an existing DIR keeps its mode
	}
	for _, d := range searchable {
		if err := os.Chmod(d, 0o751); err != nil {
			return err
		}
	}
	var listen strings.Builder
	listen.WriteString("# NAME ADDRESS, one listener per line. Names: smtp submission submissions\n# imap imaps pop3 pop3s smap lmtp web webs (metrics) acme. A name may appear more than once.\n# lmtp also takes a socket path: lmtp /run/postern/lmtp (docs/lmtp.md).\n")
	for _, l := range DefaultListeners {
		fmt.Fprintf(&listen, "%-12s %s\n", l.name, l.addr)
	}
	files := map[string]string{
		"me":            "# This host's name: SMTP banner, Received headers, Message-IDs.\n" + hostname + "\n",
		"acceptmailfor": "# Domains whose mail this server accepts, one per line.\n" + domain + "\n",
		"listen":        listen.String(),
		"datadir":       "# Queue, state and mailboxes; relative to this directory.\n../data\n",
		"tlscert":       "# PEM file with the certificate chain and the private key. For certificates\n# from Let's Encrypt instead, list the host names in acmehosts and add\n# \"acme 0.0.0.0:80\" to listen (docs/acme.md); this one serves until then.\ncerts/postern.pem\n",
		"sizelimit":     "# Largest message accepted (bytes; K, M, G suffixes).\n50M\n",
		"insecureauth":  "# Allow passwords without TLS. The listeners above are on loopback only;\n# set this to no before listening on a public address.\nyes\n",
		"userdb":        "# Courier userdb: NAME<TAB>uid=N|gid=N|home=DIR|mail=MAILDIR|systempw=HASH|quota=Q\n# Manage with: postern user add|passwd|del|list\n",
		"smtpaccess": "# Courier smtpaccess: ADDRESS<TAB>allow[,VAR=value...] | deny (docs/smtpaccess.md).\n" +
			"# Local programs may relay, and their mail skips the spam checks.\n127.0.0.1\tallow,RELAYCLIENT\n::1\tallow,RELAYCLIENT\n",
		"filters": "# Checks run during the SMTP session, in this order: NAME [MODE] [weight=N]\n" +
			"# MODE: reject (verdicts apply; the default), quarantine, score (only the\n" +
			"# score counts), ignore (log only). Authenticated clients and clients that\n" +
			"# smtpaccess lets relay are not checked. See docs/filters.md.\n" +
			"behaviour\nratelimit\ndnsbl\nbofh\nspf\ndkim\narc\ndmarc\n# greylist\n# reputation\n# bayes (train it first: postern bayes learn; docs/bayes.md)\n",
		"spamscore": "# Total score at which a message is refused or filed into Junk.\nreject 10\nquarantine 5\n",
		"aliases":   aliasesFile(""),
		"senderlogin": "# Envelope senders an authenticated client may use: own (addresses that\n" +
			"# reach its own account: its address, extensions, aliases it is in; and <>)\n" +
			"# or any. See docs/smtp.md.\nown\n",
	}
	for name, content := range files {
		perm := os.FileMode(0o640)
		if name == "datadir" {
			perm = 0o644 // read by every local user's sendmail
		}
		if name == "userdb" {
			perm = 0o600 // holds password hashes; Courier refuses a readable userdb
		}
		if err := WriteFileAtomic(filepath.Join(etc, name), []byte(content), perm); err != nil {
			return err
		}
	}
	certPEM, err := selfSignedPEM(hostname, domain)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(etc, "certs", "postern.pem"), certPEM, 0o600); err != nil {
		return err
	}
	if _, err := Load(etc); err != nil {
		return fmt.Errorf("the written configuration does not load (a bug): %w", err)
	}
	return nil
}

// selfSignedPEM makes an ECDSA P-256 certificate for the host, the domain,
// localhost and the loopback addresses, valid for two years, and returns it
// followed by its private key.
func selfSignedPEM(hostname, domain string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Postern self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(2 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{hostname, domain, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	return out, nil
}

// WriteFileAtomic writes data to path so that a crash leaves the old file
// or the new one, never half (internal/atomicfile).
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// aliasesFile is the aliases source init writes: the role addresses every
// mail domain is expected to have, pointing at postmaster, and postmaster
// pointing at a person; all commented out while no person is known.
func aliasesFile(postmaster string) string {
	var b strings.Builder
	b.WriteString("# Aliases, in Courier's makealiases format (docs/aliases.md). The server\n" +
		"# compiles this file when it starts; after a change run: postern makealiases\n#\n" +
		"# Every domain must take mail for postmaster (RFC 5321 4.5.1), and should\n" +
		"# for abuse (RFC 2142); bounces and cron mail go to MAILER-DAEMON and root.\n")
	lines := []string{"postmaster: " + postmaster, "abuse: postmaster", "MAILER-DAEMON: postmaster", "root: postmaster"}
	if postmaster == "" {
		b.WriteString("# Point postmaster at a person and remove the '# ' before these lines\n" +
			"# (postern init --postmaster ADDRESS writes them so):\n")
		lines[0] += "you@example.org"
		for i := range lines {
			lines[i] = "# " + lines[i]
		}
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// SetPostmaster writes the aliases file of the configuration directory etc
// with postmaster (and abuse, MAILER-DAEMON and root through it) going to
// addr, as init writes it.
func SetPostmaster(etc, addr string) error {
	if addr == "" || strings.ContainsAny(addr, " \t\r\n,:#|") || strings.HasPrefix(addr, "/") {
		return fmt.Errorf("postmaster %q: want an address (user@domain or a local account name)", addr)
	}
	return WriteFileAtomic(filepath.Join(etc, "aliases"), []byte(aliasesFile(addr)), 0o640)
}
