package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"time"

	"postern/auth"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dmarc/report"
	"postern/filters/state"
	"postern/gateway"
	"postern/gateway/callout"
	"postern/gateway/delivery"
	"postern/gateway/outbound"
	"postern/gateway/outbound/mtasts"
	"postern/gateway/outbound/tlsrpt"
	"postern/gateway/queue"
	"postern/mailbox/deliver"
	"postern/mailbox/maildir"
	"postern/policy"
	"postern/policy/access"
	"postern/policy/aliases"
)

// MTA is the mail-transfer part of a Postern process: recipient routing
// (domains, aliases, accounts), local delivery, the queue and outbound
// delivery, and the smtpaccess rules. The SMTP listeners and sendmail
// both hand messages to it.
type MTA struct {
	Router *gateway.Router
	Local  *gateway.LocalDelivery
	Queue  *queue.Queue
	// Filters gives the gateway's checks now (the server's, reloaded with
	// it); the delivery agent's forwards are ARC-sealed with them. Nil
	// outside the server: no sealing.
	Filters func() *gateway.Filters

	log     *slog.Logger
	journal *maildir.Journal
	aliases *aliases.DB
	access  atomic.Pointer[access.Rules]
	remote  atomic.Pointer[outbound.Client]
	callout *callout.Cache   // relayverify's answers
	tlsrpt  *tlsrpt.Recorder // TLS reporting's counts; nil outside the server
	dmarcrp *report.Store    // DMARC aggregate reporting's rows; nil outside the server
	// dmarcruf sends DMARC failure reports; nil outside the server.
	dmarcruf *report.FailureSender
	cfg      func() *policy.Config
	cancel   context.CancelFunc
	done     chan struct{}
}

// OpenTLSReports keeps the counts of SMTP TLS Reporting (RFC 8460) in
// DATADIR/state/tlsrpt; outbound delivery counts its sessions there while
// the "tlsrpt" setting is on, and Run sends the reports. Server only.
func (m *MTA) OpenTLSReports(cfg *policy.Config) error {
	rec, err := tlsrpt.NewRecorder(filepath.Join(cfg.DataDir, "state", "tlsrpt"), nil)
	if err != nil {
		return err
	}
	m.tlsrpt = rec
	if !cfg.TLSRPT {
		return nil // the outbound client OpenMTA built counts nothing, as it should
	}
	return m.Reload(cfg) // a client that counts, from now on
}

// tlsReports saves the counts every few minutes and, once a day is over,
// sends its reports (RFC 8460 section 5), until ctx ends.
func (m *MTA) tlsReports(ctx context.Context) {
	save := time.NewTicker(5 * time.Minute)
	defer save.Stop()
	send := time.NewTimer(10 * time.Minute) // not in the start-up rush
	defer send.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.tlsrpt.Save(); err != nil {
				m.log.Warn("tlsrpt: counts not saved", "err", err)
			}
			return
		case <-save.C:
			if err := m.tlsrpt.Save(); err != nil {
				m.log.Warn("tlsrpt: counts not saved", "err", err)
			}
		case <-send.C:
			m.sendTLSReports(ctx)
			send.Reset(time.Hour)
		}
	}
}

func (m *MTA) sendTLSReports(ctx context.Context) {
	cfg := m.cfg()
	if !cfg.TLSRPT {
		return // the days counted while it was on wait until it is on again
	}
	domain := gateway.PostmasterDomain(cfg)
	from := cfg.TLSRPTFrom
	if from == "" {
		from = "postmaster@" + domain
	}
	resolver := outbound.NewDNSResolver(cfg.Resolvers, 10*time.Second)
	s := &tlsrpt.Sender{
		Recorder:  m.tlsrpt,
		Reporter:  tlsrpt.Reporter{Organization: domain, Contact: from, Submitter: domain},
		From:      from,
		LookupTXT: resolver.LookupTXT,
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			// Routed as a local submission: a rua address of ours is
			// delivered here, the others go through the queue.
			// Signed with the domain's DKIM key, as RFC 8460 section 3
			// asks of reports sent by mail.
			signer, err := dkim.LoadSigner(cfg.Dir)
			if err != nil {
				m.log.Warn("tlsrpt: report not DKIM-signed", "err", err)
			}
			sub := &gateway.Submitter{Router: m.Router, Local: m.Local, Queue: m.Queue, Me: cfg.Me, Log: m.log.With("service", "tlsrpt"), Signer: signer}
			_, ref, err := sub.Submit(ctx, gateway.Submission{Login: "tlsrpt", UID: -1, From: from, Rcpts: []string{to}, Notify: "NEVER", Msg: msg, Via: "tlsrpt"})
			if ref != nil {
				return fmt.Errorf("%d %s %s", ref.Code, ref.Enhanced, ref.Text)
			}
			return err
		},
		Logger: m.log.With("service", "tlsrpt"),
	}
	s.SendFinished(ctx)
}

