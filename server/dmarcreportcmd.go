package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"postern/filters/dmarc/report"
	"postern/policy"
)

// DMARCReportUsage is the help of `postern dmarc report`.
const DMARCReportUsage = `Usage: postern dmarc report --preview [--domain DOMAIN] [--period current|last]
       postern dmarc report --send [--domain DOMAIN] [--period current|last]

DMARC aggregate reports (RFC 7489 section 7.2; docs/dmarc.md, REPORTS).
--preview  prints the XML report of each policy domain for the period, as
           it would be sent (the report ID differs at each run), on
           standard output, and on standard error a line per domain
           saying where it would go;
--send     builds the reports of the period now and queues them to each
           mailto: rua address, with the section 7.1 check for addresses in
           another domain; the running server does it, over its control
           socket (DATADIR/control.sock). Sending does not mark the period
           as reported: the server still sends its regular report when the
           period ends.
--domain   only this policy domain;
--period   current (the period in progress, so far; the default of
           --preview) or last (the last finished period; the default of
           --send).
The period is the dmarcreportinterval setting (a UTC day by default).
`

// RunDMARCReport is the work of `postern dmarc report ARGS` with sender
// (whose Mail may be nil when only previews can be made), printing as the
// command does and returning its exit status.
func RunDMARCReport(ctx context.Context, sender *report.Sender, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern dmarc report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	preview := fs.Bool("preview", false, "")
	send := fs.Bool("send", false, "")
	domain := fs.String("domain", "", "")
	period := fs.String("period", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, DMARCReportUsage)
			return 0
		}
		fmt.Fprintf(stderr, "postern dmarc report: %v\n%s", err, DMARCReportUsage)
		return 64
	}
	if fs.NArg() > 0 || *preview == *send {
		fmt.Fprintf(stderr, "postern dmarc report: say --preview or --send\n%s", DMARCReportUsage)
		return 64
	}
	if *period == "" {
		*period = "current"
		if *send {
			*period = "last"
		}
	}
	var begin, end time.Time
	switch *period {
	case "current":
		begin, end = sender.Period(0)
	case "last":
		begin, end = sender.Period(-1)
	default:
		fmt.Fprintf(stderr, "postern dmarc report: --period: want current or last, got %q\n", *period)
		return 64
	}
	if *send {
		if sender.Mail == nil {
			fmt.Fprintln(stderr, "postern dmarc report: --send needs the running server")
			return 69
		}
		n, err := sender.SendPeriod(ctx, begin, end, *domain)
		if err != nil {
			fmt.Fprintf(stderr, "postern dmarc report: %v\n", err)
			return 74
		}
		fmt.Fprintf(stdout, "%d report message(s) queued for %s to %s UTC (see the log for the addresses refused or skipped)\n", n, begin.Format("2006-01-02 15:04"), end.Format("2006-01-02 15:04"))
		return 0
	}
	reports, err := sender.Build(begin, end, *domain)
	if err != nil {
		fmt.Fprintf(stderr, "postern dmarc report: %v\n", err)
		return 74
	}
	if len(reports) == 0 {
		fmt.Fprintf(stderr, "postern dmarc report: nothing recorded for %s to %s UTC\n", begin.Format("2006-01-02 15:04"), end.Format("2006-01-02 15:04"))
		return 1
	}
	for _, dr := range reports {
		doc, err := sender.Reporter.Feedback(dr, report.ReportID(dr, sender.Reporter.Domain)).XML()
		if err != nil {
			fmt.Fprintf(stderr, "postern dmarc report: %s: %v\n", dr.Domain, err)
			return 70
		}
		// The XML alone on standard output, for xmllint and the like; what
		// it is and where it would go on standard error.
		fmt.Fprintf(stderr, "%s: %d messages, %d records; to %s as %s\n", dr.Domain, dr.Messages, len(dr.Records), strings.Join(dr.RUA, ", "), sender.Reporter.Filename(dr))
		stdout.Write(doc)
	}
	return 0
}

// OfflineDMARCSender is the sender `postern dmarc report --preview` uses
// without a running server: it reads the rows and sends nothing.
func OfflineDMARCSender(cfg *policy.Config) *report.Sender {
	m := &MTA{log: slog.New(slog.DiscardHandler)}
	s := m.DMARCSender(cfg)
	s.Dir = filepath.Join(cfg.DataDir, "state", "dmarc")
	s.Mail = nil
	return s
}

// controlDMARCReport runs `postern dmarc report ARGS` in the server.
func (s *Server) controlDMARCReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := s.Config()
	return RunDMARCReport(ctx, s.mta.DMARCSender(cfg), args, stdout, stderr)
}
