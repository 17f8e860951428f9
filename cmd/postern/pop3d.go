package main

import (
	"flag"
	"fmt"
	"log/slog"

	"postern/mailbox/pop3"
	"postern/mailbox/proxy"
)

const pop3dUsage = `Usage: postern pop3d

Serves one POP3 session on standard input and output, as Courier's pop3d
does when started by inetd or by systemd (a socket unit with Accept=yes).
The client logs in as on the server's listeners, against the accounts of
CONFIGDIR (the authentication modules of authmodulelist), with STLS when the
configuration has a certificate; a plain-text login needs STLS first unless
insecureauth allows it.

Exit status: 0 when the session ended, 1 when it could not start, 78 for a
configuration error. Documented in docs/imapd.md.
`

func runPOP3D(e *env, args []string) int {
	fs := flag.NewFlagSet("pop3d", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), pop3dUsage) }
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprint(e.stderr, "postern pop3d: no arguments\n", pop3dUsage)
		return 64
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, svc, done, code := stdioAuth(e, "pop3d", log)
	if code != 0 {
		return code
	}
	defer done()
	srv := pop3.NewServer(pop3.Options{
		Hostname:          cfg.Me,
		TLSConfig:         cfg.TLSConfig(),
		Auth:              svc,
		Logger:            log,
		AllowInsecureAuth: cfg.InsecureAuth,
		Proxy:             proxy.FromPolicy(cfg, proxy.POP3, log),
	})
	if err := srv.ServeConn(stdioConn(e.stdin, e.stdout)); err != nil {
		fmt.Fprintf(e.stderr, "postern pop3d: %v\n", err)
		return 1
	}
	return 0
}