// OpenDMARCReports keeps the rows of DMARC aggregate reporting (RFC 7489
// section 7.2) in DATADIR/state/dmarc; the dmarc check writes there while
// the "dmarcreports" setting is on, and Run sends the reports. Server only.
func (m *MTA) OpenDMARCReports(cfg *policy.Config) error {
	st, err := report.OpenStore(filepath.Join(cfg.DataDir, "state", "dmarc"), m.log.With("service", "dmarcreport"))
	if err != nil {
		return err
	}
	m.dmarcrp = st
	return nil
}

// dmarcHooks are where the dmarc check hands what reports need.
type dmarcHooks struct {
	Reports  dmarc.Recorder        // aggregate reports' rows
	Failures dmarc.FailureRecorder // failure reports
}

// DMARCHooks are the dmarc check's report hooks for cfg: each nil unless
// the server keeps reports and its setting ("dmarcreports",
// "dmarcfailurereports") is on.
func (m *MTA) DMARCHooks(cfg *policy.Config) dmarcHooks {
	var h dmarcHooks
	if m == nil {
		return h
	}
	if m.dmarcrp != nil && cfg.DMARCReports {
		h.Reports = m.dmarcrp
	}
	if m.dmarcruf != nil && cfg.DMARCFailureReports {
		h.Failures = m.dmarcruf
	}
	return h
}

// dmarcReports sends the reports of each finished period, looking every
// few minutes, until ctx ends.
func (m *MTA) dmarcReports(ctx context.Context) {
	t := time.NewTimer(time.Minute) // not in the start-up rush
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if cfg := m.cfg(); cfg.DMARCReports {
				if _, err := m.DMARCSender(cfg).SendDue(ctx); err != nil && ctx.Err() == nil {
					m.log.Warn("dmarc report: reports not sent", "err", err)
				}
			}
			t.Reset(10 * time.Minute)
		}
	}
}

// DMARCSender is the report sender for cfg: reports are signed with our
// domain's DKIM key and submitted as local mail, so that a rua address of
// ours is delivered here and the others go through the queue.
func (m *MTA) DMARCSender(cfg *policy.Config) *report.Sender {
	log := m.log.With("service", "dmarcreport")
	resolver := outbound.NewDNSResolver(cfg.Resolvers, 10*time.Second)
	dir := ""
	if m.dmarcrp != nil {
		dir = m.dmarcrp.Dir()
	}
	return &report.Sender{
		Dir:        dir,
		Reporter:   dmarcReporter(cfg),
		Interval:   cfg.DMARCReportInterval,
		LookupTXT:  resolver.LookupTXT,
		IsNotFound: outbound.IsNoSuchDomain,
		Mail:       m.dmarcMail(cfg, "FAILURE", log),
		Logger:     log,
	}
}

// dmarcReporter is who DMARC reports say they are from: dmarcreportfrom
// (postmaster of our domain by default) and dmarcreportorg.
func dmarcReporter(cfg *policy.Config) report.Reporter {
	domain := gateway.PostmasterDomain(cfg)
	from := cfg.DMARCReportFrom
	if from == "" {
		from = "postmaster@" + domain
	}
	org := cfg.DMARCReportOrg
	if org == "" {
		org = domain
	}
	return report.Reporter{OrgName: org, Email: from, Domain: domain}
}

