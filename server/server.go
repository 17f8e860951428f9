// Package server runs every Postern service in one process from one
// configuration directory: it binds the listeners named in the "listen"
// setting, builds the authentication service, starts SMTP, IMAP, POP3, SMAP and
// the web/metrics endpoint, reloads the configuration on request (keeping the
// last good one when the new one is bad), and shuts everything down
// gracefully. `postern serve` is a thin wrapper around it; end-to-end tests
// use it in-process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/authdaemon"
	"postern/auth/userdb"
	"postern/filters/dkim"
	"postern/filters/rejectlog"
	"postern/filters/state"
	"postern/gateway"
	"postern/gateway/smtpd"
	"postern/internal/acme"
	"postern/internal/netserve"
	"postern/internal/proxyproto"
	"postern/mailbox/deliver"
	"postern/mailbox/imap"
	"postern/mailbox/maildir"
	"postern/mailbox/managesieve"
	"postern/mailbox/pop3"
	"postern/mailbox/proxy"
	"postern/mailbox/sievestore"
	"postern/mailbox/smap"
	"postern/policy"
	"postern/rules/sieve"
	"postern/web/admin"
	"postern/web/autoconfig"
	"postern/web/webmail"
)

// service is what every protocol server offers the process.
type service interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Server is the running process.
type Server struct {
	log  *slog.Logger
	cfg  atomic.Pointer[policy.Config]
	auth *auth.Service
	udb  *userdb.DB
	// authSpecs are the modules in use (authmodulelist); closeAuth closes
	// the SQL modules' connections. Both change only in Reload.
	authSpecs []authconfig.Spec
	closeAuth func()
	mta       *MTA
	reg       *prometheus.Registry

	store    state.Store
	filters  atomic.Pointer[gateway.Filters]
	rejects  *rejectlog.Log
	fResults *prometheus.CounterVec
	fLatency *prometheus.HistogramVec
	// dmarcDropped counts the DMARC failure reports not sent, by reason.
	dmarcDropped *prometheus.CounterVec
	acme         atomic.Pointer[acme.Manager] // nil without acmehosts
	webmail      *webmail.Handler             // served under /mail/ on the web listener
	// purger applies imapemptytrash at IMAP and webmail logins.
	purger *maildir.Purger
	// autoconf answers mail clients' autoconfiguration and the MTA-STS
	// policy on the web listeners; mtaSTS (under mu) are the policies it
	// was made with.
	autoconf atomic.Pointer[autoconfig.Handler]
	mtaSTS   *autoconfig.Policies
	// proxies are the IMAP, SMAP and POP3 servers' mailhost proxying,
	// updated in place by Reload.
	proxies map[string]*proxy.Config

	mu        sync.Mutex
	bound     map[string][]net.Addr // listener name -> bound addresses
	listeners []net.Listener
	services  []service
	httpSrv   []*http.Server
	started   bool // Start has bound the listeners
	wg        sync.WaitGroup
	reloads   prometheus.Counter
	reloadMu  sync.Mutex // one Reload at a time (SIGHUP, the web admin)

	// Version is shown by the web admin; the binary sets it.
	Version   string
	startTime time.Time
	adminOnce sync.Once
	admin     http.Handler
}

