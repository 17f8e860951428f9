package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/filters"
	"postern/filters/arc"
	"postern/filters/bayes"
	"postern/filters/behaviour"
	"postern/filters/bofh"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dns"
	"postern/filters/dnsbl"
	"postern/filters/greylist"
	"postern/filters/milter"
	"postern/filters/policyd"
	"postern/filters/ratelimit"
	"postern/filters/reputation"
	"postern/filters/smtprules"
	"postern/filters/spf"
	"postern/filters/state"
	"postern/gateway"
	"postern/policy"
)

// filterNames are the checks the "filters" setting may name, in the order
// the default setup runs them.
var filterNames = []string{"behaviour", "ratelimit", "dnsbl", "bofh", "greylist", "spf", "dkim", "arc", "dmarc", "reputation", "bayes", "rules"}

// openStore opens the shared state named by the "statestore" setting:
// "embedded" (default, DATADIR/state/state.db) or
// "redis HOST:PORT [db=N] [prefix=P] [password=PW]".
func openStore(cfg *policy.Config, log *slog.Logger) (state.Store, error) {
	lines, err := policy.ReadSetting(cfg.Dir, "statestore")
	if err != nil && !errors.Is(err, policy.ErrNotSet) {
		return nil, err
	}
	if len(lines) == 0 || strings.Fields(lines[0].Text)[0] == "embedded" {
		// Filter state is not mail: a crash may lose the last seconds of
		// counters and triplets, which costs a re-greylisting at worst, so
		// commits are not fsync'd and not delayed for batching (both would
		// put disk latency into every SMTP command).
		return state.OpenEmbedded(filepath.Join(cfg.DataDir, "state", "state.db"), state.WithLogger(log),
			state.WithNoSync(true), state.WithBatchDelay(0))
	}
	f := strings.Fields(lines[0].Text)
	if f[0] != "redis" || len(f) < 2 {
		return nil, lines[0].Errorf("statestore: want \"embedded\" or \"redis HOST:PORT [db=N] [prefix=P] [password=PW]\"")
	}
	opt := state.RedisOptions{Addr: f[1], Prefix: "postern:", Logger: log}
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "db":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, lines[0].Errorf("statestore: bad db %q", v)
			}
			opt.DB = n
		case "prefix":
			opt.Prefix = v
		case "password":
			opt.Password = v
		default:
			return nil, lines[0].Errorf("statestore: unknown option %q", k)
		}
	}
	return state.OpenRedis(opt)
}

// filterEntry is one line of the "filters" setting.
type filterEntry struct {
	name   string
	mode   filters.Mode
	weight float64
	line   policy.Line
}

// parseFilterList reads "NAME [MODE] [weight=N]" lines.
func parseFilterList(lines []policy.Line) ([]filterEntry, error) {
	var out []filterEntry
	var errs []error
	seen := map[string]bool{}
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		e := filterEntry{name: strings.ToLower(f[0]), line: ln}
		// milter:NAME and policy:NAME are defined in "milters" and
		// "policyservices".
		known := strings.HasPrefix(e.name, "milter:") && len(e.name) > len("milter:") ||
			strings.HasPrefix(e.name, "policy:") && len(e.name) > len("policy:")
		for _, n := range filterNames {
			known = known || n == e.name
		}
		if !known {
			errs = append(errs, ln.Errorf("unknown check %q (known: %s)", f[0], strings.Join(filterNames, " ")))
			continue
		}
		if seen[e.name] {
			errs = append(errs, ln.Errorf("check %q listed twice", e.name))
			continue
		}
		seen[e.name] = true
		for _, word := range f[1:] {
			if w, ok := strings.CutPrefix(word, "weight="); ok {
				v, err := strconv.ParseFloat(w, 64)
				if err != nil || v < 0 {
					errs = append(errs, ln.Errorf("bad weight %q", w))
				}
				e.weight = v
				continue
			}
			m, err := filters.ParseMode(word)
			if err != nil {
				errs = append(errs, ln.Errorf("%v", err))
			}
			e.mode = m
		}
		out = append(out, e)
	}
	// DMARC reads the ARC result to override a policy for mail a trusted
	// forwarder sealed; it must be there when DMARC runs.
	if ia, id := slices.IndexFunc(out, func(e filterEntry) bool { return e.name == "arc" }),
		slices.IndexFunc(out, func(e filterEntry) bool { return e.name == "dmarc" }); ia > id && id >= 0 {
		errs = append(errs, out[ia].line.Errorf("arc must be listed before dmarc, which uses its result"))
	}
	return out, errors.Join(errs...)
}

// serviceLine is one line of "milters" or "policyservices": NAME ADDRESS
// [OPTION=VALUE...].
type serviceLine struct {
	name, network, address string
	opts                   [][2]string
	line                   policy.Line
}

