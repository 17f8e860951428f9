package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/userdb"
	"postern/gateway"
	"postern/gateway/delivery"
	"postern/gateway/queue"
	"postern/policy"
	"postern/policy/access"
	"postern/policy/aliases"
	"postern/server"
)

const queueUsage = `Usage: postern queue list [--from TEXT] [--to TEXT] [--json]
       postern queue show ID [--header | --body | --message]
       postern queue retry [ID... | ALL | --from TEXT | --to TEXT]
       postern queue delete ID... | ALL | --from TEXT | --to TEXT
       postern queue bounce ID... | ALL | --from TEXT | --to TEXT
       postern queue shape [--senders] [--top N]
       postern queue hold ID... | ALL | --from TEXT | --to TEXT
       postern queue release ID... | ALL | --from TEXT | --to TEXT

list    every queued message (or those selected), with each recipient's
        state; --json prints one JSON object per message
show    one message's envelope and delivery history; with --header,
        --body or --message, that part of the stored message (postcat)
retry   retry now; without a selection, every message
delete  remove messages silently (no DSN)
bounce  give up now and return the messages to their senders
shape   pending recipients by destination domain (or sender domain with
        --senders) and age, as Postfix's qshape: where mail is piling up
hold    keep messages in the queue without delivering them (no attempts,
        no delay notices, no expiry) until released; "list" shows them
        with "!" after the ID, as Postfix's mailq does
release take messages off hold and try them now

A selection is message IDs (an ID "-" reads more from standard input, the
first word of each line, as "postern queue list --json | jq" or Postfix's
postsuper -d - expect), ALL, or --from/--to: the messages whose sender, or
one of whose recipients, contains TEXT (case-insensitive; "<>" is the null
sender). Bulk changes report their progress on standard error.

Works while the server runs: it notices changes within about a second.
"mailq" (or "postern sendmail -bp") lists the queue in Postfix's format, for
the tools that parse it. See docs/mailq.md.
`

// queueSelection is the messages a queue command acts on.
type queueSelection struct {
	ids      []string
	all      bool
	from, to string
	part     string // show: "header", "body" or "message"; "" for the envelope
}

func (q queueSelection) empty() bool { return len(q.ids) == 0 && !q.all && q.from == "" && q.to == "" }

// matches reports whether m is selected by the --from and --to filters.
func (q queueSelection) matches(m queue.Summary) bool {
	if q.from != "" {
		from := m.From
		if from == "" {
			from = "<>"
		}
		if !strings.Contains(strings.ToLower(from), strings.ToLower(q.from)) {
			return false
		}
	}
	if q.to != "" {
		return slices.ContainsFunc(m.Rcpts, func(r delivery.Recipient) bool {
			return strings.Contains(strings.ToLower(r.Addr), strings.ToLower(q.to))
		})
	}
	return true
}

// parseQueueArgs reads IDs, ALL, "-" (IDs from stdin), --from, --to and
// --json in any order.
func parseQueueArgs(e *env, cmd string, args []string) (sel queueSelection, asJSON bool, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if k, v, found := strings.Cut(a, "="); found && strings.HasPrefix(k, "-") {
				return v
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			fmt.Fprintf(e.stderr, "postern queue %s: %s needs a value\n", cmd, a)
			ok = false
			return ""
		}
		ok = true
		switch name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); {
		case a == "-":
			sc := bufio.NewScanner(e.stdin)
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) > 0 {
					sel.ids = append(sel.ids, strings.TrimRight(f[0], "*!"))
				}
			}
		case strings.HasPrefix(a, "-") && name == "from":
			sel.from = value()
		case strings.HasPrefix(a, "-") && name == "to":
			sel.to = value()
		case strings.HasPrefix(a, "-") && name == "json":
			asJSON = true
		case strings.HasPrefix(a, "-") && (name == "header" || name == "body" || name == "message") && cmd == "show":
			sel.part = name
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(e.stderr, "postern queue %s: unknown option %s (see --help)\n", cmd, a)
			return sel, false, false
		case a == "ALL":
			sel.all = true
		default:
			sel.ids = append(sel.ids, a)
		}
		if !ok {
			return sel, false, false
		}
	}
	return sel, asJSON, true
}

