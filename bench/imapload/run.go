package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postern/bench/internal/latency"
	"postern/bench/internal/netstep"
)

const (
	maxConcurrency = 10000
	maxSamples     = 5
)

// Config is one IMAP load run. Start from DefaultConfig.
type Config struct {
	Addr        string        // host:port, the only address dialed
	User, Pass  string        // LOGIN credentials (RFC 9051 section 6.2.3)
	Mailbox     string        // mailbox to SELECT
	Examine     bool          // EXAMINE (read-only) instead of SELECT
	Sessions    int64         // sessions to run; 0 means "until Duration"
	Duration    time.Duration // stop starting sessions after this
	Concurrency int
	StartTLS    bool // STARTTLS (RFC 9051 section 6.2.1)
	ImplicitTLS bool // TLS from the first byte (RFC 8314)
	Insecure    bool // skip certificate verification
	// Timeout bounds every network step: connect, TLS handshake, each
	// read and each write.
	Timeout          time.Duration
	ProgressInterval time.Duration // one progress line per interval
}

// DefaultConfig matches what `make run` sets up.
func DefaultConfig() Config {
	return Config{
		Addr:             "127.0.0.1:2143",
		Mailbox:          "INBOX",
		Sessions:         100,
		Concurrency:      10,
		Timeout:          30 * time.Second,
		ProgressInterval: 5 * time.Second,
	}
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid configuration")

// Validate checks that the run is bounded and can be carried out.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("imapload: %w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("address %q: %v", c.Addr, err)
	}
	if c.Sessions < 0 || c.Duration < 0 {
		return bad("session count and duration must not be negative")
	}
	if c.Sessions == 0 && c.Duration == 0 {
		return bad("the run must be bounded: give a session count or a duration")
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		return bad("concurrency %d not in 1..%d", c.Concurrency, maxConcurrency)
	}
	if c.User == "" {
		return bad("no user (-user)")
	}
	for _, s := range []string{c.User, c.Pass, c.Mailbox} {
		if strings.ContainsAny(s, "\x00\r\n") || len(s) > 1024 {
			return bad("NUL, CR, LF or over 1024 octets in user, password or mailbox")
		}
	}
	if c.Mailbox == "" {
		return bad("no mailbox")
	}
	if c.StartTLS && c.ImplicitTLS {
		return bad("-starttls and -tls exclude each other")
	}
	if c.Timeout <= 0 {
		return bad("timeout must be positive")
	}
	return nil
}

// Report is the result of a run. A session is connect (with TLS and the
// greeting), LOGIN, SELECT, UID FETCH 1:* (FLAGS), LOGOUT.
type Report struct {
	Sessions       int64            // sessions that completed every step
	Failed         int64            // sessions that failed at some step
	FailuresByKind map[string]int64 // "LOGIN NO", "SELECT NO", "connect", "tls", "timeout", "io", "canceled"
	ErrorSamples   []string
	Messages       int64 // FETCH responses received in completed sessions
	Elapsed        time.Duration
	SessionsPerSec float64
	MessagesPerSec float64 // FETCH responses per second over the run
	Connect        latency.Summary
	Login          latency.Summary
	Select         latency.Summary
	Fetch          latency.Summary
	Logout         latency.Summary
	Session        latency.Summary // connect to the LOGOUT completion
}

type stageTimes struct {
	connect, login, selectMailbox, fetch, logout, session latency.Histogram
}

func (s *stageTimes) merge(o *stageTimes) {
	s.connect.Merge(&o.connect)
	s.login.Merge(&o.login)
	s.selectMailbox.Merge(&o.selectMailbox)
	s.fetch.Merge(&o.fetch)
	s.logout.Merge(&o.logout)
	s.session.Merge(&o.session)
}

type runner struct {
	cfg       Config
	tlsConfig *tls.Config
	start     time.Time
	stopAt    time.Time

	next     atomic.Int64
	ok       atomic.Int64
	failed   atomic.Int64
	messages atomic.Int64

	mu       sync.Mutex
	failures map[string]int64
	samples  []string
}

// Run carries out the configured IMAP load against c.Addr. It returns an
// error only for a configuration that cannot run; failed sessions are
// counted in the Report. Progress lines go to progress when not nil.
func Run(ctx context.Context, c Config, progress io.Writer) (Report, error) {
	if err := c.Validate(); err != nil {
		return Report{}, err
	}
	r := &runner{
		cfg: c,
		tlsConfig: &tls.Config{
			InsecureSkipVerify: c.Insecure, // only on -insecure: self-signed test servers
			MinVersion:         tls.VersionTLS12,
		},
		failures: make(map[string]int64),
		start:    time.Now(),
	}
	if host, _, err := net.SplitHostPort(c.Addr); err == nil {
		r.tlsConfig.ServerName = host
	}
	if c.Duration > 0 {
		r.stopAt = r.start.Add(c.Duration)
	}
	workers := c.Concurrency
	if c.Sessions > 0 && int64(workers) > c.Sessions {
		workers = int(c.Sessions)
	}
	results := make([]stageTimes, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx, &results[i])
		}()
	}
	stopProgress := func() {}
	if progress != nil {
		stopProgress = r.startProgress(progress)
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	stopProgress()

	var all stageTimes
	for i := range results {
		all.merge(&results[i])
	}
	rep := Report{
		Sessions: r.ok.Load(), Failed: r.failed.Load(), FailuresByKind: r.failures, ErrorSamples: r.samples,
		Messages: r.messages.Load(), Elapsed: elapsed,
		Connect: all.connect.Summary(), Login: all.login.Summary(), Select: all.selectMailbox.Summary(),
		Fetch: all.fetch.Summary(), Logout: all.logout.Summary(), Session: all.session.Summary(),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		rep.SessionsPerSec = float64(rep.Sessions) / secs
		rep.MessagesPerSec = float64(rep.Messages) / secs
	}
	return rep, nil
}

