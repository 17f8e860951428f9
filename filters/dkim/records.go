package dkim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"postern/filters/dns"
	"postern/internal/cliflags"
)

// RecordsMain is `postern dkim records`: it prints the DNS TXT record of
// every signing key in CONFIGDIR/dkim (or of the given domains' keys), and
// with --check asks DNS whether each is published as it should be, so that
// an admin can confirm a new key is visible before reloading to use it.
// args are the words after "records".
//
//	postern dkim records [--check] [--dns HOST:PORT] [DOMAIN...]
func RecordsMain(args []string, stdout, stderr io.Writer, configDir string) int {
	fs := flag.NewFlagSet("postern dkim records", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "ask DNS whether each record is published")
	var servers ServerList
	fs.Var(&servers, "dns", "DNS server to ask with --check, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern dkim records [--check] [--dns HOST:PORT] [DOMAIN...]")
		fs.PrintDefaults()
	}
	var wanted []string
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
		wanted = append(wanted, strings.ToLower(strings.TrimSuffix(fs.Arg(0), ".")))
		rest = fs.Args()[1:]
	}
	keys, err := LoadKeys(filepath.Join(configDir, KeyDir))
	if err != nil {
		fmt.Fprintf(stderr, "postern dkim records: %v\n", err)
		return ExitFailure
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Domain != keys[j].Domain {
			return keys[i].Domain < keys[j].Domain
		}
		return keys[i].Selector < keys[j].Selector
	})
	var r *dns.Resolver
	if *check {
		r, err = dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2, CacheSize: -1})
		if err != nil {
			fmt.Fprintf(stderr, "postern dkim records: %v\n", err)
			return ExitFailure
		}
	}
	status := ExitOK
	shown := 0
	for _, k := range keys {
		if len(wanted) > 0 && !contains(wanted, k.Domain) {
			continue
		}
		shown++
		line, err := DNSRecord(k)
		if err != nil {
			fmt.Fprintf(stderr, "postern dkim records: %s: %v\n", k.File, err)
			status = ExitFailure
			continue
		}
		fmt.Fprintln(stdout, line)
		if r == nil {
			continue
		}
		verdict := checkPublished(r, k)
		fmt.Fprintf(stdout, "; %s\n", verdict)
		if !strings.HasPrefix(verdict, "published") {
			status = ExitFailure
		}
	}
	if shown == 0 {
		fmt.Fprintf(stderr, "postern dkim records: no keys in %s\n", filepath.Join(configDir, KeyDir))
		return ExitFailure
	}
	return status
}

// checkPublished compares the record served at the key's name with the
// key: the public key data must match.
func checkPublished(r *dns.Resolver, k Key) string {
	want, err := PublicKeyRecord(k.Signer.Public())
	if err != nil {
		return err.Error()
	}
	wantP := want[strings.Index(want, "p=")+2:]
	name := k.Selector + "._domainkey." + k.Domain
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	txts, err := r.LookupTXT(ctx, name)
	switch {
	case dns.IsNotFound(err):
		return "NOT PUBLISHED: no TXT record at " + name
	case err != nil:
		return "NOT CHECKED: " + err.Error()
	case len(txts) > 1:
		return fmt.Sprintf("WRONG: %d TXT records at %s (verifiers refuse more than one)", len(txts), name)
	}
	tags, _ := parseTagList(txts[0])
	if stripSpace(tags["p"]) == wantP {
		return "published: " + name + " serves this key"
	}
	return "WRONG: " + name + " serves a different key"
}