func runQueue(e *env, args []string) int {
	if len(args) > 0 && args[0] == "shape" {
		return runQueueShape(e, args[1:])
	}
	if len(args) == 0 || slices.ContainsFunc(args, func(a string) bool { return wantsHelp([]string{a}) }) || args[0] == "help" {
		fmt.Fprint(e.stdout, queueUsage)
		if len(args) == 0 {
			return 64
		}
		return 0
	}
	cmd := args[0]
	sel, asJSON, ok := parseQueueArgs(e, cmd, args[1:])
	if !ok {
		return 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern queue: configuration:\n%v\n", err)
		return 78
	}
	dir := filepath.Join(cfg.DataDir, "queue")
	var act func(dir, id string) error
	switch cmd {
	case "list":
		return printQueue(e, dir, sel, asJSON)
	case "show":
		if len(sel.ids) != 1 {
			fmt.Fprintf(e.stderr, "postern queue show: give one message ID (see 'postern queue list')\n")
			return 64
		}
		if sel.part != "" {
			return showMessage(e, dir, sel.ids[0], sel.part)
		}
		env, err := queue.Show(dir, sel.ids[0])
		if err != nil {
			fmt.Fprintf(e.stderr, "postern queue show: %v\n", err)
			return 1
		}
		printEnvelope(e.stdout, env)
		return 0
	case "retry":
		if sel.empty() {
			sel.all = true // as before: retry everything
		}
		act = queue.Retry
	case "delete":
		act = queue.Delete
	case "bounce":
		act = queue.Bounce
	case "hold":
		act = queue.Hold
	case "release":
		act = queue.Release
	default:
		fmt.Fprintf(e.stderr, "postern queue: unknown subcommand %q\n%s", cmd, queueUsage)
		return 64
	}
	if sel.empty() {
		fmt.Fprintf(e.stderr, "postern queue %s: give message IDs, ALL, --from or --to (see 'postern queue list')\n", cmd)
		return 64
	}
	ids := sel.ids
	if sel.all || sel.from != "" || sel.to != "" {
		msgs, err := queue.List(dir)
		if err != nil {
			fmt.Fprintf(e.stderr, "postern queue %s: %v\n", cmd, err)
			return 1
		}
		for _, m := range msgs {
			if sel.matches(m) {
				ids = append(ids, m.ID)
			}
		}
	}
	return queueBulk(e, cmd, dir, ids, act)
}

// queueBulk applies act to each message, reporting progress on standard
// error when there are many, and the count at the end.
func queueBulk(e *env, cmd, dir string, ids []string, act func(dir, id string) error) int {
	failed := 0
	start := time.Now()
	last := start
	for i, id := range ids {
		if err := act(dir, id); err != nil {
			fmt.Fprintf(e.stderr, "postern queue %s: %v\n", cmd, err)
			failed++
		}
		if now := time.Now(); len(ids) >= 100 && now.Sub(last) >= time.Second {
			last = now
			fmt.Fprintf(e.stderr, "postern queue %s: %d of %d (%.0f/s)\n", cmd, i+1, len(ids), float64(i+1)/now.Sub(start).Seconds())
		}
	}
	done := len(ids) - failed
	fmt.Fprintf(e.stdout, "%s: %d message(s)", cmd, done)
	if len(ids) == 1 && failed == 0 {
		fmt.Fprintf(e.stdout, " (%s)", ids[0])
	}
	fmt.Fprintln(e.stdout)
	if failed > 0 {
		return 1
	}
	return 0
}

