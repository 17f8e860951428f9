package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"postern/policy"
	"postern/server"
)

// runDMARC is `postern dmarc report ...`: DMARC aggregate reports.
func runDMARC(e *env, args []string) int {
	usage := func(w io.Writer) { io.WriteString(w, server.DMARCReportUsage) }
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(e.stdout)
		return 0
	case "report":
	default:
		fmt.Fprintf(e.stderr, "postern dmarc: unknown subcommand %q\n", args[0])
		usage(e.stderr)
		return 64
	}
	if wantsHelp(args[1:]) {
		usage(e.stdout)
		return 0
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern dmarc report: configuration:\n%v\n", err)
		return 78
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	// The running server owns the queue: it sends, and previews as well
	// (with the settings it runs with).
	if code, done := askServer(ctx, e, cfg, "postern dmarc report", server.ControlRequest{Command: "dmarcreport", Args: args[1:]}); done {
		return code
	}
	return server.RunDMARCReport(ctx, server.OfflineDMARCSender(cfg), args[1:], e.stdout, e.stderr)
}
