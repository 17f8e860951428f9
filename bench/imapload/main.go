// Command imapload is a simple IMAP load generator. It runs a bounded
// number of sessions (or runs for a bounded time) at a given concurrency
// against one host:port — connect, LOGIN, SELECT, UID FETCH 1:* (FLAGS),
// LOGOUT — and reports the latency of each step and sessions per second.
// It only ever connects to the address it is given; see bench/README.md.
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
	"syscall"
	"time"

	"postern/bench/internal/latency"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "imapload: %v\n", err)
		return exitUsage
	}
	rep, err := Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reportJSON(cfg, rep)); err != nil {
			fmt.Fprintf(stderr, "imapload: writing report: %v\n", err)
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

const usageText = `usage: imapload -user NAME [-pass PASSWORD] [flags]

Runs -n IMAP sessions (or runs for -duration) with -c in parallel against
-addr. Each session: connect, LOGIN, SELECT, UID FETCH 1:* (FLAGS), LOGOUT.
Prints sessions/s and latency percentiles per step. Exits 1 if any session
failed, 2 on bad flags.

Flags:
`

func parseFlags(args []string, stderr io.Writer) (Config, bool, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("imapload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	asJSON := false
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "IMAP server `host:port` (the only address dialed)")
	fs.StringVar(&cfg.User, "user", "", "LOGIN user `name`")
	fs.StringVar(&cfg.Pass, "pass", "", "LOGIN `password` (visible to ps; prefer IMAPLOAD_PASS)")
	fs.StringVar(&cfg.Mailbox, "mailbox", cfg.Mailbox, "mailbox to SELECT")
	fs.BoolVar(&cfg.Examine, "examine", false, "EXAMINE (read-only) instead of SELECT")
	fs.Int64Var(&cfg.Sessions, "n", cfg.Sessions, "number of `sessions` (with -duration: an extra cap, if given)")
	fs.IntVar(&cfg.Concurrency, "c", cfg.Concurrency, "`sessions` in parallel")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run for this long instead of a fixed count")
	fs.BoolVar(&cfg.StartTLS, "starttls", false, "use STARTTLS before LOGIN")
	fs.BoolVar(&cfg.ImplicitTLS, "tls", false, "use implicit TLS (port 993 style)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server's certificate")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "limit on each network step")
	fs.DurationVar(&cfg.ProgressInterval, "progress", cfg.ProgressInterval, "interval between progress lines on stderr")
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
		cfg.Sessions = 0
	}
	if cfg.Pass == "" {
		cfg.Pass = os.Getenv("IMAPLOAD_PASS")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, err
	}
	return cfg, asJSON, nil
}

func writeReport(w io.Writer, cfg Config, rep Report) {
	fmt.Fprintf(w, "target       %s (user %s, mailbox %s, concurrency %d)\n", cfg.Addr, cfg.User, cfg.Mailbox, cfg.Concurrency)
	fmt.Fprintf(w, "sessions     %d\n", rep.Sessions)
	fmt.Fprintf(w, "failed       %d", rep.Failed)
	for i, k := range sortedKeys(rep.FailuresByKind) {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(w, "%s%s: %d", sep, k, rep.FailuresByKind[k])
	}
	if len(rep.FailuresByKind) > 0 {
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "messages     %d fetched (FLAGS)\n", rep.Messages)
	fmt.Fprintf(w, "elapsed      %s\n", rep.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "rate         %.1f sessions/s, %.1f messages/s\n", rep.SessionsPerSec, rep.MessagesPerSec)
	fmt.Fprintf(w, "%-12s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p90", "p99", "max", "mean")
	for _, row := range []struct {
		name string
		s    latency.Summary
	}{{"connect", rep.Connect}, {"login", rep.Login}, {"select", rep.Select}, {"fetch", rep.Fetch}, {"logout", rep.Logout}, {"session", rep.Session}} {
		fmt.Fprintf(w, "%-12s %10.3f %10.3f %10.3f %10.3f %10.3f\n", row.name, latency.Milliseconds(row.s.P50),
			latency.Milliseconds(row.s.P90), latency.Milliseconds(row.s.P99), latency.Milliseconds(row.s.Max), latency.Milliseconds(row.s.Mean))
	}
	for _, s := range rep.ErrorSamples {
		fmt.Fprintf(w, "error        %s\n", s)
	}
}

type jsonReport struct {
	Addr           string           `json:"addr"`
	Concurrency    int              `json:"concurrency"`
	Sessions       int64            `json:"sessions"`
	Failed         int64            `json:"failed"`
	FailuresByKind map[string]int64 `json:"failures_by_kind"`
	ErrorSamples   []string         `json:"error_samples"`
	Messages       int64            `json:"messages"`
	ElapsedSeconds float64          `json:"elapsed_s"`
	SessionsPerSec float64          `json:"sessions_per_s"`
	MessagesPerSec float64          `json:"messages_per_s"`
	Connect        latency.JSON     `json:"connect_latency"`
	Login          latency.JSON     `json:"login_latency"`
	Select         latency.JSON     `json:"select_latency"`
	Fetch          latency.JSON     `json:"fetch_latency"`
	Logout         latency.JSON     `json:"logout_latency"`
	Session        latency.JSON     `json:"session_latency"`
}

func reportJSON(cfg Config, rep Report) jsonReport {
	samples := rep.ErrorSamples
	if samples == nil {
		samples = []string{}
	}
	return jsonReport{
		Addr: cfg.Addr, Concurrency: cfg.Concurrency, Sessions: rep.Sessions, Failed: rep.Failed,
		FailuresByKind: rep.FailuresByKind, ErrorSamples: samples, Messages: rep.Messages,
		ElapsedSeconds: rep.Elapsed.Seconds(), SessionsPerSec: rep.SessionsPerSec, MessagesPerSec: rep.MessagesPerSec,
		Connect: rep.Connect.JSON(), Login: rep.Login.JSON(), Select: rep.Select.JSON(), Fetch: rep.Fetch.JSON(),
		Logout: rep.Logout.JSON(), Session: rep.Session.JSON(),
	}
}