// New loads the configuration in configDir and prepares the services. It
// binds nothing yet.
func New(configDir string, logger *slog.Logger) (*Server, error) {
	cfg, err := policy.Load(configDir)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{log: logger, bound: map[string][]net.Addr{}, reg: prometheus.NewRegistry(), startTime: time.Now()}
	s.cfg.Store(cfg)
	if err := s.openUserdb(cfg); err != nil {
		return nil, err
	}
	specs, err := authconfig.Read(cfg.Dir)
	if err != nil {
		s.udb.Close()
		return nil, err
	}
	mods, closeAuth, err := authconfig.Open(specs, s.udb, logger)
	if err != nil {
		s.udb.Close()
		return nil, err
	}
	s.authSpecs, s.closeAuth = specs, closeAuth
	s.auth = auth.NewService(mods...)
	guard := auth.NewGuard(guardConfig(cfg))
	guard.OnBlock = func(client netip.Prefix, failures int, until time.Time) {
		// One line per block, for the admin and for fail2ban users.
		logger.Warn("auth: client blocked after failed logins", "client", client.String(), "failures", failures, "until", until.Format(time.RFC3339))
	}
	s.auth.SetGuard(guard)
	mta, err := OpenMTA(cfg, s.Config, s.auth, logger)
	if err != nil {
		s.closeAuth()
		s.udb.Close()
		return nil, err
	}
	s.mta = mta
	if err := mta.OpenTLSReports(cfg); err != nil {
		s.closeResources()
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	if err := mta.OpenDMARCReports(cfg); err != nil {
		s.closeResources()
		return nil, fmt.Errorf("dmarc reports: %w", err)
	}
	if err := mta.OpenJournal(cfg); err != nil {
		s.closeResources()
		return nil, err
	}
	s.fResults = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_filter_results_total", Help: "SMTP-time check results, by check and verdict (after its mode)."}, []string{"filter", "verdict"})
	s.fLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_filter_seconds", Help: "Time spent in each SMTP-time check.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)}, []string{"filter"})
	s.dmarcDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_dmarc_failure_reports_dropped_total", Help: "DMARC failure reports not sent: over the per-domain or global hourly cap, queue full, or state store error."}, []string{"reason"})
	s.reg.MustRegister(s.fResults, s.fLatency, s.dmarcDropped)
	if err := s.openFilters(cfg); err != nil {
		s.closeResources()
		return nil, err
	}
	mta.Filters = s.filters.Load
	am, err := s.newACME(cfg.ACME)
	if err != nil {
		s.closeResources()
		return nil, err
	}
	s.acme.Store(am)
	sts, err := autoconfig.LoadPolicies(cfg)
	if err != nil {
		s.closeResources()
		return nil, fmt.Errorf("%s: %w", autoconfig.SettingMTASTS, err)
	}
	s.setAutoconfig(cfg, sts)
	s.reg.MustRegister(newACMECollector(s))
	// Failed logins are counted in the checks' state store: kept across a
	// restart, and shared by every server on a Redis store.
	s.auth.Guard().SetStore(s.store)
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_config_reloads_total", Help: "Successful configuration reloads."})
	s.reg.MustRegister(s.reloads, guardCollector(s.auth.Guard()), authCacheCollector{s.auth})
	if j := mta.journal; j != nil {
		s.reg.MustRegister(journalCollector(j), prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postern_journal_deferred_failures_total",
			Help: "Acknowledged messages whose Maildir file could not be written after the reply, even the flushed way; the journal keeps them for the replay at the next start.",
		}, func() float64 { return float64(j.DeferredFailures()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "postern_journal_deferred_pending",
			Help: "Acknowledged messages held by the journal whose Maildir file the session has yet to write (normally 0 or a few, for microseconds).",
		}, func() float64 { return float64(j.DeferredPending()) }))
	}
	return s, nil
}

// openFilters opens the shared state, the rejection log and the checks.
func (s *Server) openFilters(cfg *policy.Config) error {
	store, err := openStore(cfg, s.log.With("module", "state"))
	if err != nil {
		return fmt.Errorf("statestore: %w", err)
	}
	s.store = store
	if s.mta != nil {
		// relayverify's answers, shared by the gateways of a cluster.
		s.mta.callout.SetStore(store)
		// DMARC failure reports count their hourly caps there too.
		s.mta.OpenDMARCFailureReports(store, s.dmarcDropped)
	}
	rl, err := rejectlog.Open(filepath.Join(cfg.DataDir, "state", "rejects.jsonl"), 0)
	if err != nil {
		return err
	}
	s.rejects = rl
	fl, err := buildFilters(cfg, store, s.mta.DMARCHooks(cfg), s.log, s.fResults, s.fLatency)
	if err != nil {
		return err
	}
	s.filters.Store(fl)
	return nil
}

