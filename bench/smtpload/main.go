// Command smtpload is an SMTP load generator. It sends a bounded number of
// messages (or sends for a bounded time) of an exact size at a given
// concurrency to one host:port, and reports throughput and latency
// percentiles for the whole transaction, for DATA alone and for each step.
//
// It owns nothing in the server; it only ever connects to the address it
// is given. See docs/bench.md for the manual page.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/bench/internal/latency"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // at least one message failed
	exitUsage  = 2 // bad flags or configuration
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device, which is how we
// tell an interactive terminal from a pipe or file without a terminal
// library.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// run is main without the process: flags in, exit status out.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, stderrIsTerminal bool) int {
	cfg, asJSON, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "smtpload: %v\n", err)
		return exitUsage
	}
	cfg.ProgressBar = stderrIsTerminal
	rep, err := Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reportJSON(cfg, rep)); err != nil {
			fmt.Fprintf(stderr, "smtpload: writing report: %v\n", err)
			return exitFailed
		}
	} else {
		writeReport(stdout, cfg, rep)
	}
	if rep.Failed > 0 || ctx.Err() != nil {
		return exitFailed
	}
	return exitOK
}

const usageText = `usage: smtpload [flags]

Sends -n messages (or sends for -duration) of -size octets over SMTP to
-addr with -c parallel connections, then prints messages/s, bytes/s and
latency percentiles (whole transaction, DATA, and each step). Exits 1 if
any message failed, 2 on bad flags.

Flags:
`

// parseFlags turns the command line into a Config; the bool is -json.
func parseFlags(args []string, stderr io.Writer) (Config, bool, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("smtpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	size := byteSize(cfg.Size)
	to := strings.Join(cfg.To, ",")
	auth := ""
	asJSON := false
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "SMTP server `host:port` (the only address dialed)")
	fs.Int64Var(&cfg.Messages, "n", cfg.Messages, "number of `messages` to send (with -duration: an extra cap, if given)")
	fs.IntVar(&cfg.Concurrency, "c", cfg.Concurrency, "`connections` in parallel")
	fs.Var(&size, "size", "exact message `size` in octets, headers included; k and m suffixes are 1024 and 1048576")
	fs.StringVar(&cfg.From, "from", cfg.From, "envelope sender `address` (\"\" for the null sender <>)")
	fs.StringVar(&to, "to", to, "comma-separated recipient `addresses`")
	fs.IntVar(&cfg.RcptsPerMessage, "rcpts", 0, "recipients per message, picked round-robin from -to (0: all of -to)")
	fs.StringVar(&cfg.Helo, "helo", cfg.Helo, "EHLO `name`")
	fs.BoolVar(&cfg.StartTLS, "starttls", false, "use STARTTLS (RFC 3207) before sending")
	fs.BoolVar(&cfg.ImplicitTLS, "tls", false, "use implicit TLS from the first byte (port 465, RFC 8314)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server's certificate")
	fs.StringVar(&auth, "auth", "", "AUTH PLAIN as `user:pass` (the password is visible to ps; prefer SMTPLOAD_AUTH)")
	fs.IntVar(&cfg.Reuse, "reuse", cfg.Reuse, "`messages` per connection; >1 sends RSET between them")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "limit on each network step (connect, handshake, each reply, each write)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "send for this long instead of a fixed count (e.g. 30s)")
	fs.DurationVar(&cfg.ProgressInterval, "progress", cfg.ProgressInterval, "interval between progress lines when stderr is not a terminal")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected argument %q (flags only; see -help)", fs.Arg(0))
	}
	explicitN := false
	fs.Visit(func(f *flag.Flag) { explicitN = explicitN || f.Name == "n" })
	if cfg.Duration > 0 && !explicitN {
		cfg.Messages = 0 // -duration alone: as many as fit in the time
	}
	cfg.Size = int64(size)
	recipients, err := parseRecipients(to)
	if err != nil {
		return cfg, false, err
	}
	cfg.To = recipients
	if auth == "" {
		auth = os.Getenv("SMTPLOAD_AUTH")
	}
	if auth != "" {
		if cfg.AuthUser, cfg.AuthPass, err = parseAuth(auth); err != nil {
			return cfg, false, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, err
	}
	return cfg, asJSON, nil
}

// parseRecipients splits a comma-separated list, trimming spaces and
// angle brackets.
func parseRecipients(list string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(list, ",") {
		a := strings.TrimSpace(part)
		a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
		if a == "" {
			continue
		}
		if err := checkAddress(a); err != nil {
			return nil, fmt.Errorf("-to: %w", err)
		}
		out = append(out, a)
		if len(out) > maxRecipients {
			return nil, fmt.Errorf("-to: more than %d recipients", maxRecipients)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-to: no recipients")
	}
	return out, nil
}

// parseAuth splits user:pass at the first colon (a password may contain
// colons, a user name here may not).
func parseAuth(s string) (user, pass string, err error) {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" {
		return "", "", errors.New("-auth: want user:pass")
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return "", "", errors.New("-auth: NUL, CR or LF in user or password")
	}
	return user, pass, nil
}