// dmarcMail submits a DMARC report as local mail, DKIM-signed with our
// domain's key, with the DSN NOTIFY list notify.
func (m *MTA) dmarcMail(cfg *policy.Config, notify string, log *slog.Logger) func(ctx context.Context, from, to string, msg []byte) error {
	return func(ctx context.Context, from, to string, msg []byte) error {
		signer, err := dkim.LoadSigner(cfg.Dir)
		if err != nil {
			log.Warn("dmarc report: not DKIM-signed", "err", err)
		}
		sub := &gateway.Submitter{Router: m.Router, Local: m.Local, Queue: m.Queue, Me: cfg.Me, Log: log, Signer: signer}
		_, ref, err := sub.Submit(ctx, gateway.Submission{Login: "dmarcreport", UID: -1, From: from, Rcpts: []string{to}, Notify: notify, Msg: msg, Via: "dmarcreport"})
		if ref != nil {
			return fmt.Errorf("%d %s %s", ref.Code, ref.Enhanced, ref.Text)
		}
		return err
	}
}

// OpenDMARCFailureReports starts the sender of DMARC failure reports
// (RFC 7489 section 7.3), which counts its hourly caps in store and its
// drops in dropped; the dmarc check hands it failures while the
// "dmarcfailurereports" setting is on. Server only.
func (m *MTA) OpenDMARCFailureReports(store state.Store, dropped *prometheus.CounterVec) {
	log := m.log.With("service", "dmarcfailurereport")
	m.dmarcruf = report.StartFailureSender(&report.FailureSender{
		Config: func() report.FailureConfig {
			cfg := m.cfg()
			return report.FailureConfig{Reporter: dmarcReporter(cfg), PerDomain: cfg.DMARCFailurePerDomain, Global: cfg.DMARCFailureGlobal}
		},
		Store: store,
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			return outbound.NewDNSResolver(m.cfg().Resolvers, 10*time.Second).LookupTXT(ctx, name)
		},
		IsNotFound: outbound.IsNoSuchDomain,
		// NOTIFY=NEVER with the null reverse path: a report that cannot
		// be delivered is dropped, never bounced.
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			return m.dmarcMail(m.cfg(), "NEVER", log)(ctx, from, to, msg)
		},
		Dropped: dropped,
		Logger:  log,
	})
}

// OpenJournal opens the delivery journal (DATADIR/state/delivery.journal,
// see maildir.Journal) and has local deliveries use it: one log write per
// message before the 250 instead of two file-system flushes. It restores
// the messages a crash left unwritten before it returns. Only the server
// calls it: the journal belongs to one process.
func (m *MTA) OpenJournal(cfg *policy.Config) error {
	if cfg.DeliveryJournal <= 0 {
		return nil
	}
	dir := filepath.Join(cfg.DataDir, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("delivery journal: %w", err)
	}
	j, err := maildir.OpenJournal(filepath.Join(dir, "delivery.journal"), maildir.JournalOptions{Size: cfg.DeliveryJournal, Interval: cfg.JournalCheckpoint, Logger: m.log.With("module", "journal")})
	if err != nil {
		return err
	}
	m.journal = j
	m.Local.Journal = j
	if m.Local.Agent != nil {
		m.Local.Agent.SetJournal(j)
	}
	return nil
}

