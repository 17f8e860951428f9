package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/bench/internal/latency"
	"postern/bench/internal/netstep"
)

// Bounds on the configuration: a load generator must never be the thing
// that runs away.
const (
	maxConcurrency = 10000
	maxMessageSize = 256 << 20
	maxRecipients  = 1000
	maxSamples     = 5 // distinct error texts kept for the report
)

// Config is one load run. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	Addr        string        // host:port, the only address ever dialed
	Messages    int64         // messages to send; 0 means "until Duration"
	Duration    time.Duration // stop starting messages after this; 0 means "until Messages"
	Concurrency int           // parallel connections
	Size        int64         // exact size of each message in octets (RFC 5322 form, CRLF)
	From        string        // reverse-path; "" sends MAIL FROM:<>
	To          []string      // recipient pool
	// RcptsPerMessage picks this many recipients from To for each
	// message, round-robin; 0 sends every message to all of To.
	RcptsPerMessage int
	Helo            string // EHLO name
	StartTLS        bool   // STARTTLS (RFC 3207) after the greeting
	ImplicitTLS     bool   // TLS from the first byte (RFC 8314)
	Insecure        bool   // skip certificate verification
	AuthUser        string // AUTH PLAIN (RFC 4954, RFC 4616) when non-empty
	AuthPass        string
	// Reuse is how many messages go over one connection; >1 sends RSET
	// between them (RFC 5321 section 4.1.1.5).
	Reuse int
	// Timeout bounds every network step: connect, TLS handshake, each
	// reply awaited and each write.
	Timeout time.Duration
	// ProgressBar redraws one line with \r (for a terminal); otherwise
	// progress is one line per ProgressInterval.
	ProgressBar      bool
	ProgressInterval time.Duration
}

// DefaultConfig is the configuration the command-line flags start from.
func DefaultConfig() Config {
	return Config{
		Addr:             "127.0.0.1:2525",
		Messages:         1000,
		Concurrency:      10,
		Size:             4096,
		From:             "smtpload@localhost",
		To:               []string{"alice@example.test"}, // the user `make run` creates
		Helo:             "localhost",
		Reuse:            1,
		Timeout:          30 * time.Second,
		ProgressInterval: 5 * time.Second,
	}
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid configuration")

// Validate checks that the run is bounded and can be carried out.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("smtpload: %w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("address %q: %v", c.Addr, err)
	}
	if c.Messages < 0 || c.Duration < 0 {
		return bad("message count and duration must not be negative")
	}
	if c.Messages == 0 && c.Duration == 0 {
		return bad("the run must be bounded: give a message count or a duration")
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		return bad("concurrency %d not in 1..%d", c.Concurrency, maxConcurrency)
	}
	if c.Size < 1 || c.Size > maxMessageSize {
		return bad("size %d not in 1..%d", c.Size, maxMessageSize)
	}
	if len(c.To) == 0 {
		return bad("no recipients")
	}
	if len(c.To) > maxRecipients {
		return bad("%d recipients, at most %d", len(c.To), maxRecipients)
	}
	for _, a := range append([]string{c.From}, c.To...) {
		if err := checkAddress(a); err != nil {
			return bad("%v", err)
		}
	}
	for _, r := range c.To {
		if r == "" {
			return bad("empty recipient")
		}
	}
	if c.RcptsPerMessage < 0 || c.RcptsPerMessage > len(c.To) {
		return bad("-rcpts %d not in 0..%d (the number of -to addresses)", c.RcptsPerMessage, len(c.To))
	}
	if c.StartTLS && c.ImplicitTLS {
		return bad("-starttls and -tls exclude each other")
	}
	if c.Reuse < 1 {
		return bad("reuse %d, must be at least 1", c.Reuse)
	}
	if c.Timeout <= 0 {
		return bad("timeout must be positive")
	}
	if strings.ContainsAny(c.Helo, " \r\n\t") || c.Helo == "" {
		return bad("EHLO name %q", c.Helo)
	}
	maxSeq := c.Messages
	if maxSeq == 0 {
		maxSeq = 1<<63 - 1
	}
	if minSize := newMessageBuilder(c.Size, c.From, "0123456789abcdef").minimumSize(maxSeq, c.To, c.RcptsPerMessage); c.Size < minSize {
		return bad("size %d is smaller than the header (%d octets with these addresses)", c.Size, minSize)
	}
	return nil
}

// checkAddress refuses what cannot go into a MAIL or RCPT command line.
func checkAddress(a string) error {
	if len(a) > 254 {
		return fmt.Errorf("address %.20q...: longer than 254 octets", a)
	}
	for _, r := range a {
		if r <= ' ' || r == '<' || r == '>' || r == 0x7f || r > 0x7e {
			return fmt.Errorf("address %q: space, control, angle bracket or non-ASCII character", a)
		}
	}
	return nil
}