func runMailq(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: mailq

Lists the queue in Postfix's mailq format, which monitoring tools parse
(check_mailq -M postfix): one block per message with its pending
recipients and the reason they wait, then "-- N Kbytes in N Requests.".
"postern queue list" shows more (every recipient's state, --json).
`)
		return 0
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "mailq: configuration:\n%v\n", err)
		return 78
	}
	msgs, err := queue.List(filepath.Join(cfg.DataDir, "queue"))
	if err != nil {
		fmt.Fprintf(e.stderr, "mailq: %v\n", err)
		return 1
	}
	printMailq(e.stdout, msgs)
	return 0
}

// printMailq writes msgs as Postfix's showq does: a header line; per
// message its ID (with "!" when held), size, arrival time and sender
// (MAILER-DAEMON for the null sender), then each reason in parentheses
// followed by the pending recipients it applies to, and a blank line;
// at the end "-- N Kbytes in N Requests.", or "Mail queue is empty".
func printMailq(w io.Writer, msgs []queue.Summary) {
	if len(msgs) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	fmt.Fprintln(w, "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------")
	var total int64
	for _, m := range msgs {
		total += m.Size
		mark := ' '
		if m.Held {
			mark = '!'
		}
		from := m.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		fmt.Fprintf(w, "%-10s%c %8d %20.20s  %s\n", m.ID, mark, m.Size, m.Received.Local().Format("Mon Jan _2 15:04:05"), from)
		var reasons []string
		byReason := map[string][]string{}
		for _, r := range m.Rcpts {
			if r.Status != delivery.StatusPending {
				continue
			}
			if _, seen := byReason[r.LastResult]; !seen {
				reasons = append(reasons, r.LastResult)
			}
			byReason[r.LastResult] = append(byReason[r.LastResult], r.Addr)
		}
		for _, reason := range reasons {
			if reason != "" {
				fmt.Fprintf(w, "(%s)\n", oneLineText(reason))
			}
			for _, a := range byReason[reason] {
				fmt.Fprintf(w, "%41s%s\n", "", a)
			}
		}
		fmt.Fprintln(w)
	}
	plural := "s"
	if len(msgs) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(msgs), plural)
}

// oneLineText folds a reason's line breaks into spaces.
func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var statusNames = map[delivery.Status]string{delivery.StatusPending: "pending", delivery.StatusDelivered: "delivered", delivery.StatusFailed: "failed"}

// printQueue lists the queue in the spirit of mailq: one block per message,
// one line per recipient with its state and last result.
func printQueue(e *env, dir string, sel queueSelection, asJSON bool) int {
	all, err := queue.List(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern queue list: %v\n", err)
		return 1
	}
	var msgs []queue.Summary
	for _, m := range all {
		if sel.matches(m) && (len(sel.ids) == 0 || slices.Contains(sel.ids, m.ID)) {
			msgs = append(msgs, m)
		}
	}
	if asJSON {
		return printQueueJSON(e, msgs)
	}
	if len(msgs) == 0 && len(all) > 0 {
		fmt.Fprintf(e.stdout, "-- 0 of %d message(s) selected\n", len(all))
		return 0
	}
	if len(msgs) == 0 {
		fmt.Fprintln(e.stdout, "Mail queue is empty")
		return 0
	}
	now := time.Now()
	w := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSIZE\tAGE\tFROM")
	for _, m := range msgs {
		from := m.From
		if from == "" {
			from = "<>"
		}
		id := m.ID
		if m.Held {
			id += "!" // as Postfix's mailq marks the hold queue
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", id, m.Size, m.Age(now).Round(time.Second), from)
		if m.Held && m.Quarantine != "" {
			fmt.Fprintf(w, "  quarantined\t\t\t%s\n", m.Quarantine)
		}
		for _, r := range m.Rcpts {
			line := fmt.Sprintf("  %s\t%s\tattempts %d", r.Addr, statusNames[r.Status], r.Attempts)
			if r.Status == delivery.StatusPending && !r.NextAttempt.IsZero() {
				line += fmt.Sprintf(", next in %s", r.NextAttempt.Sub(now).Round(time.Second))
			}
			if r.LastResult != "" {
				line += "\t" + r.LastResult
			}
			fmt.Fprintln(w, line)
		}
	}
	w.Flush()
	fmt.Fprintf(e.stdout, "-- %d message(s)\n", len(msgs))
	return 0
}

// queueJSON is one message of "postern queue list --json", one object per
// line (as Postfix's postqueue -j).
type queueJSON struct {
	ID              string          `json:"id"`
	From            string          `json:"from"`
	Received        time.Time       `json:"received"`
	Size            int64           `json:"size"`
	BounceRequested bool            `json:"bounce_requested,omitempty"`
	Held            bool            `json:"held,omitempty"`
	Quarantine      string          `json:"quarantine,omitempty"`
	Recipients      []queueRcptJSON `json:"recipients"`
}

type queueRcptJSON struct {
	Address     string     `json:"address"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	LastResult  string     `json:"last_result,omitempty"`
}

func printQueueJSON(e *env, msgs []queue.Summary) int {
	enc := json.NewEncoder(e.stdout)
	for _, m := range msgs {
		out := queueJSON{ID: m.ID, From: m.From, Received: m.Received, Size: m.Size, BounceRequested: m.BounceRequested, Held: m.Held, Quarantine: m.Quarantine}
		for _, r := range m.Rcpts {
			rj := queueRcptJSON{Address: r.Addr, Status: statusNames[r.Status], Attempts: r.Attempts, LastResult: r.LastResult}
			if r.Status == delivery.StatusPending && !r.NextAttempt.IsZero() {
				next := r.NextAttempt
				rj.NextAttempt = &next
			}
			out.Recipients = append(out.Recipients, rj)
		}
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(e.stderr, "postern queue list: %v\n", err)
			return 1
		}
	}
	return 0
}

