package admin

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"postern/filters/dkim"
	"postern/filters/dns"
	"postern/policy"
	"postern/web/autoconfig"
	"postern/web/websession"
)

// The DNS check's bounds: it runs while the admin waits for the page.
const (
	checkTimeout     = 5 * time.Second // the whole check
	checkLookupLimit = 40              // records looked up; the rest are not checked
	checkParallel    = 4               // lookups at once
	checkPerServer   = 2 * time.Second // one exchange with one resolver
)

type domainRow struct {
	Name      string
	Selectors []string
	MTASTS    string // the policy's mode, "" without one
}

// domainList is the Domains page: every domain the server takes mail for,
// with its DKIM selectors and MTA-STS policy.
func (h *Handler) domainList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	v := view{Title: "Domains", Section: "domains"}
	cfg, sts, err := h.loadDomainConfig()
	if err != nil {
		v.Errors = errorLines(err)
		h.render(w, s, http.StatusOK, "domains", v)
		return
	}
	keys, err := dkim.LoadKeys(filepath.Join(cfg.Dir, dkim.KeyDir))
	if err != nil {
		v.Errors = errorLines(err)
	}
	var rows []domainRow
	for d := range cfg.AcceptMailFor {
		row := domainRow{Name: d}
		for _, k := range keys {
			if k.Domain == d {
				row.Selectors = append(row.Selectors, k.Selector)
			}
		}
		slices.Sort(row.Selectors)
		if p, ok := sts.Get(d); ok {
			row.MTASTS = p.Mode
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b domainRow) int { return strings.Compare(a.Name, b.Name) })
	v.Data = rows
	h.render(w, s, http.StatusOK, "domains", v)
}

func (h *Handler) loadDomainConfig() (*policy.Config, *autoconfig.Policies, error) {
	cfg, err := policy.Load(h.opt.ConfigDir)
	if err != nil {
		return nil, nil, err
	}
	sts, err := autoconfig.LoadPolicies(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, sts, nil
}

type domainData struct {
	Domain  string
	HasDKIM bool
	Records []recordCheck
	Zone    string // what postern dns records DOMAIN prints
	Checked bool
	Counts  map[string]int // by state
}

// domainPage loads what a domain's page shows; ok false when the page was
// answered already (404, or a configuration that does not load).
func (h *Handler) domainPage(w http.ResponseWriter, r *http.Request, s *websession.Session) (*policy.Config, domainData, bool) {
	domain := strings.TrimSuffix(strings.ToLower(r.PathValue("domain")), ".")
	v := view{Title: "Domain " + truncate(domain, 255), Section: "domains"}
	cfg, sts, err := h.loadDomainConfig()
	if err != nil {
		v.Errors = errorLines(err)
		h.render(w, s, http.StatusInternalServerError, "domain", v)
		return nil, domainData{}, false
	}
	if !cfg.HasDomain(domain) {
		http.NotFound(w, r)
		return nil, domainData{}, false
	}
	in, err := autoconfig.InputsFromConfig(cfg, domain)
	if err == nil {
		d := domainData{Domain: domain, HasDKIM: len(in.DKIM) > 0}
		set := autoconfig.FromConfig(cfg, sts, nil)
		var recs []autoconfig.Record
		if recs, err = set.Records(in); err == nil {
			var zone bytes.Buffer
			err = set.WriteRecords(&zone, in)
			d.Zone = zone.String()
			for _, rec := range recs {
				if rec.Type != "" {
					d.Records = append(d.Records, recordCheck{Record: rec})
				}
			}
			return cfg, d, true
		}
	}
	v.Errors = errorLines(err)
	h.render(w, s, http.StatusInternalServerError, "domain", v)
	return nil, domainData{}, false
}

func (h *Handler) domainShow(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	if _, d, ok := h.domainPage(w, r, s); ok {
		h.render(w, s, http.StatusOK, "domain", view{Title: "Domain " + d.Domain, Section: "domains", Data: d})
	}
}

// domainCheck looks every record up through the server's resolvers (the
// resolvers setting), never the admin's browser, and shows how each fares.
func (h *Handler) domainCheck(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	cfg, d, ok := h.domainPage(w, r, s)
	if !ok {
		return
	}
	v := view{Title: "Domain " + d.Domain, Section: "domains", Data: &d}
	res, err := dns.New(dns.Options{Servers: cfg.Resolvers, Timeout: checkPerServer, Attempts: 1, CacheSize: -1, Logger: h.log.With("module", "dns")})
	if err != nil {
		v.Error = "No DNS check: resolvers: " + err.Error()
		h.render(w, s, http.StatusOK, "domain", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	defer cancel()
	checkRecords(ctx, res, d.Records)
	d.Checked = true
	d.Counts = map[string]int{}
	for _, c := range d.Records {
		d.Counts[string(c.State)]++
	}
	h.log.Info("webadmin: DNS check", "admin", s.Login, "domain", d.Domain, "matches", d.Counts[string(stateMatches)],
		"differs", d.Counts[string(stateDiffers)], "missing", d.Counts[string(stateMissing)], "errors", d.Counts[string(stateError)]+d.Counts[string(stateNotChecked)])
	h.render(w, s, http.StatusOK, "domain", v)
}

// domainDKIM makes the domain's first DKIM key, as postern dkim keygen
// DOMAIN does. The private key goes to its file (mode 0600) and nowhere
// else; the page then shows the record to publish.
func (h *Handler) domainDKIM(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	_, d, ok := h.domainPage(w, r, s)
	if !ok {
		return
	}
	next := Prefix + "domains/" + d.Domain
	if d.HasDKIM {
		s.Set("flash", d.Domain+" has a DKIM key already; make another with postern dkim keygen --selector.")
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	keyType := "rsa"
	if r.PostFormValue("type") == "ed25519" {
		keyType = "ed25519"
	}
	key, path, err := dkim.Keygen(h.opt.ConfigDir, d.Domain, dkim.DefaultSelector(time.Now()), keyType, 2048, false)
	if err != nil {
		if errors.Is(err, dkim.ErrKeyExists) {
			err = errors.New(path + " exists")
		}
		h.log.Warn("webadmin: DKIM key not made", "admin", s.Login, "domain", d.Domain, "err", err)
		s.Set("flash", "No DKIM key made: "+err.Error())
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.done(w, r, s, "dkim", "DKIM key made for "+d.Domain+" (selector "+key.Selector+", "+keyType+"); publish its record, then reload", next,
		"domain", d.Domain, "selector", key.Selector, "file", path)
}
