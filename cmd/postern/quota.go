package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
)

// quotaReport is one account's line of `postern quota get`.
type quotaReport struct {
	User          string `json:"user"`
	Maildir       string `json:"maildir"`
	Bytes         int64  `json:"bytes"`
	BytesLimit    int64  `json:"bytes_limit"` // 0: no limit
	Messages      int64  `json:"messages"`
	MessagesLimit int64  `json:"messages_limit"`
	Percent       int    `json:"percent"`
	Error         string `json:"error,omitempty"`
}

// runQuota is doveadm quota get and recalc for Maildir++ quotas.
func runQuota(e *env, args []string) int {
	if len(args) == 0 || wantsHelp(args) || args[0] == "help" {
		w := e.stderr
		code := 64
		if len(args) > 0 {
			w, code = e.stdout, 0
		}
		fmt.Fprint(w, quotaUsage)
		return code
	}
	sub := args[0]
	if sub != "get" && sub != "recalc" {
		fmt.Fprintf(e.stderr, "postern quota: unknown subcommand %q\n%s", sub, quotaUsage)
		return 64
	}
	fs := newFlags(e, "quota "+sub, "[--json] -A | USER...", quotaDescription)
	all := fs.Bool("A", false, "every account of every authentication module")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if code, done := parseFlags(e, fs, args[1:]); done {
		return code
	}
	if *all == (fs.NArg() > 0) {
		fmt.Fprintf(e.stderr, "postern quota %s: name the accounts, or -A for all of them\n", sub)
		return 64
	}
	svc, closeAll, code := authService(e, "quota", slog.LevelWarn)
	if svc == nil {
		return code
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	var reports []quotaReport
	status := 0
	done := 0
	each := func(a *auth.Account) error {
		r := accountQuota(a, sub == "recalc")
		if r.Error != "" {
			status = 1
		}
		reports = append(reports, r)
		if done++; *all && done%100 == 0 {
			fmt.Fprintf(e.stderr, "postern quota %s: %d accounts...\n", sub, done)
		}
		return nil
	}
	if *all {
		if err := svc.Enumerate(ctx, each); err != nil {
			fmt.Fprintf(e.stderr, "postern quota %s: listing the accounts: %v\n", sub, err)
			status = 1
		}
	} else {
		for _, name := range fs.Args() {
			a, err := svc.Lookup(ctx, name)
			switch {
			case errors.Is(err, auth.ErrNoSuchUser):
				fmt.Fprintf(e.stderr, "postern quota %s: %s: no such account\n", sub, name)
				status = 67
				continue
			case err != nil:
				fmt.Fprintf(e.stderr, "postern quota %s: %s: %v\n", sub, name, err)
				status = 75
				continue
			}
			each(a)
		}
	}
	if *asJSON {
		if reports == nil {
			reports = []quotaReport{}
		}
		json.NewEncoder(e.stdout).Encode(reports)
		return status
	}
	printQuota(e, reports)
	return status
}

// accountQuota reads (or, for recalc, recounts) one account's Maildir
// quota. The account's own quota field wins over maildirsize's first
// line, as at delivery (MAILDIRQUOTA).
func accountQuota(a *auth.Account, recalc bool) quotaReport {
	r := quotaReport{User: a.Name, Maildir: a.MaildirPath()}
	md, err := maildir.OpenAs(r.Maildir, a.UID, a.GID)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	var limit, used maildir.Quota
	if a.Quota != "" {
		q, perr := maildir.ParseQuota(a.Quota)
		if perr != nil {
			r.Error = fmt.Sprintf("the account's quota %q: %v", a.Quota, perr)
			return r
		}
		if have, _ := md.QuotaLimit(); have != q || recalc {
			// As delivery would: maildirsize takes the account's quota.
			err = md.SetQuota(q)
		}
		if err == nil {
			limit, used, err = md.Quota()
		}
	} else if recalc {
		limit, used, err = md.RecalculateQuota()
	} else {
		limit, used, err = md.Quota()
	}
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Bytes, r.BytesLimit, r.Messages, r.MessagesLimit = used.Bytes, limit.Bytes, used.Messages, limit.Messages
	r.Percent = limit.Percent(used)
	return r
}

func printQuota(e *env, reports []quotaReport) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tTYPE\tVALUE\tLIMIT\t%")
	limitText := func(n int64) string {
		if n <= 0 {
			return "-"
		}
		return strconv.FormatInt(n, 10)
	}
	for _, r := range reports {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tERROR\t%s\t\t\n", r.User, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\tSTORAGE\t%d\t%s\t%d\n", r.User, r.Bytes, limitText(r.BytesLimit), percentOf(r.Bytes, r.BytesLimit))
		fmt.Fprintf(tw, "%s\tMESSAGE\t%d\t%s\t%d\n", r.User, r.Messages, limitText(r.MessagesLimit), percentOf(r.Messages, r.MessagesLimit))
	}
	tw.Flush()
}

func percentOf(n, limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	return n * 100 / limit
}

const quotaUsage = `Usage: postern quota get [--json] -A | USER...
       postern quota recalc [--json] -A | USER...

` + quotaDescription

const quotaDescription = `Shows and recounts Maildir++ quotas, as doveadm quota get and recalc do for
Dovecot. For each account (by name, or -A: every account of every
authentication module, with a progress line on standard error every 100):
the bytes and messages its Maildir holds (every folder but Trash, messages
marked deleted not counted, as Courier counts them) against its limits, in
bytes (STORAGE) and messages (MESSAGE); "-" is no limit.

The limit is the account's quota field (userdb quota=, MAILDIRQUOTA) when it
has one, else the first line of the Maildir's maildirsize (maildirmake -q);
get applies the account's quota to maildirsize as a delivery would. get
reads the usage from maildirsize, recounting it when Courier's rules say it
is stale; recalc always recounts and rewrites maildirsize (when there is a
quota), for a maildirsize that drifted after messages were removed behind
the servers' backs. Files are written as the account's owner.

Exit status: 0; 1 when an account's Maildir could not be read (its line says
ERROR); 67 for an account that does not exist; 64 for a usage error.
`
