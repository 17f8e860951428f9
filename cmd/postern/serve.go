package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/authtool"
	"postern/auth/userdb"
	"postern/gateway"
	"postern/gateway/smtpd"
	"postern/internal/acme"
	"postern/internal/sysmon"
	"postern/policy"
	"postern/server"
	"postern/web/admin"
)

func runServe(e *env, args []string) int {
	fs := newFlags(e, "serve", "[--config DIR] [--log-format text|json]", `
Runs every configured service (SMTP, submission, IMAP, POP3, web/metrics) in
one process. SIGHUP (or 'postern reload') reloads the configuration; a bad
configuration is refused and the running one kept. SIGINT or SIGTERM (or
'postern stop') shuts down gracefully: no new connections, transactions in
DATA finish, other sessions are told 421 / BYE.

Environment: POSTERN_SYSMON_SLACK (default 1ms) and POSTERN_SMTPD_QUIET
(default 2,2ms; 0 for off) tune latency at light load; see docs/serve.md.`)
	format := fs.String("log-format", "text", "log `format`: text or json")
	grace := fs.Duration("grace", 30*time.Second, "how long to wait for sessions on shutdown")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern serve: configuration %s:\n%v\n", e.configDir, err)
		return 78 // EX_CONFIG
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	var h slog.Handler
	if *format == "json" {
		h = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	} else {
		h = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	relaxMonitor(log)
	quietReads(log)

	srv, err := server.New(e.configDir, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern serve: %v\n", err)
		return 78
	}
	srv.Version = version
	if err := srv.Start(); err != nil {
		fmt.Fprintf(e.stderr, "postern serve: %v\n", err)
		srv.Shutdown(context.Background())
		return 1
	}
	pidFile := filepath.Join(cfg.DataDir, "postern.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		log.Warn("cannot write pid file", "path", pidFile, "err", err)
	}
	defer os.Remove(pidFile)
	log.Info("postern ready", "version", version, "config", cfg.Dir, "pid", os.Getpid())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := srv.Reload(); err == nil {
				level.Set(srv.Config().LogLevel)
			}
			continue
		}
		log.Info("shutting down", "signal", sig.String(), "grace", grace.String())
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			log.Warn("shutdown", "err", err)
		}
		log.Info("stopped")
		return 0
	}
	return 0
}

// signalServer sends sig to the server whose pid file is in the data
// directory of the configuration.
func signalServer(e *env, name string, sig syscall.Signal, args []string, description string) int {
	fs := newFlags(e, name, "[--config DIR]", description)
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	cfg, err := policy.Load(e.configDir)
	if err == nil && sig == syscall.SIGHUP {
		err = server.CheckConfig(cfg) // what the reload would refuse
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "postern %s: configuration:\n%v\n", name, err)
		return 78
	}
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, "postern.pid"))
	if err != nil {
		fmt.Fprintf(e.stderr, "postern %s: no running server found: %v\n", name, err)
		return 1
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		fmt.Fprintf(e.stderr, "postern %s: bad pid file\n", name)
		return 1
	}
	if err := syscall.Kill(pid, sig); err != nil {
		fmt.Fprintf(e.stderr, "postern %s: pid %d: %v\n", name, pid, err)
		return 1
	}
	fmt.Fprintf(e.stdout, "sent %s to pid %d\n", sig, pid)
	return 0
}

func runReload(e *env, args []string) int {
	return signalServer(e, "reload", syscall.SIGHUP, args, `
Asks the running server to reload its configuration. The configuration is
checked first: when it does not load, nothing is sent and the errors are shown.`)
}

// courierMake is Courier's make* tool for a file Courier compiles into a
// .dat database (makesmtpaccess: smtpaccess) and Postern reads as it is:
// the configuration is checked, and a running server reloads it, as
// Courier's tools restart the daemons that read the file.
func courierMake(tool, setting string) func(e *env, args []string) int {
	return func(e *env, args []string) int {
		fs := newFlags(e, tool, "[--config DIR]", fmt.Sprintf(`
Courier's %s. Postern reads %s as it is, with no database to build: this
checks the whole configuration (errors with their file and line, exit 78)
and tells a running server to reload it. With no server running, the file
is read when one starts.`, tool, setting))
		if code, done := parseFlags(e, fs, args); done {
			return code
		}
		cfg, err := policy.Load(e.configDir)
		if err == nil {
			err = server.CheckConfig(cfg)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: configuration:\n%v\n", tool, err)
			return 78
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "postern.pid")); err != nil {
			fmt.Fprintf(e.stdout, "%s: %s checked; no running server (it is read at start)\n", tool, setting)
			return 0
		}
		fmt.Fprintf(e.stdout, "%s: %s checked (Postern reads it directly, nothing to build)\n", tool, setting)
		return signalServer(e, tool, syscall.SIGHUP, nil, "")
	}
}