// closeResources releases what New opened.
func (s *Server) closeResources() {
	if s.mta != nil {
		s.mta.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.rejects != nil {
		s.rejects.Close()
	}
	s.filters.Load().Close() // a policy server's kept connections
	if s.closeAuth != nil {
		s.closeAuth()
	}
	if s.udb != nil {
		s.udb.Close()
	}
}

// openUserdb opens the compiled userdb, compiling it from its source first
// when the index is missing or older than the source.
func (s *Server) openUserdb(cfg *policy.Config) error {
	if stale(cfg.UserdbSource, cfg.UserdbDB) {
		if err := userdb.Compile(cfg.UserdbSource, cfg.UserdbDB); err != nil {
			return fmt.Errorf("userdb: %w", err)
		}
		s.log.Info("userdb compiled", "source", cfg.UserdbSource, "db", cfg.UserdbDB)
	}
	// Check for a recompiled index on every lookup (one stat): an admin who
	// runs "postern user add" expects the next RCPT to know the user.
	db, err := userdb.Open(cfg.UserdbDB, userdb.WithCheckInterval(0), userdb.WithLogger(s.log.With("module", "userdb")))
	if err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	s.udb = db
	return nil
}

// stale reports whether the compiled index must be (re)built: it is missing,
// or a source file is newer than it.
func stale(source, db string) bool {
	dbSt, err := os.Stat(db)
	if err != nil {
		_, srcErr := os.Stat(source)
		return srcErr == nil
	}
	newest := time.Time{}
	filepath.WalkDir(source, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			if info, err := d.Info(); err == nil && info.ModTime().After(newest) {
				newest = info.ModTime()
			}
		}
		return nil
	})
	return newest.After(dbSt.ModTime())
}

// Config returns the configuration in force.
func (s *Server) Config() *policy.Config { return s.cfg.Load() }

// Auth returns the authentication service.
func (s *Server) Auth() *auth.Service { return s.auth }

// tlsConfig serves the certificates in force (see certificate), so that a
// reload with a renewed tlscert file, or an ACME renewal, takes effect for
// new connections without a restart; and the ACME CA's tls-alpn-01
// handshakes (challengeConfig) on every TLS listener. Without tlscert and
// acmehosts at start, nil: no TLS.
func (s *Server) tlsConfig() *tls.Config {
	if s.Config().TLSCertificate == nil && s.acme.Load() == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:         s.Config().TLSMinVersion, // a change applies at restart
		GetCertificate:     s.certificate,
		GetConfigForClient: s.challengeConfig,
	}
}