// readServices reads setting's lines, each address parsed by parseAddr;
// usage is the line's form, for the error on a short line.
func readServices(dir, setting, usage string, parseAddr func(string) (string, string, error)) ([]serviceLine, []error) {
	lines, err := policy.ReadSetting(dir, setting)
	if errors.Is(err, policy.ErrNotSet) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{err}
	}
	var out []serviceLine
	var errs []error
	seen := map[string]bool{}
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		if len(f) < 2 {
			errs = append(errs, ln.Errorf("want %s", usage))
			continue
		}
		sl := serviceLine{name: strings.ToLower(f[0]), line: ln}
		if seen[sl.name] {
			errs = append(errs, ln.Errorf("%q defined twice", sl.name))
			continue
		}
		seen[sl.name] = true
		if sl.network, sl.address, err = parseAddr(f[1]); err != nil {
			errs = append(errs, ln.Errorf("%v", err))
			continue
		}
		for _, opt := range f[2:] {
			k, v, _ := strings.Cut(opt, "=")
			sl.opts = append(sl.opts, [2]string{k, v})
		}
		out = append(out, sl)
	}
	return out, errs
}

// serviceOptions holds the options milters and policy services share.
type serviceOptions struct {
	onError       int // 0 tempfail, 1 accept, 2 reject
	timeout       time.Duration
	authenticated bool
}

// common reads a shared option; false when k is not one.
func (o *serviceOptions) common(k, v string) (bool, error) {
	switch k {
	case "onerror":
		n := slices.Index([]string{"tempfail", "accept", "reject"}, v)
		if n < 0 {
			return true, fmt.Errorf("onerror=%s: want tempfail, accept or reject", v)
		}
		o.onError = n
	case "timeout":
		d, err := policy.ParseDuration(v)
		if err != nil || d <= 0 {
			return true, fmt.Errorf("timeout=%s: want a duration such as 30s", v)
		}
		o.timeout = d
	case "authenticated":
		if v != "yes" && v != "no" {
			return true, fmt.Errorf("authenticated=%s: want yes or no", v)
		}
		o.authenticated = v == "yes"
	default:
		return false, nil
	}
	return true, nil
}

// loadMilters reads the "milters" setting: NAME ADDRESS [onerror=tempfail|
// accept|reject] [timeout=DURATION] [authenticated=yes|no], ADDRESS as
// Postfix writes it (unix:/path, inet:host:port).
func loadMilters(dir string) (map[string]milter.Config, error) {
	lines, errs := readServices(dir, "milters", "NAME ADDRESS [onerror=tempfail|accept|reject] [timeout=DURATION] [authenticated=yes|no]", milter.ParseAddress)
	out := map[string]milter.Config{}
	for _, sl := range lines {
		o := serviceOptions{authenticated: true}
		for _, kv := range sl.opts {
			if known, err := o.common(kv[0], kv[1]); err != nil || !known {
				if err == nil {
					err = fmt.Errorf("unknown option %q (onerror=, timeout=, authenticated=)", kv[0]+"="+kv[1])
				}
				errs = append(errs, sl.line.Errorf("%v", err))
			}
		}
		out[sl.name] = milter.Config{Name: sl.name, Network: sl.network, Address: sl.address,
			OnError: filters.OnError(o.onError), Timeout: o.timeout, Authenticated: o.authenticated}
	}
	return out, errors.Join(errs...)
}

// loadPolicyServices reads the "policyservices" setting: NAME ADDRESS
// [stage=mail|rcpt|data] [onerror=tempfail|accept|reject]
// [timeout=DURATION] [authenticated=yes|no]: Postfix policy servers
// (docs/filters.md).
func loadPolicyServices(dir string) (map[string]policyd.Config, error) {
	lines, errs := readServices(dir, "policyservices", "NAME ADDRESS [stage=mail|rcpt|data] [onerror=tempfail|accept|reject] [timeout=DURATION] [authenticated=yes|no]", policyd.ParseAddress)
	out := map[string]policyd.Config{}
	for _, sl := range lines {
		var o serviceOptions
		stage := filters.StageRcpt
		for _, kv := range sl.opts {
			known, err := o.common(kv[0], kv[1])
			if !known && kv[0] == "stage" {
				known = true
				switch kv[1] {
				case "mail":
					stage = filters.StageMail
				case "rcpt":
					stage = filters.StageRcpt
				case "data":
					stage = filters.StageData
				default:
					err = fmt.Errorf("stage=%s: want mail, rcpt or data", kv[1])
				}
			}
			if err == nil && !known {
				err = fmt.Errorf("unknown option %q (stage=, onerror=, timeout=, authenticated=)", kv[0]+"="+kv[1])
			}
			if err != nil {
				errs = append(errs, sl.line.Errorf("%v", err))
			}
		}
		out[sl.name] = policyd.Config{Name: sl.name, Network: sl.network, Address: sl.address, Stage: stage,
			OnError: filters.OnError(o.onError), Timeout: o.timeout, Authenticated: o.authenticated}
	}
	return out, errors.Join(errs...)
}

