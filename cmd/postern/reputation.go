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
It reads the state store the server uses (the statestore setting). When
the server is running, the command asks it over its control socket
(DATADIR/control.sock) to do the work, since the embedded store is open in
the server alone; otherwise it opens the store itself.
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A running server holds the embedded store: it does the work.
	if code, done := askServer(ctx, e, cfg, "postern reputation", server.ControlRequest{Command: "reputation", Args: args}); done {
		return code
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
			fmt.Fprintln(e.stderr, "postern reputation: another process holds the embedded state store (a server without a control socket?)")
		}
		return 75
	}
	defer store.Close()
	return server.RunReputation(ctx, rep, sub, args[1:], e.stdout, e.stderr)
}

// askServer has the running server carry out req over its control socket
// and passes on what it printed and its exit status (done). With no
// server running, done is false: the command does the work itself.
func askServer(ctx context.Context, e *env, cfg *policy.Config, cmd string, req server.ControlRequest) (code int, done bool) {
	reply, err := server.Control(ctx, cfg.DataDir, req)
	switch {
	case err == nil:
		io.WriteString(e.stdout, reply.Stdout)
		io.WriteString(e.stderr, reply.Stderr)
		return reply.Status, true
	case !errors.Is(err, server.ErrNoServer):
		fmt.Fprintf(e.stderr, "%s: %v\n", cmd, err)
		return 75, true
	}
	return 0, false
}
