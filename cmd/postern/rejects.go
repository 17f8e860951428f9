package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"postern/filters/rejectlog"
	"postern/policy"
)

// rejectLogPath is where the server keeps the rejection log.
func rejectLogPath(cfg *policy.Config) string {
	return filepath.Join(cfg.DataDir, "state", "rejects.jsonl")
}

func runRejects(e *env, args []string) int {
	fs := newFlags(e, "rejects", "[--since WHEN] [--until WHEN] [--client IP] [--from ADDR] [--rcpt ADDR] [--filter NAME] [--grep TEXT] [-n N] [--json]", `
Lists the mail refused during SMTP sessions, newest last: when, which client
and HELO, sender and recipients, the reply the client saw, which check
decided, and every check's result and score. Answers "why was this mail
refused?" in one command. All conditions must hold; text matches are
case-insensitive substrings. See docs/rejects.md.`)
	since := fs.String("since", "", "only records from `WHEN` on: a duration back from now (1h, 30m) or a UTC time (2026-11-25 14:30)")
	until := fs.String("until", "", "only records up to `WHEN`, as --since")
	q := rejectlog.Query{}
	fs.StringVar(&q.Client, "client", "", "client `address` (substring)")
	fs.StringVar(&q.From, "from", "", "envelope `sender` (substring)")
	fs.StringVar(&q.Rcpt, "rcpt", "", "a `recipient` (substring)")
	fs.StringVar(&q.Filter, "filter", "", "a check that took part (spf, dnsbl, greylist, ...)")
	fs.StringVar(&q.Text, "grep", "", "`text` anywhere in the record")
	fs.IntVar(&q.Limit, "n", 50, "show the newest `N` (0 = all)")
	asJSON := fs.Bool("json", false, "one JSON record per line")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern rejects: configuration:\n%v\n", err)
		return 78
	}
	now := time.Now()
	for _, b := range []struct {
		flag, value string
		t           *time.Time
	}{{"since", *since, &q.Since}, {"until", *until, &q.Until}} {
		if *b.t, err = rejectlog.ParseTimeBound(b.value, now); err != nil {
			fmt.Fprintf(e.stderr, "postern rejects: --%s: %v\n", b.flag, err)
			return 64
		}
	}
	recs, err := rejectlog.Search(rejectLogPath(cfg), q)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern rejects: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, r := range recs {
			enc.Encode(r)
		}
		return 0
	}
	if len(recs) == 0 {
		fmt.Fprintln(e.stdout, "no refusals match")
		return 0
	}
	for _, r := range recs {
		from := r.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(e.stdout, "%s  %s  helo=%s  from=%s  to=%s\n", r.Time.Local().Format("2006-01-02 15:04:05"), r.Client, r.HELO, from, strings.Join(r.Rcpts, ","))
		fmt.Fprintf(e.stdout, "    %s: %s", r.Stage, r.Reply)
		if r.Decider != "" {
			fmt.Fprintf(e.stdout, "  (decided by %s, score %.1f)", r.Decider, r.Score)
		}
		fmt.Fprintln(e.stdout)
		w := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		for _, fr := range r.Results {
			fmt.Fprintf(w, "      %s\t%s\t%+.1f\t%s\n", fr.Filter, fr.Verdict, fr.Score, fr.Reason)
		}
		w.Flush()
	}
	return 0
}
