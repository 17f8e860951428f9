package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"postern/policy"
	"postern/server"
)

func runReputation(e *env, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: postern reputation show IP|NETWORK|DOMAIN...
       postern reputation reset IP|NETWORK|DOMAIN...

Explains and resets the history the reputation check keeps (docs/reputation.md):
show   the decayed counts of good and bad outcomes, the score and how it is
       computed, step by step; an address shows its network too;
reset  forgets the history of the address, the network or the domain named
       (an address's network is kept: reset the network to forget it).
It reads the state store the server uses (the statestore setting). The
embedded store is the running server's alone: stop the server first, or
keep the state in Redis (docs/state.md).
`)
	}
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		usage(e.stdout)
		return 0
	case "show", "reset":
	default:
		fmt.Fprintf(e.stderr, "postern reputation: unknown subcommand %q\n", sub)
		usage(e.stderr)
		return 64
	}
	if wantsHelp(args[1:]) {
		usage(e.stdout)
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintf(e.stderr, "postern reputation %s: name an IP address, a network or a domain\n", sub)
		return 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern reputation: configuration:\n%v\n", err)
		return 78
	}
	rep, store, err := server.OpenReputation(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			fmt.Fprintf(e.stderr, "postern reputation: configuration:\n%v\n", err)
			return 78
		}
		fmt.Fprintf(e.stderr, "postern reputation: %v\n", err)
		if strings.Contains(err.Error(), "timeout") {
			fmt.Fprintln(e.stderr, "postern reputation: the running server holds the embedded state store; stop it first, or keep the state in Redis")
		}
		return 75
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := rep.Config()
	status := 0
	for _, target := range args[1:] {
		buckets, err := rep.ParseTarget(target)
		if err != nil {
			fmt.Fprintf(e.stderr, "postern reputation: %v\n", err)
			status = 65
			continue
		}
		if sub == "reset" {
			b := buckets[0]
			if err := rep.Reset(ctx, b); err != nil {
				fmt.Fprintf(e.stderr, "postern reputation: reset %s: %v\n", b, err)
				return 75
			}
			fmt.Fprintf(e.stdout, "%s: history forgotten\n", b)
			continue
		}
		for _, b := range buckets {
			a, err := rep.Assess(ctx, b, time.Now())
			if err != nil {
				fmt.Fprintf(e.stderr, "postern reputation: %s: %v\n", b, err)
				return 75
			}
			fmt.Fprintf(e.stdout, "%s: %s, score %+.2f (weight ×%g in the check's score)\n", b, a.Status, a.Score, rc.Weight(b.Kind))
			for _, line := range rc.Explain(a) {
				fmt.Fprintf(e.stdout, "    %s\n", line)
			}
		}
	}
	return status
}