// Start binds every configured listener and starts serving. If any listener
// cannot be bound, everything already bound is closed and the error returned.
func (s *Server) Start() error {
	cfg := s.Config()
	tlsCfg := s.tlsConfig()
	// Courier's SMAP: its own listener, and inside IMAP connections when
	// smapcapability says so.
	s.proxies = map[string]*proxy.Config{
		"imap": proxy.FromPolicy(cfg, proxy.IMAP, s.log.With("service", "imap")),
		"smap": proxy.FromPolicy(cfg, proxy.IMAP, s.log.With("service", "smap")),
		"pop3": proxy.FromPolicy(cfg, proxy.POP3, s.log.With("service", "pop3")),
	}
	s.purger = &maildir.Purger{Logger: s.log.With("service", "purge"), Rules: func() []maildir.PurgeRule {
		var rules []maildir.PurgeRule
		for _, r := range s.Config().EmptyTrash {
			rules = append(rules, maildir.PurgeRule{Folder: r.Folder, Age: r.Age})
		}
		return rules
	}}
	smapSrv := smap.NewServer(smap.Options{
		Hostname:          cfg.Me,
		TLSConfig:         tlsCfg,
		Auth:              s.auth,
		Logger:            s.log.With("service", "smap"),
		AllowInsecureAuth: cfg.InsecureAuth,
		MaxMessageSize:    cfg.SizeLimit,
		Sender:            smapSender{s},
		// SMAP follows the IMAP proxying settings and limits, as in
		// Courier.
		Proxy:      s.proxies["smap"],
		ConnLimits: s.connLimits(func(c *policy.Config) policy.ConnLimits { return c.IMAPLimits }),
	})
	var imapSMAP imap.SMAPHandler
	if cfg.IMAPSMAP {
		imapSMAP = smapSrv
	}
	imapSrv := imap.NewServer(imap.Options{
		Hostname:          cfg.Me,
		TLSConfig:         tlsCfg,
		Auth:              s.auth,
		Logger:            s.log.With("service", "imap"),
		AllowInsecureAuth: cfg.InsecureAuth,
		CourierNamespace:  cfg.IMAPCourierNS,
		SharedRegistry:    filepath.Join(cfg.DataDir, "state", "imap-shared"),
		SMAP:              imapSMAP,
		Proxy:             s.proxies["imap"],
		// Filing into and out of Junk teaches the bayes check (a no-op
		// unless it is in the filters setting).
		JunkLearn:  s.LearnJunk,
		Purger:     s.purger,
		ConnLimits: s.connLimits(func(c *policy.Config) policy.ConnLimits { return c.IMAPLimits }),
	})
	pop3Srv := pop3.NewServer(pop3.Options{
		Hostname:          cfg.Me,
		TLSConfig:         tlsCfg,
		Auth:              s.auth,
		Logger:            s.log.With("service", "pop3"),
		AllowInsecureAuth: cfg.InsecureAuth,
		Proxy:             s.proxies["pop3"],
		ConnLimits:        s.connLimits(func(c *policy.Config) policy.ConnLimits { return c.POP3Limits }),
	})
	sieveSrv := managesieve.NewServer(managesieve.Options{
		Hostname:          cfg.Me,
		TLSConfig:         tlsCfg,
		Auth:              s.auth,
		Logger:            s.log.With("service", "managesieve"),
		AllowInsecureAuth: cfg.InsecureAuth,
		// Scripts are checked by the parser delivery runs them with.
		Validate: func(src []byte) error {
			_, err := sieve.Parse(src, deliver.SieveOptions)
			return err
		},
		Extensions: sieve.Extensions,
		// The limits apply from the next start.
		Limits:     sievestore.Limits{MaxScripts: int(cfg.SieveMaxScripts), MaxScriptSize: cfg.SieveMaxScriptSize, MaxStorage: cfg.SieveQuota},
		ConnLimits: s.connLimits(func(c *policy.Config) policy.ConnLimits { return c.ManageSieveLimits }),
	})
	s.services = []service{imapSrv, pop3Srv, smapSrv, sieveSrv}
	wm, err := s.newWebmail(cfg)
	if err != nil {
		return err
	}
	s.webmail = wm
	s.reg.MustRegister(webmailCollector(wm))
	s.reg.MustRegister(imapCollector(imapSrv), pop3Collector(pop3Srv), smapCollector(smapSrv), manageSieveCollector(sieveSrv))
	smtpMetrics := map[gateway.Mode]*gateway.Metrics{
		gateway.ModeMX:         gateway.NewMetrics(s.reg, "smtp"),
		gateway.ModeSubmission: gateway.NewMetrics(s.reg, "submission"),
		gateway.ModeLMTP:       gateway.NewMetrics(s.reg, "lmtp"),
	}

	type starter struct {
		srv      service
		implicit bool
	}
	starters := map[string]starter{
		policy.ListenIMAP:        {imapSrv, false},
		policy.ListenIMAPS:       {imapSrv, true},
		policy.ListenPOP3:        {pop3Srv, false},
		policy.ListenPOP3S:       {pop3Srv, true},
		policy.ListenSMAP:        {smapSrv, false},
		policy.ListenManageSieve: {sieveSrv, false},
	}
	smtpModes := map[string]gateway.Mode{
		policy.ListenSMTP:        gateway.ModeMX,
		policy.ListenSubmission:  gateway.ModeSubmission,
		policy.ListenSubmissions: gateway.ModeSubmission,
		policy.ListenLMTP:        gateway.ModeLMTP,
	}
	// Every listener is bound first (ports under 1024 need root), then the
	// server becomes the mail user (mailuser), then it serves: no session
	// runs with root's rights.
	lns := make([]net.Listener, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		lc := net.ListenConfig{}
		if _, isSMTP := smtpModes[l.Name]; isSMTP {
			// An SMTP session is short and bounded by its command
			// timeouts: TCP keepalive would only cost four setsockopt
			// calls per connection. IMAP and POP3 keep it, for clients
			// that vanish while idle.
			lc.KeepAlive = -1
		}
		if l.Network() == "unix" {
			os.Remove(l.Address) // a socket left by a server that died
		}
		ln, err := lc.Listen(context.Background(), l.Network(), l.Address)
		if err == nil && l.Network() == "unix" {
			// Another MTA's delivery agent (Postfix's lmtp runs as
			// "postfix") connects; the directory holding it guards it.
			err = os.Chmod(l.Address, 0o666)
		}
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s on %s (%s:%d): %w", l.Name, l.Address, l.Origin.File, l.Origin.Num, err)
		}
		s.listeners = append(s.listeners, ln)
		s.mu.Lock() // the web admin reads it while later listeners start
		s.bound[l.Name] = append(s.bound[l.Name], ln.Addr())
		s.mu.Unlock()
		lns[i] = ln
	}
	// The submission socket: sendmail run by users other than root.
	sockPath := filepath.Join(cfg.DataDir, gateway.SubmitSocketName)
	submitLn, submitErr := gateway.ListenSubmitSocket(sockPath)
	if submitErr == nil {
		s.listeners = append(s.listeners, submitLn)
	}
	// The control socket, for admin commands that need this process's
	// state (postern reputation with the embedded store).
	ctlLn, ctlErr := listenControl(cfg.DataDir)
	if ctlErr == nil {
		s.listeners = append(s.listeners, ctlLn)
	}
	// Courier's authdaemon socket, in a directory only root may write to
	// on most systems (/run/courier/authdaemon).
	authdLn, err := s.listenAuthdaemon(cfg)
	if err != nil {
		s.closeListeners()
		return err
	}
	if err := s.becomeMailUser(cfg); err != nil {
		s.closeListeners()
		return err
	}
	s.mu.Lock()
	sts := s.mtaSTS
	s.mu.Unlock()
	s.setAutoconfig(cfg, sts) // the bound ports of listeners on port 0
	for i, l := range cfg.Listeners {
		ln := lns[i]
		if _, isSMTP := smtpModes[l.Name]; l.Proxy && !isSMTP {
			// The SMTP engine reads PROXY headers itself; every other
			// service gets connections whose header is read already,
			// before any TLS.
			ln = proxyproto.NewListener(ln, func(a netip.Addr) bool {
				return slices.ContainsFunc(s.Config().TrustedProxies, func(p netip.Prefix) bool { return p.Contains(a) })
			}, 0, s.log.With("listener", l.Name))
		}
		switch l.Name {
		case policy.ListenWeb, policy.ListenMetrics:
			s.serveHTTP(ln, l.Name)
			continue
		case policy.ListenWebs:
			if tlsCfg == nil {
				s.closeListeners()
				return fmt.Errorf("listen webs on %s (%s:%d): no certificate (tlscert or acmehosts)", l.Address, l.Origin.File, l.Origin.Num)
			}
			s.serveHTTP(tls.NewListener(ln, tlsCfg), l.Name)
			continue
		case policy.ListenACME:
			s.serveACME(ln)
			continue
		}
		if mode, ok := smtpModes[l.Name]; ok {
			// One SMTP service per listener: each has its own name,
			// TLS mode and PROXY setting; the engine does TLS itself.
			checks := s.filters.Load
			if mode == gateway.ModeLMTP {
				checks = nil // the MTA in front checked the mail
			}
			smtpTLS := tlsCfg
			if tlsCfg != nil && cfg.TLSAskClientCert && mode != gateway.ModeLMTP {
				// tlsclientcerts: for the policy services' ccert_*
				// attributes; a client without one is served as well.
				smtpTLS = tlsCfg.Clone()
				smtpTLS.ClientAuth = tls.RequestClientCert
			}
			srv := gateway.NewServer(gateway.Options{
				Mode: mode, Listener: l.Name, Config: s.Config, Auth: s.auth,
				Router: s.mta.Router, Local: s.mta.Local, Queue: s.mta.Queue, Access: s.mta.Access,
				Filters: checks, Rejects: s.rejects,
				Logger: s.log.With("service", l.Name), Metrics: smtpMetrics[mode],
				TLSConfig: smtpTLS, ImplicitTLS: l.ImplicitTLS(), Proxy: l.Proxy,
			})
			s.services = append(s.services, srv)
			s.serve(l.Name, srv, ln)
			s.log.Info("listening", "listener", l.Name, "address", ln.Addr().String(), "tls", l.ImplicitTLS())
			continue
		}
		st := starters[l.Name]
		if st.implicit {
			if tlsCfg == nil {
				s.closeListeners()
				return fmt.Errorf("listener %s needs tlscert", l.Name)
			}
			ln = tls.NewListener(ln, tlsCfg)
		}
		s.serve(l.Name, st.srv, ln)
		s.log.Info("listening", "listener", l.Name, "address", ln.Addr().String(), "tls", st.implicit)
	}
	if submitErr != nil {
		s.log.Warn("no submission socket: sendmail works for root only", "path", sockPath, "err", submitErr)
	} else {
		ln := submitLn
		sub := &gateway.SubmitServer{
			Submitter: func() *gateway.Submitter {
				var signer *dkim.Signer
				if fl := s.filters.Load(); fl != nil {
					signer = fl.Signer
				}
				return &gateway.Submitter{Router: s.mta.Router, Local: s.mta.Local, Queue: s.mta.Queue, Me: s.Config().Me, Log: s.log.With("service", "sendmail"), Signer: signer}
			},
			MaxSize: func() int64 { return s.Config().SizeLimit },
			Log:     s.log.With("service", "sendmail"),
		}
		s.services = append(s.services, sub)
		s.serve("submit", sub, ln)
		if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o001 == 0 {
			s.log.Warn("the data directory is not searchable by other users, so their sendmail cannot reach the submission socket (chmod o+x)", "datadir", cfg.DataDir)
		}
	}
	if ctlErr != nil {
		s.log.Warn("no control socket: postern reputation needs the server stopped to read the embedded state store", "err", ctlErr)
	} else {
		s.serveControl(ctlLn)
	}
	if authdLn != nil {
		s.serveAuthdaemon(cfg, authdLn)
	}
	s.mta.Run()
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	if m := s.acme.Load(); m != nil {
		s.warnACMEUnreachable(cfg)
		m.Start()
	}
	return nil
}