func runStop(e *env, args []string) int {
	return signalServer(e, "stop", syscall.SIGTERM, args, `Asks the running server to shut down gracefully.`)
}

func runConfigCheck(e *env, args []string) int {
	fs := newFlags(e, "config", "[--config DIR]", `
Loads the configuration as the server would and prints what it resolves to,
or every error with its file and line. Exit status 0 when it loads, 78 when not.`)
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return 78
	}
	// The files the server reads besides: checks, milters, smtpaccess,
	// routes, as serve and reload would read them.
	if err := server.CheckConfig(cfg); err != nil {
		fmt.Fprintln(e.stderr, err)
		return 78
	}
	fmt.Fprintf(e.stdout, "config     %s\nme         %s\ndatadir    %s\nsizelimit  %d\n", cfg.Dir, cfg.Me, cfg.DataDir, cfg.SizeLimit)
	if m := cfg.MailUser; m != nil {
		fmt.Fprintf(e.stdout, "mailuser   %s (uid %d, gid %d)\n", m.Name, m.UID, m.GID)
	}
	for _, c := range cfg.TLSCertificates {
		if c.Leaf != nil {
			fmt.Fprintf(e.stdout, "tlscert    %s (until %s)\n", strings.Join(c.Leaf.DNSNames, " "), c.Leaf.NotAfter.Format("2006-01-02"))
		}
	}
	if a := cfg.ACME; a != nil {
		fmt.Fprintf(e.stdout, "acme       %s\n", a.Directory)
		for _, h := range a.Hosts {
			switch leaf, err := acme.Kept(a.Dir, h); {
			case err != nil:
				fmt.Fprintf(e.stdout, "acme       %s (kept certificate unreadable: %v)\n", h, err)
			case leaf == nil:
				fmt.Fprintf(e.stdout, "acme       %s (not issued yet)\n", h)
			default:
				fmt.Fprintf(e.stdout, "acme       %s (until %s, %s)\n", h, leaf.NotAfter.Format("2006-01-02"), leaf.Issuer.CommonName)
			}
		}
		addrs, tls443 := policy.ChallengeListeners(cfg.Listeners)
		fmt.Fprintf(e.stdout, "acme       challenge %s\n", a.Challenge)
		switch {
		case a.Challenge == acme.DNS01 && a.DNSUpdate != nil:
			zone := a.DNSUpdate.Zone
			if zone == "" {
				zone = "(found from the SOA)"
			}
			fmt.Fprintf(e.stdout, "acme       dns update to %s, zone %s, key %s\n", a.DNSUpdate.Server, zone, cmp.Or(a.DNSUpdate.KeyName, "(none: unsigned)"))
		case a.Challenge == acme.TLSALPN01 && !tls443:
			fmt.Fprintf(e.stdout, "acme       note: no TLS listener (webs) on port 443; the CA's tls-alpn-01 check makes its TLS handshake there\n")
		case a.Challenge == acme.HTTP01 && !acme.ChallengeReachable(addrs):
			fmt.Fprintf(e.stdout, "acme       note: no acme or web listener on port 80; the CA's http-01 check needs one, or a web server forwarding /.well-known/acme-challenge/ to one\n")
		}
	}
	printAuthModules(e.stdout, cfg)
	if cfg.AuthdaemonSocket != "" {
		fmt.Fprintf(e.stdout, "auth       served to Courier's programs at %s (authdaemonsocket)\n", cfg.AuthdaemonSocket)
	}
	if admins, err := admin.LoadAdmins(cfg.Dir); err == nil {
		if len(admins) == 0 {
			fmt.Fprintf(e.stdout, "webadmin   no logins: every login to /admin/ is refused (postern webadmin passwd NAME)\n")
		} else {
			fmt.Fprintf(e.stdout, "webadmin   %s\n", strings.Join(slices.Sorted(maps.Keys(admins)), " "))
		}
	}
	for _, d := range slices.Sorted(maps.Keys(cfg.AcceptMailFor)) {
		if t, ok := cfg.DomainAliases[d]; ok {
			fmt.Fprintf(e.stdout, "domain     %s (alias of %s)\n", d, t)
			continue
		}
		fmt.Fprintf(e.stdout, "domain     %s\n", d)
	}
	for _, d := range slices.Sorted(maps.Keys(cfg.Locals)) {
		switch {
		case strings.HasPrefix(d, "!"):
			fmt.Fprintf(e.stdout, "local      not %s\n", d[1:])
		case strings.HasPrefix(d, "."):
			fmt.Fprintf(e.stdout, "local      *%s (system accounts)\n", d)
		default:
			fmt.Fprintf(e.stdout, "local      %s (system accounts)\n", d)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(cfg.RelayDomains)) {
		if !cfg.HasDomain(d) {
			how := ""
			switch {
			case cfg.RelayRecipientsListed(d):
				how = " (relayrecipients)"
			case cfg.RelayVerify:
				how = " (relayverify)"
			}
			fmt.Fprintf(e.stdout, "relay      %s%s\n", d, how)
		}
	}
	fmt.Fprintf(e.stdout, "outbound   dane=%s mtasts=%s tlsrpt=%s\n", yesNo(cfg.DANE), yesNo(cfg.MTASTS), yesNo(cfg.TLSRPT))
	if cfg.DMARCReports {
		from := cfg.DMARCReportFrom
		if from == "" {
			from = "postmaster@" + gateway.PostmasterDomain(cfg)
		}
		fmt.Fprintf(e.stdout, "dmarcrpt   every %dh, from %s\n", int(cfg.DMARCReportInterval.Hours()), from)
	}
	if cfg.SRS != nil {
		fmt.Fprintf(e.stdout, "srs        %s (%d secret(s))\n", cfg.SRS.Domain, len(cfg.SRS.Secrets))
	}
	if cfg.SoftBounce {
		fmt.Fprintf(e.stdout, "softbounce yes: nothing is refused or bounced for good\n")
	}
	for _, l := range cfg.Listeners {
		fmt.Fprintf(e.stdout, "listen     %-12s %s\n", l.Name, l.Address)
	}
	return 0
}