// OpenMTA builds the MTA for cfg. The queue is open for Enqueue; Run
// starts delivering.
func OpenMTA(cfg *policy.Config, cfgFn func() *policy.Config, authSvc *auth.Service, log *slog.Logger) (*MTA, error) {
	m := &MTA{log: log, cfg: cfgFn}
	dbPath := filepath.Join(cfg.Dir, aliases.DefaultDBName)
	if stale(filepath.Join(cfg.Dir, "aliases"), dbPath) || staleDir(filepath.Join(cfg.Dir, "aliases.d"), dbPath) {
		if err := aliases.Compile(cfg.Dir, dbPath); err != nil {
			return nil, fmt.Errorf("aliases: %w", err)
		}
	}
	if _, err := os.Stat(dbPath); err == nil {
		db, err := aliases.OpenDB(dbPath, aliases.WithLocalDomains(func(d string) bool { return cfgFn().HasDomain(d) }), aliases.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("aliases: %w", err)
		}
		m.aliases = db
	}
	m.Router = &gateway.Router{Config: cfgFn, Auth: authSvc, Aliases: m.aliases, VerifyRelay: m.verifyRelay}
	m.callout = callout.New(func(ctx context.Context, addr string) callout.Result {
		r := m.remote.Load().Verify(ctx, addr)
		return callout.Result{Verdict: map[outbound.Verdict]callout.Verdict{
			outbound.VerifyDeliverable: callout.Deliverable, outbound.VerifyUndeliverable: callout.Undeliverable,
		}[r.Verdict], Text: r.Text}
	}, callout.Options{})
	agent, err := deliver.New(deliver.Options{Config: cfg, Auth: authSvc, Logger: log.With("service", "deliver"),
		ForwardSender: func(from string) string { return cfgFn().ForwardSender(from) },
		SealForward: func(ctx context.Context, msg []byte, forwarder string) ([]byte, string) {
			if m.Filters == nil {
				return msg, "no gateway"
			}
			return m.Filters().SealForward(ctx, msg, forwarder)
		}})
	if err != nil {
		return nil, fmt.Errorf("delivery agent: %w", err)
	}
	m.Local = &gateway.LocalDelivery{Router: m.Router, Agent: agent}
	if err := m.Reload(cfg); err != nil {
		m.Close()
		return nil, err
	}
	q, err := queue.Open(queue.Options{
		Dir:         filepath.Join(cfg.DataDir, "queue"),
		Hostname:    cfg.Me,
		Local:       m.Local,
		Remote:      delivery.DelivererFunc(m.deliverRemote),
		Schedule:    cfg.RetrySchedule(),
		Lifetime:    cfg.QueueTime,
		DelayNotice: cfg.WarnTime,
		Concurrency: cfg.MaxDels,
		PerDomain:   cfg.MaxHost,
		Logger:      log.With("service", "queue"),
		SoftBounce:  func() bool { return cfgFn().SoftBounce },
		IsLocal: func(addr string) bool {
			_, d, ok := strings.Cut(addr, "@")
			return ok && cfgFn().HasDomain(d)
		},
		// A DSN to one of our addresses follows its aliases (a list
		// owner's address), as any mail to it would.
		Expand: func(ctx context.Context, addr string) ([]delivery.Recipient, error) {
			targets, ref := m.Router.Resolve(ctx, addr, true)
			if ref != nil {
				return nil, ref
			}
			out := make([]delivery.Recipient, len(targets))
			for i, t := range targets {
				out[i] = t.Recipient
			}
			return out, nil
		},
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	m.Queue = q
	return m, nil
}

// staleDir is stale for a directory source (aliases.d).
func staleDir(dir, db string) bool {
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	return stale(dir, db)
}

// Reload re-reads the settings the MTA keeps beside policy.Config:
// smtpaccess, routes, senderroutes and smarthost credentials. On error nothing changes.
func (m *MTA) Reload(cfg *policy.Config) error {
	rules, err := access.Load(cfg.Dir)
	if err != nil {
		return fmt.Errorf("smtpaccess: %w", err)
	}
	routes, err := outbound.LoadRoutes(cfg.Dir)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	senderRoutes, err := outbound.LoadSenderRoutes(cfg.Dir)
	if err != nil {
		return fmt.Errorf("senderroutes: %w", err)
	}
	creds, err := outbound.LoadAuth(cfg.Dir, m.log)
	if err != nil {
		return fmt.Errorf("smarthostauth: %w", err)
	}
	resolver := outbound.NewDNSResolver(cfg.Resolvers, 10*time.Second)
	var tlsReport *tlsrpt.Recorder
	if cfg.TLSRPT {
		tlsReport = m.tlsrpt
	}
	var sts *mtasts.Client
	if cfg.MTASTS {
		sts, err = mtasts.New(mtasts.Options{
			LookupTXT:    resolver.LookupTXT,
			IsNotFound:   outbound.IsNoSuchDomain,
			LookupIPAddr: resolver.LookupIPAddr,
			Dir:          filepath.Join(cfg.DataDir, "state", "mta-sts"),
			Logger:       m.log.With("service", "mta-sts"),
		})
		if err != nil {
			return fmt.Errorf("mta-sts: %w", err)
		}
	}
	client, err := outbound.New(outbound.Options{
		Hostname:     cfg.Me,
		HELOName:     cfg.HELOName,
		Routes:       routes,
		SenderRoutes: senderRoutes,
		Auth:         creds,
		Resolver:     resolver,
		Port:         cfg.RemotePort,
		DANE:         cfg.DANE,
		LocalAddrs:   cfg.SourceAddrs,
		Self:         selfAddrs(cfg),
		MTASTS:       sts,
		TLSReport:    tlsReport,
		Logger:       m.log.With("service", "outbound"),
	})
	if err != nil {
		return fmt.Errorf("outbound: %w", err)
	}
	m.access.Store(rules)
	if old := m.remote.Swap(client); old != nil {
		// Deliveries in flight finish on the old client; its cached
		// sessions are ended now instead of lingering until idle.
		old.Close()
	}
	return nil
}

// verifyRelay answers RCPT for an address of a relay domain from what its
// next hop says (relayverify): refused for good when it refuses the
// address, deferred when it could not be asked.
func (m *MTA) verifyRelay(ctx context.Context, addr string) *gateway.Refusal {
	res := m.callout.Check(ctx, addr)
	switch res.Verdict {
	case callout.Deliverable:
		return nil
	case callout.Undeliverable:
		return &gateway.Refusal{Code: 550, Enhanced: "5.1.1", Text: "Recipient address rejected: undeliverable address: " + res.Text, Reason: "unverified_recipient"}
	}
	return &gateway.Refusal{Code: 450, Enhanced: "4.1.1", Text: "Recipient address rejected: unverified address: " + res.Text, Reason: "unverified_recipient"}
}

// Access returns the smtpaccess rules in force.
func (m *MTA) Access() *access.Rules { return m.access.Load() }

func (m *MTA) deliverRemote(ctx context.Context, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) []delivery.Result {
	return m.remote.Load().Deliver(ctx, env, rcpts, msg)
}

// Run starts delivering queued mail in the background.
func (m *MTA) Run() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done = make(chan struct{})
	var wg sync.WaitGroup
	if m.tlsrpt != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.tlsReports(ctx)
		}()
	}
	if m.dmarcrp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.dmarcReports(ctx)
		}()
	}
	go func() {
		defer close(m.done)
		defer wg.Wait()
		if err := m.Queue.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("queue stopped", "err", err)
		}
	}()
}