// LatencySummary describes one latency distribution.
type LatencySummary = latency.Summary

// Report is the result of a run.
type Report struct {
	Sent        int64 // messages accepted with 250 after DATA
	Failed      int64
	Connections int64 // connections opened (including failed attempts)
	// FailuresByCode counts failed messages by SMTP reply code ("550",
	// "421", ...) or, without a reply, by what went wrong: "connect",
	// "tls", "timeout", "io", "canceled".
	FailuresByCode map[string]int64
	ErrorSamples   []string // a few distinct error texts, for diagnosis
	Elapsed        time.Duration
	BytesSent      int64   // message octets of accepted messages
	MessagesPerSec float64 // Sent / Elapsed
	BytesPerSec    float64 // BytesSent / Elapsed
	// Transaction is connect (or RSET, on a reused connection) to the 250
	// after the final dot; Data is the DATA command to that 250.
	Transaction LatencySummary
	Data        LatencySummary
	// Steps breaks the session down, one summary per step (see
	// StepNames): where the time of a transaction goes.
	Steps [numSteps]LatencySummary
}

// The steps of a session whose latency is recorded on its own: each is
// the time from sending the command (or dialing) to its final reply.
const (
	stepConnect   = iota // TCP connect (the TLS handshake of -tls included)
	stepHello            // greeting and EHLO (STARTTLS and AUTH not included)
	stepReset            // RSET on a reused connection
	stepMail             // MAIL FROM
	stepRcpt             // each RCPT TO
	stepDataCmd          // DATA to the 354
	stepEndOfData        // the message and the final dot to the 250
	stepQuit             // QUIT to the 221
	numSteps
)

// StepNames are the names of the steps in Report.Steps, as printed.
var StepNames = [numSteps]string{"connect", "EHLO", "RSET", "MAIL", "RCPT", "DATA", "end of data", "QUIT"}

// stepTimes collects one message's step latencies for runner.recordSteps.
type stepTimes struct {
	d [numSteps][]time.Duration
}

func (st *stepTimes) add(step int, since time.Time) {
	st.d[step] = append(st.d[step], time.Since(since))
}

func (st *stepTimes) reset() {
	for i := range st.d {
		st.d[i] = st.d[i][:0]
	}
}

// Run sends the configured load to c.Addr and reports what happened. It
// returns an error only when the run could not be carried out at all
// (bad configuration); failed messages are counted in the Report. When
// progress is not nil, progress is written to it while the run lasts.
// Cancelling ctx aborts messages in flight.
func Run(ctx context.Context, c Config, progress io.Writer) (Report, error) {
	if err := c.Validate(); err != nil {
		return Report{}, err
	}
	runID, err := newRunID()
	if err != nil {
		return Report{}, err
	}
	r := &runner{
		cfg:     c,
		builder: newMessageBuilder(c.Size, c.From, runID),
		tlsConfig: &tls.Config{
			InsecureSkipVerify: c.Insecure, // only on -insecure: test servers with self-signed certificates
			MinVersion:         tls.VersionTLS12,
		},
		failures: make(map[string]int64),
	}
	if host, _, err := net.SplitHostPort(c.Addr); err == nil {
		r.tlsConfig.ServerName = host
	}
	start := time.Now()
	r.start = start
	if c.Duration > 0 {
		r.stopAt = start.Add(c.Duration)
	}

	workers := c.Concurrency
	if c.Messages > 0 && int64(workers) > c.Messages {
		workers = int(c.Messages)
	}
	results := make([]workerResult, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.work(ctx)
		}()
	}

	stopProgress := func() {}
	if progress != nil {
		stopProgress = r.startProgress(progress)
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()

	var tx, data latency.Histogram
	rep := Report{FailuresByCode: r.failures, Elapsed: elapsed}
	for i := range results {
		tx.Merge(&results[i].transaction)
		data.Merge(&results[i].data)
		rep.BytesSent += results[i].bytes
	}
	rep.Sent = r.sent.Load()
	rep.Failed = r.failed.Load()
	rep.Connections = r.connections.Load()
	rep.ErrorSamples = r.samples
	rep.Transaction = tx.Summary()
	rep.Data = data.Summary()
	for i := range r.steps {
		rep.Steps[i] = r.steps[i].Summary()
	}
	if secs := elapsed.Seconds(); secs > 0 {
		rep.MessagesPerSec = float64(rep.Sent) / secs
		rep.BytesPerSec = float64(rep.BytesSent) / secs
	}
	return rep, nil
}