func runUser(e *env, args []string) int {
	return authtool.UserMain(args, e.stdin, e.stdout, e.stderr, e.configDir)
}

func runMakeuserdb(e *env, args []string) int {
	return authtool.MakeuserdbMain(args, e.stdout, e.stderr, e.configDir)
}

func runUserdb(e *env, args []string) int {
	return authtool.UserdbMain(args, e.stdin, e.stdout, e.stderr, e.configDir)
}

func runUserdbpw(e *env, args []string) int {
	return authtool.UserdbpwMain(args, e.stdin, e.stdout, e.stderr)
}

func runPw2userdb(e *env, args []string) int {
	return authtool.Pw2userdbMain(args, e.stdout, e.stderr)
}

func runAuthtest(e *env, args []string) int {
	if wantsHelp(args) {
		// AuthtestMain prints the usage; it needs no configuration for that.
		return authtool.AuthtestMain(args, e.stdout, e.stderr, auth.NewService(), nil)
	}
	svc, closeAll, code := authService(e, "authtest", slog.LevelError)
	if svc == nil {
		return code
	}
	defer closeAll()
	return authtool.AuthtestMain(args, e.stdout, e.stderr, svc, authtool.UserdbPasswordChanger(e.configDir))
}

func runAuthenumerate(e *env, args []string) int {
	if wantsHelp(args) {
		return authtool.AuthenumerateMain(args, e.stdout, e.stderr, auth.NewService())
	}
	// Warnings too: the rows and entries a module leaves out of the list.
	svc, closeAll, code := authService(e, "authenumerate", slog.LevelWarn)
	if svc == nil {
		return code
	}
	defer closeAll()
	return authtool.AuthenumerateMain(args, e.stdout, e.stderr, svc)
}