// Close stops the queue runner (in-flight deliveries get its drain time)
// and releases the files.
func (m *MTA) Close() error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	var errs []error
	if m.dmarcruf != nil {
		m.dmarcruf.Close() // before the queue it submits to closes
	}
	if m.callout != nil {
		m.callout.Close() // probes in flight end
	}
	if m.Queue != nil {
		errs = append(errs, m.Queue.Close())
	}
	if m.journal != nil {
		errs = append(errs, m.journal.Close()) // after the queue's last local delivery
	}
	if m.aliases != nil {
		errs = append(errs, m.aliases.Close())
	}
	if m.dmarcrp != nil {
		errs = append(errs, m.dmarcrp.Close())
	}
	if c := m.remote.Load(); c != nil {
		errs = append(errs, c.Close()) // QUIT cached outbound connections
	}
	return errors.Join(errs...)
}

// selfAddrs are the addresses and ports the smtp listeners receive mail on,
// a wildcard listener standing for every address of this host, so that
// outbound delivery knows an MX that resolves to this server.
func selfAddrs(cfg *policy.Config) []netip.AddrPort {
	var out []netip.AddrPort
	var local []netip.Addr
	for _, l := range cfg.ListenersNamed(policy.ListenSMTP) {
		ap, err := netip.ParseAddrPort(l.Address)
		if err != nil {
			continue // a host name: not compared
		}
		if !ap.Addr().IsUnspecified() {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			continue
		}
		if local == nil {
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					local = append(local, p.Addr().Unmap())
				}
			}
		}
		for _, a := range local {
			out = append(out, netip.AddrPortFrom(a, ap.Port()))
		}
	}
	return out
}

// Plan is how mail for domain would leave now (postern check route).
func (m *MTA) Plan(ctx context.Context, domain string) outbound.Plan {
	return m.remote.Load().Plan(ctx, domain)
}

// PlanFrom is Plan for mail from the envelope sender ("" the null
// sender), senderroutes included (postern check route --sender).
func (m *MTA) PlanFrom(ctx context.Context, sender, domain string) outbound.Plan {
	return m.remote.Load().PlanFrom(ctx, sender, domain)
}
