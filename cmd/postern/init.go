package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"postern/internal/atomicfile"
	"postern/policy"
	"postern/web/admin"
)

// The web admin login init makes, and the file beside the configuration
// that holds its password (and, for make run, the first mail user's):
// lines "webadmin NAME PASSWORD".
const (
	initAdmin       = "admin"
	credentialsName = "credentials"
)

// initWebadmin gives the web admin one login with a random password, and
// writes it into DIR/credentials (private), replacing an older webadmin
// line and keeping the others.
func initWebadmin(dir, etc string) (string, error) {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	pass := base64.RawURLEncoding.EncodeToString(b[:])
	if err := admin.SetPassword(etc, initAdmin, pass); err != nil {
		return "", err
	}
	path := filepath.Join(dir, credentialsName)
	var keep []string
	if old, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(strings.TrimSuffix(string(old), "\n"), "\n") {
			if l != "" && !strings.HasPrefix(l, "webadmin ") {
				keep = append(keep, l)
			}
		}
	}
	keep = append(keep, "webadmin "+initAdmin+" "+pass)
	if err := atomicfile.Write(path, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	return pass, nil
}

func runInit(e *env, args []string) int {
	fs := newFlags(e, "init", "DIR --domain DOMAIN [--hostname NAME] [--postmaster ADDRESS] [--force]", `
Writes a complete working setup into DIR: the configuration directory DIR/etc
(hostname, the accepted domain, listeners on loopback, a self-signed
certificate, an empty userdb, an aliases file for postmaster and abuse) and
the data directory DIR/data for the queue, state and Maildirs. Start it
with: postern serve --config DIR/etc
Refuses to overwrite an existing DIR/etc unless --force is given.`)
	domain := fs.String("domain", "", "the mail `domain` to accept (required)")
	hostname := fs.String("hostname", "", "this host's `name` (default: mail.DOMAIN)")
	force := fs.Bool("force", false, "overwrite an existing configuration")
	postmaster := fs.String("postmaster", "", "where mail for `postmaster` (and abuse, MAILER-DAEMON, root) goes; without it the aliases file has them commented out")
	// Allow "init DIR --domain X" as well as "init --domain X DIR".
	var dir string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dir, args = args[0], args[1:]
	}
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if dir == "" && fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	if dir == "" || *domain == "" {
		fs.Usage()
		return 64
	}
	if *hostname == "" {
		*hostname = "mail." + *domain
	}
	if err := policy.Init(dir, strings.ToLower(*domain), *hostname, *force); err != nil {
		fmt.Fprintf(e.stderr, "postern init: %v\n", err)
		return 1
	}
	etc, _ := filepath.Abs(filepath.Join(dir, "etc"))
	if *postmaster != "" {
		if err := policy.SetPostmaster(etc, *postmaster); err != nil {
			fmt.Fprintf(e.stderr, "postern init: %v\n", err)
			return 1
		}
	}
	if _, err := initWebadmin(dir, etc); err != nil {
		fmt.Fprintf(e.stderr, "postern init: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "Postern set up in %s for domain %s.\n", dir, *domain)
	fmt.Fprintf(e.stdout, "Web admin:   /admin/ on the web listener, login %s, password in %s\n", initAdmin, filepath.Join(dir, credentialsName))
	fmt.Fprintf(e.stdout, "Add a user:  postern --config %s user add alice@%s [--uid N --gid N]\n", etc, *domain)
	fmt.Fprintf(e.stdout, "Start it:    postern serve --config %s\n", etc)
	return 0
}