// shapeBuckets are qshape's age columns, in minutes: a recipient counts in
// the first bucket its message's age is under; the last column is older.
var shapeBuckets = []int{5, 10, 20, 40, 80, 160, 320, 640, 1280}

func runQueueShape(e *env, args []string) int {
	fs := newFlags(e, "queue shape", "[--senders] [--top N]", `
Counts the pending recipients in the queue by destination domain (with
--senders, by the sender's domain) and by their message's age in minutes,
as Postfix's qshape does: one line per domain, most first, after a TOTAL
line. Each column counts what is younger than its heading and older than
the one before; the last, what is older than 1280 minutes.`)
	senders := fs.Bool("senders", false, "count by the sender's domain instead of the recipient's")
	top := fs.Int("top", 20, "show the `N` largest domains")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern queue shape: configuration:\n%v\n", err)
		return 78
	}
	msgs, err := queue.List(filepath.Join(cfg.DataDir, "queue"))
	if err != nil {
		fmt.Fprintf(e.stderr, "postern queue shape: %v\n", err)
		return 1
	}
	printShape(e.stdout, msgs, *senders, *top, time.Now())
	return 0
}

// printShape writes qshape's table for msgs.
func printShape(w io.Writer, msgs []queue.Summary, bySender bool, top int, now time.Time) {
	cols := len(shapeBuckets) + 1
	counts := map[string][]int{}
	total := make([]int, cols)
	domainOf := func(addr string) string {
		if at := strings.LastIndexByte(addr, '@'); at >= 0 {
			return strings.ToLower(addr[at+1:])
		}
		if addr == "" {
			return "MAILER-DAEMON"
		}
		return addr
	}
	for _, m := range msgs {
		age := int(m.Age(now) / time.Minute)
		col := len(shapeBuckets)
		for i, b := range shapeBuckets {
			if age < b {
				col = i
				break
			}
		}
		for _, r := range m.Rcpts {
			if r.Status != delivery.StatusPending {
				continue
			}
			d := domainOf(r.Addr)
			if bySender {
				d = domainOf(m.From)
			}
			if counts[d] == nil {
				counts[d] = make([]int, cols)
			}
			counts[d][col]++
			total[col]++
		}
	}
	sum := func(c []int) (n int) {
		for _, v := range c {
			n += v
		}
		return n
	}
	domains := slices.Collect(maps.Keys(counts))
	sort.Slice(domains, func(i, j int) bool {
		a, b := sum(counts[domains[i]]), sum(counts[domains[j]])
		if a != b {
			return a > b
		}
		return domains[i] < domains[j]
	})
	if top > 0 && len(domains) > top {
		domains = domains[:top]
	}
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\tT\t")
	for _, b := range shapeBuckets {
		fmt.Fprintf(tw, "%d\t", b)
	}
	fmt.Fprintf(tw, "%d+\t\n", shapeBuckets[len(shapeBuckets)-1])
	row := func(name string, c []int) {
		fmt.Fprintf(tw, "%s\t%d\t", name, sum(c))
		for _, v := range c {
			fmt.Fprintf(tw, "%d\t", v)
		}
		fmt.Fprintln(tw)
	}
	row("TOTAL", total)
	for _, d := range domains {
		row(d, counts[d])
	}
	tw.Flush()
}