// parseThresholds reads the "spamscore" setting: "reject N", "quarantine N".
func parseThresholds(dir string) (filters.Thresholds, error) {
	var t filters.Thresholds
	lines, err := policy.ReadSetting(dir, "spamscore")
	if errors.Is(err, policy.ErrNotSet) {
		return filters.Thresholds{Reject: 10, Quarantine: 5}, nil
	}
	if err != nil {
		return t, err
	}
	for _, ln := range lines {
		f := strings.Fields(ln.Text)
		if len(f) != 2 {
			return t, ln.Errorf("want \"reject N\" or \"quarantine N\"")
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return t, ln.Errorf("bad score %q", f[1])
		}
		switch f[0] {
		case "reject":
			t.Reject = v
		case "quarantine":
			t.Quarantine = v
		default:
			return t, ln.Errorf("want \"reject N\" or \"quarantine N\"")
		}
	}
	return t, nil
}

// loadReputation reads the reputation setting over defaults that follow
// spamscore: a message is a bad outcome from the quarantine threshold on
// (or the reject one, without quarantine).
func loadReputation(dir string, th filters.Thresholds) (reputation.Config, error) {
	base := reputation.DefaultConfig()
	switch {
	case th.Quarantine > 0:
		base.BadFrom = th.Quarantine
	case th.Reject > 0:
		base.BadFrom = th.Reject
	}
	base.GoodBelow = min(base.GoodBelow, base.BadFrom)
	rc, _, err := reputation.LoadConfig(dir, base)
	return rc, err
}

// OpenReputation opens the state store and the reputation check as the
// server would, for postern reputation; the caller closes the store.
func OpenReputation(cfg *policy.Config, log *slog.Logger) (*reputation.Reputation, state.Store, error) {
	th, err := parseThresholds(cfg.Dir)
	if err != nil {
		return nil, nil, err
	}
	rc, err := loadReputation(cfg.Dir, th)
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(cfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("state store: %w", err)
	}
	r, err := reputation.New(reputation.Options{Config: rc, Store: store, Logger: log})
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return r, store, nil
}