// connLimits gives a mail access server its connection limits from the
// configuration in force, read at each connection and login, so that a
// reload applies to the next one.
func (s *Server) connLimits(of func(*policy.Config) policy.ConnLimits) func() netserve.Limits {
	return func() netserve.Limits {
		l := of(s.Config())
		return netserve.Limits{Total: l.MaxDaemons, PerIP: l.MaxPerIP, UserIP: l.MaxUserIP}
	}
}

func (s *Server) serve(name string, srv service, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !closedErr(err) {
			s.log.Error("listener stopped", "listener", name, "err", err)
		}
	}()
}

// closedErr reports whether a Serve error only says the server was shut down.
func closedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, imap.ErrServerClosed) ||
		errors.Is(err, pop3.ErrServerClosed) || errors.Is(err, managesieve.ErrServerClosed) || errors.Is(err, smtpd.ErrServerClosed) ||
		errors.Is(err, smap.ErrServerClosed) || errors.Is(err, authdaemon.ErrServerClosed)
}

func (s *Server) serveHTTP(ln net.Listener, name string) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// A web listener on port 80 proves the acmehosts names too.
	mux.HandleFunc("/.well-known/acme-challenge/", s.acmeHTTP)
	paths := "/metrics /healthz /.well-known/acme-challenge/"
	if name == policy.ListenWeb || name == policy.ListenWebs {
		// Not on a metrics listener, often open to a monitoring network.
		mux.Handle(admin.Prefix, s.adminHandler())
		paths += " " + admin.Prefix
		// Client autoconfiguration and MTA-STS: more specific than the
		// webmail's /mail/, so they win over it.
		for _, p := range autoconfig.Paths {
			mux.HandleFunc(p, s.serveAutoconfig)
		}
		paths += " /.well-known/autoconfig/ /autodiscover/ /.well-known/mta-sts.txt"
		if s.webmail != nil {
			mux.Handle(webmail.Prefix, s.webmail)
			mux.Handle("GET /{$}", http.RedirectHandler(webmail.Prefix, http.StatusFound))
			paths += " " + webmail.Prefix
		}
	}
	if s.Config().DebugPprof {
		// Opt-in only: profiles expose internals and cost CPU.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		paths += " /debug/pprof/"
	}
	s.serveHandler(name, ln, mux, paths)
}