func (r *runner) take(ctx context.Context) bool {
	if ctx.Err() != nil || (!r.stopAt.IsZero() && !time.Now().Before(r.stopAt)) {
		return false
	}
	n := r.next.Add(1)
	return r.cfg.Sessions == 0 || n <= r.cfg.Sessions
}

func (r *runner) work(ctx context.Context, times *stageTimes) {
	for r.take(ctx) {
		var t stageTimes
		n, stage, err := r.session(ctx, &t)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				err = fmt.Errorf("%w (%v)", ctxErr, err)
			}
			r.recordFailure(stage, err)
			continue
		}
		times.merge(&t)
		r.ok.Add(1)
		r.messages.Add(n)
	}
}

func (r *runner) recordFailure(stage string, err error) {
	r.failed.Add(1)
	key := failureKey(stage, err)
	text := fmt.Sprintf("%s: %v", stage, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[key]++
	if len(r.samples) < maxSamples && !containsString(r.samples, text) {
		r.samples = append(r.samples, text)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// failureKey names a failure by the command and the server's status
// (RFC 9051 section 7.1) when the server answered, else by the kind of
// trouble.
func failureKey(stage string, err error) string {
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return stage + " " + string(imapErr.Type)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	var netErr net.Error
	// imapclient formats some errors with %v, so also look at the text.
	if errors.As(err, &netErr) && netErr.Timeout() || strings.Contains(err.Error(), "i/o timeout") {
		return "timeout"
	}
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	var record tls.RecordHeaderError
	var unknownAuthority x509.UnknownAuthorityError
	if errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) || errors.As(err, &unknownAuthority) {
		return "tls"
	}
	switch stage {
	case stageConnect:
		return "connect"
	case stageTLS:
		return "tls"
	}
	return "io"
}

const (
	stageConnect  = "connect"
	stageTLS      = "tls"
	stageGreeting = "greeting"
	stageLogin    = "LOGIN"
	stageSelect   = "SELECT"
	stageFetch    = "UID FETCH"
	stageLogout   = "LOGOUT"
)

// session runs one IMAP session and returns how many FETCH responses it
// received.
func (r *runner) session(ctx context.Context, t *stageTimes) (int64, string, error) {
	sessionStart := time.Now()
	dialer := net.Dialer{Timeout: r.cfg.Timeout}
	raw, err := dialer.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return 0, stageConnect, fmt.Errorf("dial %s: %w", r.cfg.Addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	defer raw.Close()
	var conn net.Conn = netstep.New(raw, r.cfg.Timeout)
	if r.cfg.ImplicitTLS {
		tlsConn := tls.Client(conn, r.tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return 0, stageTLS, fmt.Errorf("TLS handshake with %s: %w", r.cfg.Addr, err)
		}
		conn = tlsConn
	}
	options := &imapclient.Options{TLSConfig: r.tlsConfig}
	var client *imapclient.Client
	if r.cfg.StartTLS {
		if client, err = imapclient.NewStartTLS(conn, options); err != nil {
			return 0, stageTLS, fmt.Errorf("STARTTLS with %s: %w", r.cfg.Addr, err)
		}
	} else {
		client = imapclient.New(conn, options)
	}
	// Close ends the client's reader goroutine whatever happens next.
	defer client.Close()
	if err := client.WaitGreeting(); err != nil {
		return 0, stageGreeting, err
	}
	t.connect.Record(time.Since(sessionStart))

	step := time.Now()
	if err := client.Login(r.cfg.User, r.cfg.Pass).Wait(); err != nil {
		return 0, stageLogin, err
	}
	t.login.Record(time.Since(step))

	step = time.Now()
	if _, err := client.Select(r.cfg.Mailbox, &imap.SelectOptions{ReadOnly: r.cfg.Examine}).Wait(); err != nil {
		return 0, stageSelect, err
	}
	t.selectMailbox.Record(time.Since(step))

	step = time.Now()
	// UID FETCH 1:* (FLAGS): what a client does to resynchronise flags.
	fetch := client.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true})
	var n int64
	for fetch.Next() != nil {
		n++
	}
	if err := fetch.Close(); err != nil {
		return 0, stageFetch, err
	}
	t.fetch.Record(time.Since(step))

	step = time.Now()
	if err := client.Logout().Wait(); err != nil {
		return 0, stageLogout, err
	}
	t.logout.Record(time.Since(step))
	t.session.Record(time.Since(sessionStart))
	return n, "", nil
}

func (r *runner) startProgress(w io.Writer) func() {
	interval := r.cfg.ProgressInterval
	if interval <= 0 {
		interval = DefaultConfig().ProgressInterval
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				r.writeProgress(w)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		r.writeProgress(w)
	}
}

func (r *runner) writeProgress(w io.Writer) {
	ok, failed := r.ok.Load(), r.failed.Load()
	total := "?"
	if r.cfg.Sessions > 0 {
		total = fmt.Sprint(r.cfg.Sessions)
	}
	fmt.Fprintf(w, "imapload: %d/%s sessions done, %d ok, %d failed, %s elapsed\n",
		ok+failed, total, ok, failed, time.Since(r.start).Round(time.Millisecond))
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
