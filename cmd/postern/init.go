package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"postern/policy"
)

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
	if code, done := parseFlags(fs, args); done {
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
	fmt.Fprintf(e.stdout, "Postern set up in %s for domain %s.\n", dir, *domain)
	fmt.Fprintf(e.stdout, "Add a user:  postern --config %s user add alice@%s [--uid N --gid N]\n", etc, *domain)
	fmt.Fprintf(e.stdout, "Start it:    postern serve --config %s\n", etc)
	return 0
}