// adminHandler is the web admin (web/admin), one for every web listener.
func (s *Server) adminHandler() http.Handler {
	s.adminOnce.Do(func() {
		cfg := s.Config()
		h, err := admin.New(admin.Options{
			ConfigDir: cfg.Dir,
			QueueDir:  filepath.Join(cfg.DataDir, "queue"),
			Guard:     s.auth.Guard(),
			Reload:    s.Reload,
			CheckConfig: func(dir string) error {
				c, err := policy.Load(dir)
				if err != nil {
					return err
				}
				return CheckConfig(c)
			},
			Listeners: s.listenerAddrs,
			Sessions:  s.sessionStore(),
			Who:       s.Who,
			Kick:      s.Kick,
			RejectLog: filepath.Join(cfg.DataDir, "state", "rejects.jsonl"),
			Version:   s.Version,
			Started:   s.startTime,
			Logger:    s.log.With("service", "webadmin"),
			Registry:  s.reg,
		})
		if err != nil {
			s.log.Error("web admin not served", "err", err)
			s.admin = http.NotFoundHandler()
			return
		}
		s.admin = h
	})
	return s.admin
}

// listenerAddrs names the bound listeners and their addresses.
func (s *Server) listenerAddrs() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for name, addrs := range s.bound {
		for _, a := range addrs {
			out[name] = append(out[name], a.String())
		}
	}
	return out
}