// authService opens the modules the server asks, in its order
// (authmodulelist), for a tool named name, their log lines of level and
// above on standard error; on failure it has said why and returns the
// exit status.
func authService(e *env, name string, level slog.Level) (*auth.Service, func(), int) {
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern %s: configuration:\n%v\n", name, err)
		return nil, nil, 78
	}
	db, err := userdb.Open(cfg.UserdbDB)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.stderr, "postern %s: %v\n", name, err)
		return nil, nil, 1
	}
	modules, closeModules, err := authconfig.Modules(cfg.Dir, db, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		if db != nil {
			db.Close()
		}
		fmt.Fprintf(e.stderr, "postern %s: %v\n", name, err)
		return nil, nil, 78
	}
	return auth.NewService(modules...), func() {
		closeModules()
		if db != nil {
			db.Close()
		}
	}, 0
}

// relaxMonitor gives the Go runtime's monitor thread a millisecond of timer
// slack (POSTERN_SYSMON_SLACK overrides it; 0 leaves the kernel's default):
// at one SMTP client at a time its 20 µs wake-ups were a third of the
// server's context switches (docs/serve.md, ENVIRONMENT).
func relaxMonitor(log *slog.Logger) {
	slack := time.Millisecond
	if v := os.Getenv("POSTERN_SYSMON_SLACK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			log.Warn("POSTERN_SYSMON_SLACK is not a duration; using the default", "value", v, "default", slack.String())
		} else {
			slack = d
		}
	}
	if slack == 0 {
		return
	}
	if err := sysmon.Relax(slack); err != nil {
		log.Debug("runtime monitor's timer slack left as it is", "err", err)
	}
}

// quietReads applies POSTERN_SMTPD_QUIET ("SESSIONS" or "SESSIONS,WAIT";
// 0 turns quiet reads off) to the SMTP listeners (docs/serve.md,
// ENVIRONMENT).
func quietReads(log *slog.Logger) {
	v := os.Getenv("POSTERN_SMTPD_QUIET")
	if v == "" {
		return
	}
	sessions, wait, err := parseQuiet(v)
	if err != nil {
		log.Warn("POSTERN_SMTPD_QUIET ignored", "value", v, "err", err)
		return
	}
	smtpd.SetQuietDefault(sessions, wait)
}

func parseQuiet(v string) (int, time.Duration, error) {
	n, w, hasWait := strings.Cut(v, ",")
	sessions, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || sessions < 0 {
		return 0, 0, fmt.Errorf("sessions %q: want a count, 0 for off", n)
	}
	if sessions == 0 {
		sessions = -1
	}
	wait := smtpd.DefaultQuietWait
	if hasWait {
		wait, err = time.ParseDuration(strings.TrimSpace(w))
		if err != nil || wait <= 0 || wait > time.Second {
			return 0, 0, fmt.Errorf("wait %q: want a duration over 0 and at most 1s", w)
		}
	}
	return sessions, wait, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printAuthModules shows the authentication modules in their order, and
// whether the databases and directories behind them answer now.
func printAuthModules(w io.Writer, cfg *policy.Config) {
	mods, closeAll, err := authconfig.Modules(cfg.Dir, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return // CheckConfig has reported it
	}
	defer closeAll()
	specs, _ := authconfig.Read(cfg.Dir)
	for _, s := range specs {
		if s.Name() == "authuserdb" {
			fmt.Fprintf(w, "auth       authuserdb (%s)\n", cfg.UserdbDB)
			continue
		}
		for _, m := range mods {
			if m.Name() != s.Name() {
				continue
			}
			status := ""
			if p, ok := auth.Base(m).(interface{ Ping(context.Context) error }); ok {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				if err := p.Ping(ctx); err != nil {
					status = " (not answering now: " + err.Error() + ")"
				} else {
					status = " (answering)"
				}
				cancel()
			}
			if c, ok := m.(*auth.Cache); ok {
				cfg := c.Config()
				status += fmt.Sprintf(", cached (ttl %v, negativettl %v, size %d)", cfg.TTL, cfg.NegativeTTL, cfg.Size)
			}
			fmt.Fprintf(w, "auth       %s%s\n", m.Name(), status)
		}
	}
}