// buildFilters makes the pipeline described by the configuration. It also
// returns the rate limiter (the gateway tells it about unknown recipients)
// and the DKIM signer (nil without keys).
func buildFilters(cfg *policy.Config, store state.Store, dmarcHooks dmarcHooks, log *slog.Logger, results *prometheus.CounterVec, latency *prometheus.HistogramVec) (*gateway.Filters, error) {
	lines, err := policy.ReadSetting(cfg.Dir, "filters")
	if err != nil && !errors.Is(err, policy.ErrNotSet) {
		return nil, err
	}
	list, err := parseFilterList(lines)
	if err != nil {
		return nil, err
	}
	th, err := parseThresholds(cfg.Dir)
	if err != nil {
		return nil, err
	}
	res, err := dns.New(dns.Options{Servers: cfg.Resolvers, Logger: log.With("module", "dns")})
	if err != nil {
		return nil, fmt.Errorf("resolvers: %w", err)
	}
	out := &gateway.Filters{AuthservID: cfg.Me}
	// The admin's rules see every other check's results, so they run last;
	// a smtprules file is used even when "filters" does not name it.
	listed := false
	for _, e := range list {
		listed = listed || e.name == "rules"
	}
	if !listed && policy.SettingExists(cfg.Dir, smtprules.SettingName) {
		list = append(list, filterEntry{name: "rules", line: policy.Line{File: filepath.Join(cfg.Dir, smtprules.SettingName)}})
	}
	milters, err := loadMilters(cfg.Dir)
	if err != nil {
		return nil, err
	}
	services, err := loadPolicyServices(cfg.Dir)
	if err != nil {
		return nil, err
	}
	var entries, trusted []filters.Entry
	for _, e := range list {
		var f filters.Filter
		var err error
		if name, ok := strings.CutPrefix(e.name, "milter:"); ok {
			mc, defined := milters[name]
			if !defined {
				return nil, e.line.Errorf("milter %q is not defined in the milters setting", name)
			}
			f, err = milter.New(milter.Options{Config: mc, Hostname: cfg.Me})
			if err != nil {
				return nil, e.line.Errorf("%v", err)
			}
			entries = append(entries, filters.Entry{Filter: f, Mode: e.mode, Weight: e.weight})
			if mc.Authenticated {
				trusted = append(trusted, filters.Entry{Filter: f, Mode: e.mode, Weight: e.weight})
			}
			continue
		}
		if name, ok := strings.CutPrefix(e.name, "policy:"); ok {
			pc, defined := services[name]
			if !defined {
				return nil, e.line.Errorf("policy service %q is not defined in the policyservices setting", name)
			}
			f, err = policyd.New(policyd.Options{Config: pc, Logger: log.With("module", "policyd")})
			if err != nil {
				return nil, e.line.Errorf("%v", err)
			}
			entries = append(entries, filters.Entry{Filter: f, Mode: e.mode, Weight: e.weight})
			if pc.Authenticated {
				trusted = append(trusted, filters.Entry{Filter: f, Mode: e.mode, Weight: e.weight})
			}
			continue
		}
		switch e.name {
		case "behaviour":
			opt, lerr := behaviour.LoadOptions(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			opt.Resolver = res
			opt.OwnNames = append(opt.OwnNames, cfg.Me)
			for _, l := range cfg.Listeners {
				if ap, perr := netip.ParseAddrPort(l.Address); perr == nil && !ap.Addr().IsUnspecified() {
					opt.OwnIPs = append(opt.OwnIPs, ap.Addr())
				}
			}
			f = behaviour.New(opt)
		case "ratelimit":
			rc, _, lerr := ratelimit.LoadConfig(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			var lim *ratelimit.Limiter
			lim, err = ratelimit.New(ratelimit.Options{Config: rc, Store: store, Logger: log})
			out.Limiter, f = lim, lim
		case "dnsbl":
			dc, lerr := dnsbl.Load(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			// Links to our own domains are never asked of URI lists.
			own := []string{cfg.Me, cfg.DefaultDomain}
			for d := range cfg.AcceptMailFor {
				own = append(own, d)
			}
			for d := range cfg.DomainAliases {
				own = append(own, d)
			}
			f, err = dnsbl.New(dnsbl.Options{Config: dc, Resolver: res, Logger: log, OwnDomains: own})
		case "bofh":
			bc, lerr := bofh.Load(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			for _, n := range bc.Notices {
				log.Warn("bofh: option accepted but not acted on", "notice", n)
			}
			f, err = bofh.New(bofh.Options{Config: bc, Resolver: res, Store: store, Logger: log})
		case "greylist":
			gc, _, lerr := greylist.LoadConfig(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			f, err = greylist.New(greylist.Options{Config: gc, Store: store, Logger: log})
		case "reputation":
			rc, lerr := loadReputation(cfg.Dir, th)
			if lerr != nil {
				return nil, lerr
			}
			f, err = reputation.New(reputation.Options{Config: rc, Store: store, Logger: log.With("module", "reputation")})
		case "bayes":
			bc, lerr := bayes.LoadConfig(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			f, err = bayes.New(bayes.Options{Config: bc, Store: store, Logger: log.With("module", "bayes")})
		case "spf":
			acts, lerr := spf.LoadActions(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			f, err = spf.NewFilter(spf.FilterOptions{Resolver: res, Actions: acts, Receiver: cfg.Me})
		case "dkim":
			f, err = dkim.New(dkim.Options{Resolver: res})
		case "arc":
			ac, lerr := arc.LoadConfig(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			ac.Filter.Resolver = res
			f, err = arc.New(ac.Filter)
			out.SealForwards = ac.Seal
		case "rules":
			var rf *smtprules.Filter
			rf, err = smtprules.Load(cfg.Dir)
			if err == nil && rf == nil {
				err = fmt.Errorf("no %s file in %s", smtprules.SettingName, cfg.Dir)
			}
			if err == nil {
				f = rf
			}
		case "dmarc":
			dopt, lerr := dmarc.LoadOptions(cfg.Dir)
			if lerr != nil {
				return nil, lerr
			}
			dopt.Resolver = res
			dopt.Reports = dmarcHooks.Reports   // nil unless dmarcreports is on
			dopt.Failures = dmarcHooks.Failures // nil unless dmarcfailurereports is on
			f, err = dmarc.New(dopt)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", e.line.File, e.line.Num, e.name, err)
		}
		entries = append(entries, filters.Entry{Filter: f, Mode: e.mode, Weight: e.weight})
	}
	observe := func(name string, v filters.Verdict, d time.Duration) {
		results.WithLabelValues(name, v.String()).Inc()
		latency.WithLabelValues(name).Observe(d.Seconds())
	}
	out.Pipeline = filters.NewPipeline(entries, filters.PipelineOptions{
		Thresholds: th, Logger: log.With("module", "filters"), Observe: observe,
	})
	// Authenticated users' and relay clients' mail: only the milters that
	// ask for it, without score thresholds (gateway.Filters.Trusted).
	out.Trusted = filters.NewPipeline(trusted, filters.PipelineOptions{Logger: log.With("module", "filters"), Observe: observe})
	signer, err := dkim.LoadSigner(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("dkim keys: %w", err)
	}
	out.Signer = signer
	return out, nil
}