// serveHandler serves HTTP on ln until Shutdown.
func (s *Server) serveHandler(name string, ln net.Listener, h http.Handler, paths string) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.httpSrv = append(s.httpSrv, hs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "listener", name, "err", err)
		}
	}()
	s.log.Info("listening", "listener", name, "address", ln.Addr().String(), "paths", paths)
}

// Addrs returns the addresses bound for a listener name, in configuration
// order (useful when the configuration asks for port 0).
func (s *Server) Addrs(name string) []net.Addr { return s.bound[name] }

// ListenerNames returns the names of the bound listeners, sorted.
func (s *Server) ListenerNames() []string {
	var names []string
	for n := range s.bound {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Reload reads the configuration again. A bad configuration is refused with
// its errors and the running one stays. Listener changes need a restart;
// they are reported, not applied.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.Config()
	cfg, err := policy.Load(old.Dir)
	if err != nil {
		s.log.Error("reload refused; keeping the running configuration", "err", err)
		return err
	}
	if fmt.Sprint(cfg.Listeners) != fmt.Sprint(old.Listeners) || cfg.AuthdaemonSocket != old.AuthdaemonSocket {
		s.log.Warn("reload: listener changes take effect at the next restart")
	}
	if stale(cfg.UserdbSource, cfg.UserdbDB) {
		if err := userdb.Compile(cfg.UserdbSource, cfg.UserdbDB); err != nil {
			s.log.Error("reload refused: userdb", "err", err)
			return err
		}
	}
	specs, err := authconfig.Read(cfg.Dir)
	if err != nil {
		s.log.Error("reload refused; keeping the running configuration", "err", err)
		return err
	}
	// New authentication modules are opened first (nothing connects
	// yet), so that one that cannot be made refuses the whole reload.
	var mods []auth.Module
	closeNewAuth := func() {}
	authChanged := !authconfig.Equal(specs, s.authSpecs)
	if authChanged {
		if mods, closeNewAuth, err = authconfig.Open(specs, s.udb, s.log); err != nil {
			s.log.Error("reload refused; keeping the running configuration", "err", err)
			return err
		}
	}
	refuse := func(err error, closers ...func()) error {
		for _, c := range closers {
			c()
		}
		closeNewAuth()
		s.log.Error("reload refused; keeping the running configuration", "err", err)
		return err
	}
	sts, err := autoconfig.LoadPolicies(cfg)
	if err != nil {
		return refuse(fmt.Errorf("%s: %w", autoconfig.SettingMTASTS, err))
	}
	fl, err := buildFilters(cfg, s.store, s.mta.DMARCHooks(cfg), s.log, s.fResults, s.fLatency)
	if err != nil {
		return refuse(err)
	}
	var am *acme.Manager
	acmeChanged := !cfg.ACME.Same(old.ACME)
	if acmeChanged {
		if am, err = s.newACME(cfg.ACME); err != nil {
			return refuse(err, fl.Close)
		}
	}
	if err := s.mta.Reload(cfg); err != nil {
		return refuse(err, fl.Close)
	}
	if acmeChanged {
		s.swapACME(am, cfg)
	} else if cur := s.acme.Load(); cur != nil {
		cur.Retry() // hosts waiting after a failure are tried again now
	}
	if authChanged {
		s.auth.SetModules(mods...)
		s.closeAuth() // lookups under way finish first (database/sql)
		s.authSpecs, s.closeAuth = specs, closeNewAuth
		s.log.Info("authentication modules changed", "modules", len(mods))
	} else {
		// A reload is how an admin makes changes made in a database
		// count at once: the caches start empty.
		for _, m := range s.auth.Modules() {
			if c, ok := m.(*auth.Cache); ok {
				c.Flush()
			}
		}
	}
	// The old checks' kept connections (policy servers) are closed now;
	// sessions that began with them finish with them.
	s.filters.Swap(fl).Close()
	s.auth.Guard().SetConfig(guardConfig(cfg))
	for name, p := range s.proxies {
		protocol := proxy.IMAP
		if name == "pop3" {
			protocol = proxy.POP3
		}
		p.Update(proxy.FromPolicy(cfg, protocol, s.log.With("service", name)))
	}
	s.cfg.Store(cfg)
	s.setAutoconfig(cfg, sts)
	s.reloads.Inc()
	s.log.Info("configuration reloaded", "dir", cfg.Dir)
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// Shutdown stops accepting, lets sessions finish or tells them 421/BYE, and
// waits for every goroutine the server started.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, srv := range s.services {
		wg.Add(1)
		go func(srv service) {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(srv)
	}
	for _, hs := range s.httpSrv {
		hs.Shutdown(ctx)
	}
	if m := s.acme.Load(); m != nil {
		m.Close()
	}
	wg.Wait()
	s.purger.Close()
	s.closeListeners()
	s.wg.Wait()
	s.closeResources()
	return errors.Join(errs...)
}

// guardConfig is the failed-login guard of the "authlimit" setting; its
// exempt lines replace the default exemption of loopback (a webmail or
// proxy on this host).
func guardConfig(cfg *policy.Config) auth.GuardConfig {
	g := auth.DefaultGuardConfig()
	g.Failures, g.Window, g.Block = cfg.AuthFailures, cfg.AuthWindow, cfg.AuthBlock
	if cfg.AuthExemptSet {
		g.Exempt = cfg.AuthExempt
	}
	return g
}