// byteSize is a flag value for sizes like 4096, 4k, 1m.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

// parseSize reads a size in octets with an optional k/K (×1024) or m/M
// (×1048576) suffix, optionally followed by "b"/"B" ("4kb", "1MB"), and
// refuses anything above maxMessageSize.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if len(t) > 32 {
		return 0, fmt.Errorf("size %.32q...: too long", s)
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "B")
	multiplier := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			multiplier, t = 1<<10, t[:len(t)-1]
		case 'm', 'M':
			multiplier, t = 1<<20, t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional k or m suffix", s)
	}
	if n > maxMessageSize/multiplier {
		return 0, fmt.Errorf("size %q: more than %d octets", s, maxMessageSize)
	}
	return n * multiplier, nil
}

// writeReport prints the human-readable report.
func writeReport(w io.Writer, cfg Config, rep Report) {
	fmt.Fprintf(w, "target       %s (size %d, concurrency %d, reuse %d)\n", cfg.Addr, cfg.Size, cfg.Concurrency, cfg.Reuse)
	fmt.Fprintf(w, "sent         %d\n", rep.Sent)
	fmt.Fprintf(w, "failed       %d", rep.Failed)
	for i, k := range sortedFailureKeys(rep.FailuresByCode) {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(w, "%s%s: %d", sep, k, rep.FailuresByCode[k])
	}
	if len(rep.FailuresByCode) > 0 {
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "connections  %d\n", rep.Connections)
	fmt.Fprintf(w, "elapsed      %s\n", rep.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "rate         %.1f msg/s, %.0f bytes/s\n", rep.MessagesPerSec, rep.BytesPerSec)
	fmt.Fprintf(w, "%-14s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p90", "p99", "max", "mean")
	row := func(name string, s LatencySummary) {
		fmt.Fprintf(w, "%-14s %10.3f %10.3f %10.3f %10.3f %10.3f\n", name,
			latency.Milliseconds(s.P50), latency.Milliseconds(s.P90), latency.Milliseconds(s.P99), latency.Milliseconds(s.Max), latency.Milliseconds(s.Mean))
	}
	row("transaction", rep.Transaction)
	row("data", rep.Data)
	for i, s := range rep.Steps {
		if s.Count > 0 {
			row("  "+StepNames[i], s)
		}
	}
	for _, s := range rep.ErrorSamples {
		fmt.Fprintf(w, "error        %s\n", s)
	}
}

type jsonReport struct {
	Addr           string           `json:"addr"`
	Size           int64            `json:"size"`
	Concurrency    int              `json:"concurrency"`
	Reuse          int              `json:"reuse"`
	Sent           int64            `json:"sent"`
	Failed         int64            `json:"failed"`
	FailuresByCode map[string]int64 `json:"failures_by_code"`
	ErrorSamples   []string         `json:"error_samples"`
	Connections    int64            `json:"connections"`
	ElapsedSeconds float64          `json:"elapsed_s"`
	BytesSent      int64            `json:"bytes_sent"`
	MessagesPerSec float64          `json:"messages_per_s"`
	BytesPerSec    float64          `json:"bytes_per_s"`
	Transaction    latency.JSON     `json:"transaction_latency"`
	Data           latency.JSON     `json:"data_latency"`
	// Steps maps StepNames to their latency, for the steps that ran.
	Steps map[string]latency.JSON `json:"step_latency"`
}

func reportJSON(cfg Config, rep Report) jsonReport {
	samples := rep.ErrorSamples
	if samples == nil {
		samples = []string{}
	}
	steps := map[string]latency.JSON{}
	for i, s := range rep.Steps {
		if s.Count > 0 {
			steps[StepNames[i]] = s.JSON()
		}
	}
	return jsonReport{
		Addr: cfg.Addr, Size: cfg.Size, Concurrency: cfg.Concurrency, Reuse: cfg.Reuse,
		Sent: rep.Sent, Failed: rep.Failed, FailuresByCode: rep.FailuresByCode, ErrorSamples: samples,
		Connections: rep.Connections, ElapsedSeconds: rep.Elapsed.Seconds(), BytesSent: rep.BytesSent,
		MessagesPerSec: rep.MessagesPerSec, BytesPerSec: rep.BytesPerSec,
		Transaction: rep.Transaction.JSON(), Data: rep.Data.JSON(), Steps: steps,
	}
}
