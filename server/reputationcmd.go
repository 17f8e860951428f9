package server

import (
	"context"
	"fmt"
	"io"
	"time"

	"postern/filters/reputation"
)

// RunReputation is the work of `postern reputation show|reset TARGET...`
// on rep, printing as the command does and returning its exit status. The
// command runs it in its own process when it can open the state store,
// and the running server runs it for the command over the control socket
// when the server holds the store (controlReputation).
func RunReputation(ctx context.Context, rep *reputation.Reputation, sub string, targets []string, stdout, stderr io.Writer) int {
	if sub != "show" && sub != "reset" {
		fmt.Fprintf(stderr, "postern reputation: unknown subcommand %q\n", sub)
		return 64
	}
	rc := rep.Config()
	status := 0
	for _, target := range targets {
		buckets, err := rep.ParseTarget(target)
		if err != nil {
			fmt.Fprintf(stderr, "postern reputation: %v\n", err)
			status = 65
			continue
		}
		if sub == "reset" {
			b := buckets[0]
			if err := rep.Reset(ctx, b); err != nil {
				fmt.Fprintf(stderr, "postern reputation: reset %s: %v\n", b, err)
				return 75
			}
			fmt.Fprintf(stdout, "%s: history forgotten\n", b)
			continue
		}
		for _, b := range buckets {
			a, err := rep.Assess(ctx, b, time.Now())
			if err != nil {
				fmt.Fprintf(stderr, "postern reputation: %s: %v\n", b, err)
				return 75
			}
			fmt.Fprintf(stdout, "%s: %s, score %+.2f (weight ×%g in the check's score)\n", b, a.Status, a.Score, rc.Weight(b.Kind))
			for _, line := range rc.Explain(a) {
				fmt.Fprintf(stdout, "    %s\n", line)
			}
		}
	}
	return status
}