// showMessage prints the stored message of id, or its header or body
// (Postfix's postcat -h, -b), as it is kept.
func showMessage(e *env, dir, id, part string) int {
	f, err := queue.OpenMessage(dir, id)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern queue show: %v\n", err)
		return 1
	}
	defer f.Close()
	br := bufio.NewReader(f)
	inHeader := true
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			show := part == "message" || (part == "header") == inHeader
			if inHeader && len(bytes.TrimRight(line, "\r\n")) == 0 {
				inHeader, show = false, part == "message"
			}
			if show {
				e.stdout.Write(line)
			}
		}
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "postern queue show: %v\n", err)
			return 1
		}
	}
}

func printEnvelope(w io.Writer, env *delivery.Envelope) {
	fmt.Fprintf(w, "ID:        %s\nFrom:      <%s>\nReceived:  %s\n", env.ID, env.From, env.Received.Format(time.RFC1123Z))
	if env.AuthUser != "" {
		fmt.Fprintf(w, "Auth user: %s\n", env.AuthUser)
	}
	fmt.Fprintf(w, "Client:    %s (HELO %s)\n", env.ClientIP, env.ClientHELO)
	if env.EnvID != "" || env.Ret != "" {
		fmt.Fprintf(w, "DSN:       ENVID=%s RET=%s\n", env.EnvID, env.Ret)
	}
	if env.Quarantine != "" {
		fmt.Fprintf(w, "Quarantine: %s (held until released)\n", env.Quarantine)
	}
	for _, r := range env.Rcpts {
		fmt.Fprintf(w, "Recipient: %s  %s  attempts=%d", r.Addr, statusNames[r.Status], r.Attempts)
		if !r.LastAttempt.IsZero() {
			fmt.Fprintf(w, " last=%s", r.LastAttempt.Format(time.RFC3339))
		}
		if !r.NextAttempt.IsZero() && r.Status == delivery.StatusPending {
			fmt.Fprintf(w, " next=%s", r.NextAttempt.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		if r.LastResult != "" {
			fmt.Fprintf(w, "           %s\n", r.LastResult)
		}
	}
}

func runMakealiases(e *env, args []string) int {
	return aliases.MakealiasesMain(args, e.stdout, e.stderr, e.configDir)
}

// gatewayHandle is what sendmail needs of a Postern installation, opened
// in this process: the MTA (router, local delivery, queue for Enqueue).
type gatewayHandle struct {
	router *gateway.Router
	local  *gateway.LocalDelivery
	queue  gateway.Queue
	mta    *server.MTA
	log    *slog.Logger
}

// openGateway opens the installation's accounts and MTA without serving.
func openGateway(cfg *policy.Config) (*gatewayHandle, func(), error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := userdb.Open(cfg.UserdbDB)
	if err != nil {
		return nil, nil, fmt.Errorf("userdb: %w", err)
	}
	modules, closeModules, err := authconfig.Modules(cfg.Dir, db, log)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	mta, err := server.OpenMTA(cfg, func() *policy.Config { return cfg }, auth.NewService(modules...), log)
	if err != nil {
		closeModules()
		db.Close()
		return nil, nil, err
	}
	kq := kickingQueue{q: mta.Queue, dir: filepath.Join(cfg.DataDir, "queue")}
	h := &gatewayHandle{router: mta.Router, local: mta.Local, queue: kq, mta: mta, log: log}
	return h, func() { mta.Close(); closeModules(); db.Close() }, nil
}

// kickingQueue enqueues from a process other than the server and then
// tells the running server's queue (through its kick file) to look now, so
// that mail from sendmail leaves at once rather than at the next rescan.
type kickingQueue struct {
	q   *queue.Queue
	dir string
}

func (k kickingQueue) Enqueue(ctx context.Context, env delivery.Envelope, msg io.Reader) (string, error) {
	id, err := k.q.Enqueue(ctx, env, msg)
	if err != nil {
		return "", err
	}
	// The message is safe in the queue now; if this nudge fails the
	// server still finds it at its next rescan, so the error is not fatal.
	_ = queue.Retry(k.dir, id)
	return id, nil
}

// sendmailSMTP is "sendmail -bs": an SMTP session on standard input and
// output, as the invoking local user (who may send anywhere).
func sendmailSMTP(e *env, cfg *policy.Config) int {
	gw, closeAll, err := openGateway(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "sendmail -bs: %v\n", err)
		return 75
	}
	defer closeAll()
	relayAll, err := access.Parse([]policy.Line{{File: "sendmail -bs", Num: 1, Text: "*\tallow,RELAYCLIENT"}})
	if err != nil {
		fmt.Fprintf(e.stderr, "sendmail -bs: %v\n", err)
		return 70
	}
	who := fmt.Sprintf("uid %d", os.Getuid())
	if u, err := user.Current(); err == nil {
		who += " " + u.Username
	}
	srv := gateway.NewServer(gateway.Options{
		Mode: gateway.ModeMX, Listener: "sendmail", Config: func() *policy.Config { return cfg },
		Router: gw.router, Local: gw.local, Queue: gw.queue,
		Access: func() *access.Rules { return relayAll }, Logger: gw.log, LocalUser: who,
	})
	// A socket pair rather than net.Pipe: when standard input ends, the
	// client side is shut for writing, so the session reads the end of
	// its input after the commands before it (a QUIT included) have
	// been answered, however long their delivery took.
	client, serverSide, err := socketPair()
	if err != nil {
		fmt.Fprintf(e.stderr, "sendmail -bs: %v\n", err)
		return 71
	}
	ln := &oneConnListener{conn: serverSide, done: make(chan struct{})}
	go srv.Serve(ln)
	out := make(chan struct{})
	go func() { // server -> stdout, until the session closes its side
		defer close(out)
		io.Copy(e.stdout, client)
	}()
	io.Copy(client, e.stdin) // stdin -> server, until EOF
	client.CloseWrite()
	select {
	case <-out:
	case <-time.After(10 * time.Minute): // a delivery that hangs is not waited for forever
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	client.Close()
	return 0
}

// socketPair returns the two ends of a connected Unix stream socket pair.
func socketPair() (*net.UnixConn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sendmail-bs")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("socketpair: %w", err)
		}
		conns[i] = c
	}
	return conns[0].(*net.UnixConn), conns[1], nil
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "stdio", Net: "unix"} }
