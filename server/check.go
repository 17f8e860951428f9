package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postern/auth/authconfig"
	"postern/gateway/outbound"
	"postern/policy"
	"postern/policy/access"
	"postern/web/admin"
	"postern/web/autoconfig"
)

// CheckConfig reads every setting that serve and reload read beyond
// policy.Load, as they would — the checks (filters, milters, dnsbl,
// greylist, ratelimit, spf, dmarc, bofh, smtprules), smtpaccess, routes, senderroutes,
// smarthostauth, the authentication modules (authmodulelist,
// authmysqlrc, authpgsqlrc), the web admin's logins (webadmin) and mtastspolicy — and returns their errors, each with its file and
// line. It opens no state store and no listener, so it can run next to
// the server (postern config).
func CheckConfig(cfg *policy.Config) error {
	log := slog.New(slog.DiscardHandler)
	var errs []error
	results := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "check_results"}, []string{"filter", "verdict"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "check_seconds"}, []string{"filter"})
	if _, err := buildFilters(cfg, offlineStore{}, dmarcHooks{}, log, results, latency); err != nil {
		errs = append(errs, err)
	}
	if _, err := access.Load(cfg.Dir); err != nil {
		errs = append(errs, fmt.Errorf("smtpaccess: %w", err))
	}
	if _, err := outbound.LoadRoutes(cfg.Dir); err != nil {
		errs = append(errs, fmt.Errorf("routes: %w", err))
	}
	if _, err := outbound.LoadSenderRoutes(cfg.Dir); err != nil {
		errs = append(errs, fmt.Errorf("senderroutes: %w", err))
	}
	if _, err := outbound.LoadAuth(cfg.Dir, log); err != nil {
		errs = append(errs, fmt.Errorf("smarthostauth: %w", err))
	}
	if _, err := authconfig.Read(cfg.Dir); err != nil {
		errs = append(errs, fmt.Errorf("authentication modules: %w", err))
	}
	if _, err := admin.LoadAdmins(cfg.Dir); err != nil {
		errs = append(errs, fmt.Errorf("webadmin: %w", err))
	}
	if _, err := autoconfig.LoadPolicies(cfg); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", autoconfig.SettingMTASTS, err))
	}
	return errors.Join(errs...)
}

// offlineStore stands in for the state store while the checks are only
// built, never run.
type offlineStore struct{}

var errOffline = errors.New("state store not opened (configuration check)")

func (offlineStore) Get(context.Context, string) ([]byte, bool, error) { return nil, false, errOffline }
func (offlineStore) Set(context.Context, string, []byte, time.Duration) error {
	return errOffline
}
func (offlineStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, errOffline
}
func (offlineStore) Incr(context.Context, string, int64, time.Duration) (int64, error) {
	return 0, errOffline
}
func (offlineStore) Delete(context.Context, string) error { return errOffline }
func (offlineStore) Close() error                         { return nil }
