package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/authdaemon"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/policy"
)

const authdaemondUsage = `Usage: postern authdaemond [--config DIR] [--socket PATH]

Answers Courier authdaemond's socket protocol from the accounts of the
configuration (the modules of authmodulelist, with authcache and the
failed-login guard of authlimit), and does nothing else: for an
installation that keeps Courier's imapd, pop3d, maildrop or sqwebmail and
lets them log in Postern's users. "postern serve" does the same when the
authdaemonsocket setting names a socket; run this instead when Postern
serves nothing else.

The socket is PATH, else the authdaemonsocket setting, else
/run/courier/authdaemon/socket, where Debian's Courier programs look. It
is created mode 0777; its directory (made 0750 when missing) decides who
may ask: give it the group of the programs that do. Stop Courier's own
authdaemond first (systemctl stop courier-authdaemon).

SIGHUP reads authmodulelist and the modules' settings again; SIGINT or
SIGTERM stops, removing the socket.

Exit status: 0 after a signal stopped it, 1 when it could not start, 78
for a configuration error. Documented in docs/authdaemon.md.

Options:
`

func runAuthdaemond(e *env, args []string) int {
	fs := newFlags(e, "authdaemond", "", "")
	socket := fs.String("socket", "", "serve at `PATH` (default: authdaemonsocket, else "+authdaemon.DefaultSocket+")")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), authdaemondUsage)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern authdaemond: configuration %s:\n%v\n", e.configDir, err)
		return 78
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	path := *socket
	if path == "" {
		path = cfg.AuthdaemonSocket
	}
	if path == "" {
		path = authdaemon.DefaultSocket
	}

	db, err := userdb.Open(cfg.UserdbDB, userdb.WithLogger(log))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.stderr, "postern authdaemond: %v\n", err)
		return 1
	}
	if db != nil {
		defer db.Close()
	}
	specs, err := authconfig.Read(cfg.Dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern authdaemond: %v\n", err)
		return 78
	}
	mods, closeMods, err := authconfig.Open(specs, db, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern authdaemond: %v\n", err)
		return 78
	}
	defer func() { closeMods() }()
	svc := auth.NewService(mods...)
	guard := auth.NewGuard(guardConfigOf(cfg))
	svc.SetGuard(guard)

	// Signals first: a SIGTERM that comes once the socket answers must
	// find the handler in place.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ln, err := authdaemon.Listen(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern authdaemond: %v\n", err)
		return 1
	}
	srv := authdaemon.NewServer(authdaemon.ServerOptions{
		Auth: svc,
		ChangePassword: func(_ context.Context, a *auth.Account, service, pw string) error {
			if a.Module != userdb.ModuleName {
				return errors.New("the account's module cannot change passwords")
			}
			return authtool.UserdbPasswordChanger(cfg.Dir)(a.Name, service, pw)
		},
		Logger: log,
	})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("authdaemond ready", "socket", path, "config", cfg.Dir, "pid", os.Getpid())

	for {
		select {
		case err := <-done:
			fmt.Fprintf(e.stderr, "postern authdaemond: %v\n", err)
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// The same rules as the server's reload: a bad
				// configuration is refused and the running one kept.
				newCfg, err := policy.Load(cfg.Dir)
				if err == nil {
					specs, err = authconfig.Read(cfg.Dir)
				}
				var newMods []auth.Module
				var closeNew func()
				if err == nil {
					newMods, closeNew, err = authconfig.Open(specs, db, log)
				}
				if err != nil {
					log.Error("reload refused; keeping the running configuration", "err", err)
					continue
				}
				svc.SetModules(newMods...)
				guard.SetConfig(guardConfigOf(newCfg))
				level.Set(newCfg.LogLevel)
				closeOld := closeMods
				closeMods = closeNew
				closeOld()
				log.Info("configuration reloaded", "dir", cfg.Dir)
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			srv.Shutdown(ctx)
			cancel()
			<-done
			return 0
		}
	}
}

// guardConfigOf is the failed-login guard of the authlimit setting, as
// the server reads it.
func guardConfigOf(cfg *policy.Config) auth.GuardConfig {
	g := auth.DefaultGuardConfig()
	g.Failures, g.Window, g.Block = cfg.AuthFailures, cfg.AuthWindow, cfg.AuthBlock
	if cfg.AuthExemptSet {
		g.Exempt = cfg.AuthExempt
	}
	return g
}