func newRunID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("smtpload: run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// runner is the state shared by the workers of one run.
type runner struct {
	cfg       Config
	builder   *messageBuilder
	tlsConfig *tls.Config
	start     time.Time
	stopAt    time.Time // zero: no time limit

	next        atomic.Int64 // last sequence number handed out
	sent        atomic.Int64
	failed      atomic.Int64
	connections atomic.Int64

	mu       sync.Mutex
	failures map[string]int64
	samples  []string
	// steps are shared, not per worker: a histogram is about 60 KB, and
	// -c goes up to 10000; one lock per message is cheap.
	steps [numSteps]latency.Histogram
}

// recordSteps adds one message's (or one connection's) step latencies.
func (r *runner) recordSteps(st *stepTimes) {
	r.mu.Lock()
	for i, ds := range st.d {
		for _, d := range ds {
			r.steps[i].Record(d)
		}
	}
	r.mu.Unlock()
	st.reset()
}

type workerResult struct {
	transaction, data latency.Histogram
	bytes             int64
}

// take hands out the next message sequence number (from 1), or false
// when the run's count or time limit is reached.
func (r *runner) take(ctx context.Context) (int64, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	if !r.stopAt.IsZero() && !time.Now().Before(r.stopAt) {
		return 0, false
	}
	seq := r.next.Add(1)
	if r.cfg.Messages > 0 && seq > r.cfg.Messages {
		return 0, false
	}
	return seq, true
}

// recipients picks the recipients of message seq, round-robin over To.
func (r *runner) recipients(seq int64) []string {
	n := r.cfg.RcptsPerMessage
	if n == 0 {
		return r.cfg.To
	}
	out := make([]string, n)
	base := (seq - 1) * int64(n)
	for i := range out {
		out[i] = r.cfg.To[(base+int64(i))%int64(len(r.cfg.To))]
	}
	return out
}

func (r *runner) recordFailure(seq int64, stage string, err error) {
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

// failureKey names a failure by its SMTP reply code when the server gave
// one, else by the kind of trouble.
func failureKey(stage string, err error) string {
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		return strconv.Itoa(smtpErr.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timeout"
	}
	if isTLSError(err) {
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

// isTLSError recognises handshake failures. After STARTTLS, go-smtp's
// client does the handshake lazily inside the next EHLO, so the stage
// alone cannot tell.
func isTLSError(err error) bool {
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	var record tls.RecordHeaderError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) ||
		errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

const (
	stageConnect = "connect"
	stageTLS     = "tls"
	stageHello   = "greeting/EHLO"
	stageAuth    = "AUTH"
	stageReset   = "RSET"
	stageMail    = "MAIL"
	stageRcpt    = "RCPT"
	stageData    = "DATA"
	stageBody    = "message body"
	stageDot     = "end of data"
)

// connection is one SMTP client connection and how many messages it has
// carried.
type connection struct {
	client *smtp.Client
	used   int
	stop   func() bool // detaches the context watcher
}

// close ends the connection, with QUIT when graceful; a QUIT answered
// goes into st.
func (cn *connection) close(graceful bool, st *stepTimes) {
	if graceful {
		t := time.Now()
		if cn.client.Quit() == nil { // QUIT closes on success
			st.add(stepQuit, t)
		}
	}
	_ = cn.client.Close()
	cn.stop()
}

// work sends messages until the run's limit, over connections of its own.
func (r *runner) work(ctx context.Context) workerResult {
	var res workerResult
	var conn *connection
	var st stepTimes
	defer func() {
		if conn != nil {
			conn.close(ctx.Err() == nil, &st)
			r.recordSteps(&st)
		}
	}()
	for {
		seq, ok := r.take(ctx)
		if !ok {
			return res
		}
		if conn != nil && conn.used >= r.cfg.Reuse {
			conn.close(true, &st)
			conn = nil
		}
		tm, size, stage, err := r.message(ctx, &conn, seq, &st)
		r.recordSteps(&st)
		if err != nil {
			r.recordFailure(seq, stage, contextError(ctx, err))
			var smtpErr *smtp.SMTPError
			// Keep the connection after an ordinary rejection (RSET comes
			// next); drop it after 421 (RFC 5321 section 3.8) or when
			// there was no reply at all.
			if conn != nil && (!errors.As(err, &smtpErr) || smtpErr.Code == 421) {
				conn.close(false, &st)
				conn = nil
			}
			continue
		}
		res.transaction.Record(tm.transaction)
		res.data.Record(tm.data)
		res.bytes += size
		r.sent.Add(1)
	}
}

// times are a message's whole-transaction and DATA latencies.
type times struct{ transaction, data time.Duration }

// message sends message seq over *conn, dialing a new connection when it
// is nil, or after RSET on a reused one. A connection that failed before
// the transaction is closed and *conn set to nil.
func (r *runner) message(ctx context.Context, conn **connection, seq int64, st *stepTimes) (times, int64, string, error) {
	started := time.Now()
	if *conn == nil {
		c, stage, err := r.dial(ctx, st)
		if err != nil {
			return times{}, 0, stage, err
		}
		*conn = c
	} else {
		// RSET between messages on a reused connection.
		t := time.Now()
		if err := (*conn).client.Reset(); err != nil {
			(*conn).close(false, st)
			*conn = nil
			return times{}, 0, stageReset, err
		}
		st.add(stepReset, t)
	}
	(*conn).used++
	dataTime, size, stage, err := r.transaction((*conn).client, seq, st)
	return times{time.Since(started), dataTime}, size, stage, err
}

// contextError prefers the context's error when the context ended, so a
// cancelled run reports "canceled" rather than "use of closed connection".
func contextError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}

// dial opens a connection, reads the greeting, says EHLO, and does TLS
// and AUTH as configured.
func (r *runner) dial(ctx context.Context, st *stepTimes) (*connection, string, error) {
	r.connections.Add(1)
	began := time.Now()
	dialer := net.Dialer{Timeout: r.cfg.Timeout}
	raw, err := dialer.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return nil, stageConnect, fmt.Errorf("dial %s: %w", r.cfg.Addr, err)
	}
	// Closing the socket is what unblocks a worker when the run is
	// cancelled.
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	fail := func(stage string, err error) (*connection, string, error) {
		stop()
		_ = raw.Close()
		return nil, stage, err
	}
	var netConn net.Conn = netstep.New(raw, r.cfg.Timeout)
	if r.cfg.ImplicitTLS {
		tlsConn := tls.Client(netConn, r.tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return fail(stageTLS, fmt.Errorf("TLS handshake with %s: %w", r.cfg.Addr, err))
		}
		netConn = tlsConn
	}
	st.add(stepConnect, began)
	var client *smtp.Client
	if r.cfg.StartTLS {
		// go-smtp says EHLO as "localhost" before STARTTLS; our -helo
		// name is used for the EHLO after it (RFC 3207 section 4.2).
		client, err = smtp.NewClientStartTLS(netConn, r.tlsConfig)
		if err != nil {
			return fail(stageTLS, fmt.Errorf("STARTTLS with %s: %w", r.cfg.Addr, err))
		}
	} else {
		client = smtp.NewClient(netConn)
	}
	client.CommandTimeout = r.cfg.Timeout
	client.SubmissionTimeout = r.cfg.Timeout
	hello := time.Now()
	if err := client.Hello(r.cfg.Helo); err != nil {
		_ = client.Close()
		return fail(stageHello, err)
	}
	if !r.cfg.StartTLS { // after STARTTLS the greeting was read before
		st.add(stepHello, hello)
	}
	if r.cfg.AuthUser != "" {
		if err := client.Auth(sasl.NewPlainClient("", r.cfg.AuthUser, r.cfg.AuthPass)); err != nil {
			_ = client.Close()
			return fail(stageAuth, err)
		}
	}
	return &connection{client: client, stop: stop}, "", nil
}

// transaction sends message seq: MAIL, RCPT for each recipient, DATA,
// the message, and the final dot. It returns the time from DATA to the
// 250 after the dot and the message size.
func (r *runner) transaction(client *smtp.Client, seq int64, st *stepTimes) (time.Duration, int64, string, error) {
	t := time.Now()
	if err := client.Mail(r.cfg.From, nil); err != nil {
		return 0, 0, stageMail, err
	}
	st.add(stepMail, t)
	rcpts := r.recipients(seq)
	for _, rcpt := range rcpts {
		// Any rejected recipient fails the message: the load test wants
		// every message to reach every recipient it names.
		t = time.Now()
		if err := client.Rcpt(rcpt, nil); err != nil {
			return 0, 0, stageRcpt, err
		}
		st.add(stepRcpt, t)
	}
	dataStart := time.Now()
	w, err := client.Data()
	if err != nil {
		return 0, 0, stageData, err
	}
	st.add(stepDataCmd, dataStart)
	t = time.Now()
	size, err := r.builder.write(w, seq, rcpts, time.Now())
	if err != nil {
		_ = w.Close()
		return 0, 0, stageBody, err
	}
	if err := w.Close(); err != nil {
		return 0, 0, stageDot, err
	}
	st.add(stepEndOfData, t)
	return time.Since(dataStart), size, "", nil
}

// sortedFailureKeys lists failure keys in a stable order for printing.
func sortedFailureKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
