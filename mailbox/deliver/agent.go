package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"postern/internal/dirfact"
	"strings"
	"sync/atomic"
	"time"

	"postern/auth"
	"postern/mailbox/maildir"
	"postern/policy"
	"postern/rules"
)

// Exit codes, as Courier's maildrop and local delivery use them (sysexits.h,
// plus qmail's 100 and 112 for hard failures).
const (
	ExitOK        = 0
	ExitUsage     = 64 // EX_USAGE
	ExitDataErr   = 65 // EX_DATAERR: the message cannot be taken (too large)
	ExitNoUser    = 67 // EX_NOUSER: maildrop -d with an unknown user
	ExitTempFail  = 75 // EX_TEMPFAIL: try again later (Postfix defers)
	ExitOverQuota = 77 // EX_NOPERM: "maildir over quota."
	ExitPermanent = 100
	// ExitStopHere is what a .courier program returns to say "delivered,
	// ignore the instructions after me" (dot-courier(5), qmail-command(8)).
	ExitStopHere = 99
)

// Status is the verdict on one delivery.
type Status int

const (
	StatusOK        Status = iota // delivered (or deliberately discarded)
	StatusTemporary               // keep the message and retry
	StatusPermanent               // bounce
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusTemporary:
		return "temporary"
	case StatusPermanent:
		return "permanent"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// StatusForExit classifies an exit code the way Courier's local delivery
// classifies a program's (dot-courier(5)): 0 and 99 delivered; 64, 65, 67,
// 68, 69, 70, 76, 77, 78, 112 and qmail's 100 permanent; anything else
// temporary.
func StatusForExit(code int) Status {
	switch code {
	case 0, ExitStopHere:
		return StatusOK
	case 64, 65, 67, 68, 69, 70, 76, 77, 78, 100, 112:
		return StatusPermanent
	}
	return StatusTemporary
}

// Outcome is what happened to one message for one recipient.
type Outcome struct {
	Status   Status
	ExitCode int    // Courier's: 0, 75, 77, 67, ... — what "postern maildrop" exits with
	Reason   string // for the log and the bounce; empty when delivered
	// Enhanced, when set, is the RFC 3463 status the failure is to be
	// reported with ("5.7.1" for a Sieve reject); otherwise the exit code
	// decides it.
	Enhanced string
	// Delivered lists where copies went: maildir folders, mbox files,
	// "|program", "!address". Empty with StatusOK means discarded on
	// purpose (a filter's exit, a .courier file of comments).
	Delivered []string
}

// Request is one message for one local account.
type Request struct {
	Account *auth.Account
	// Extension is the address extension ("foo-bar" for user-foo-bar@...),
	// which selects .courier-foo-bar and friends.
	Extension string
	Sender    string // envelope sender; "" is the null sender (a bounce)
	Recipient string // envelope recipient as addressed
	// Message is the message with LF line endings (a CR before LF is
	// removed, as maildrop does). It is read once.
	Message io.Reader
	// AddTrace prepends "Return-Path: <Sender>" and "Delivered-To:
	// Recipient" (RFC 5321 4.4), as final delivery must. The gateway sets
	// it; "postern maildrop" does not (the calling MTA adds them, Postfix's
	// pipe flags=DR).
	AddTrace bool
	// Headers are extra header lines ("Name: value") put on top, after the
	// trace fields (maildrop -A).
	Headers []string
	// Args become $1, $2, ... in filters.
	Args []string
	// NoInstructions skips .courier/.qmail files: maildrop -d reads only
	// maildroprc and .mailfilter (a .courier file saying "| maildrop" must
	// not loop).
	NoInstructions bool
	// Defer, when set, lets a plain delivery (no filter, no instruction
	// file) return once the delivery journal holds the message; the
	// Maildir file is written and linked by Defer.Run, which the caller
	// runs after acknowledging (see maildir.Deferred). Deliveries that
	// filters or instruction files make are never deferred.
	Defer *maildir.Deferred
}

// Options build an Agent.
type Options struct {
	Config *policy.Config // for Me, Dir (maildroprc, maildroprcs/) and SizeLimit; may be nil
	Auth   *auth.Service  // used by MaildropMain -d; Deliver is given the account
	Logger *slog.Logger   // nil: slog.Default()
	// Sendmail is the command forwards go through, as argv; "-oi -f
	// SENDER ADDR..." is appended. Default: this binary + "sendmail"
	// (with --config Config.Dir when that is not the default directory).
	Sendmail []string
	// ForwardSender gives a forward's envelope sender from the original
	// one (SRS); nil uses Config.ForwardSender. A server passes its
	// current configuration's, so that a reload applies.
	ForwardSender func(from string) string
	// SealForward, when set, returns a copy that forwarder (the account's
	// address) sends on with an ARC set on top (RFC 8617), or the message
	// unchanged with the reason it was not sealed. A server passes the
	// gateway's (gateway.Filters.SealForward), so that forwards made by
	// .courier lines, maildrop and Sieve are sealed as alias copies are.
	SealForward func(ctx context.Context, msg []byte, forwarder string) ([]byte, string)
	Limits      rules.Limits
	// SystemRules is the maildroprc file; default CONFIG/maildroprc.
	SystemRules string
	// MaxMessageSize bounds what is read into memory for filters and
	// instructions; default 256 MiB.
	MaxMessageSize int64
	// ProgramTimeout bounds each program a .courier file runs; default 10m.
	ProgramTimeout time.Duration
	// Reexec is the command (argv) that delivers as another user when this
	// process is root and the account is not: the message goes to
	// "REEXEC --config DIR -d NAME ..." on stdin (postern maildrop, which
	// switches to the account's uid and gid before it reads any user file).
	// Default: this binary + "maildrop". ReexecEnv is added to its
	// environment.
	Reexec    []string
	ReexecEnv []string
	// Dotforward is the command (argv) a .courier file's "|| dotforward"
	// runs when no dotforward program is in the programs' PATH. Default:
	// this binary + "dotforward".
	Dotforward []string
	// Environ is the environment filters can "import" (maildrop's own
	// environment); the Courier variables (SENDER, RECIPIENT, EXT, ...)
	// are added to it.
	Environ []string
	// Stdout receives filters' echo output; nil discards it.
	Stdout io.Writer
	// Stderr receives filters' warnings (a pattern that is not a regular
	// expression); nil sends them to Logger.
	Stderr io.Writer
	// Trace receives every filter step (maildrop -V); nil for none.
	Trace func(rules.Step)
	// QuotaWarnPercent and QuotaWarnFile are maildrop -w and -W.
	QuotaWarnPercent int
	QuotaWarnFile    string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Agent delivers messages to local accounts. It is safe for concurrent use.
type Agent struct {
	opt         Options
	log         *slog.Logger
	sendmail    []string
	reexec      []string
	dotforward  []string
	systemRules string
	trustedDir  string
	hostname    string
	euid        int
	programs    programCache
	journal     atomic.Pointer[maildir.Journal]
	// plainHomes: home directories seen without .courier, .qmail or
	// .mailfilter, while they stay unchanged (three stat calls less per
	// delivery).
	plainHomes dirfact.Cache
	// sieveScripts are the users' Sieve scripts, parsed (sieve.go).
	sieveScripts scriptCache
}

// SetJournal makes Maildir deliveries durable through the server's
// delivery journal (see maildir.Journal); nil turns it off.
func (a *Agent) SetJournal(j *maildir.Journal) { a.journal.Store(j) }

// SetSendmail changes the command (argv) forwards and Sieve's vacation
// replies go through, as Options.Sendmail; call it before any delivery
// runs (a test whose binary is not postern points it at one that is).
func (a *Agent) SetSendmail(argv []string) { a.sendmail = argv }

// ResetIdentity notes the process's effective uid again, after the
// server dropped root's rights (its mailuser setting); call it before any
// delivery runs.
func (a *Agent) ResetIdentity() { a.euid = os.Geteuid() }

// New builds an Agent.
func New(opt Options) (*Agent, error) {
	a := &Agent{opt: opt, log: opt.Logger, euid: os.Geteuid()}
	if a.log == nil {
		a.log = slog.Default()
	}
	exe, exeErr := os.Executable()
	a.sendmail = opt.Sendmail
	if len(a.sendmail) == 0 {
		if exeErr != nil {
			return nil, fmt.Errorf("deliver: no sendmail command: %w", exeErr)
		}
		a.sendmail = []string{exe, "sendmail"}
		if opt.Config != nil && opt.Config.Dir != "" && opt.Config.Dir != policy.DefaultDir {
			// The same configuration as this agent's: forwards and
			// vacation replies of a server started with --config go
			// into its own queue, not /etc/postern's.
			a.sendmail = []string{exe, "--config", opt.Config.Dir, "sendmail"}
		}
	}
	a.reexec = opt.Reexec
	if len(a.reexec) == 0 && exeErr == nil {
		a.reexec = []string{exe, "maildrop"}
	}
	a.dotforward = opt.Dotforward
	if len(a.dotforward) == 0 && exeErr == nil {
		a.dotforward = []string{exe, "dotforward"}
	}
	a.systemRules = opt.SystemRules
	if opt.Config != nil {
		if a.systemRules == "" {
			a.systemRules = filepath.Join(opt.Config.Dir, "maildroprc")
		}
		a.trustedDir = filepath.Join(opt.Config.Dir, "maildroprcs") + "/"
		a.hostname = opt.Config.Me
	}
	if a.hostname == "" {
		a.hostname, _ = os.Hostname()
	}
	if a.opt.MaxMessageSize <= 0 {
		a.opt.MaxMessageSize = 256 << 20
	}
	if a.opt.ProgramTimeout <= 0 {
		a.opt.ProgramTimeout = 10 * time.Minute
	}
	if a.opt.Now == nil {
		a.opt.Now = time.Now
	}
	return a, nil
}

// Deliver delivers one message to one account, in Courier's order:
//
//  1. the account's delivery instructions (.courier-EXT ..., .qmail-EXT ...)
//     unless req.NoInstructions; a zero-length file means default delivery;
//  2. otherwise the system rules (CONFIG/maildroprc) then ~/.mailfilter, with
//     $DEFAULT the account's Maildir;
//  3. otherwise the Maildir's INBOX.
//
// When none of the files exists this is one maildir delivery after a few
// stat calls. A home with the sticky bit set holds all mail (temporary
// failure), as maildrop does, so that .mailfilter can be edited safely; a
// world-writable home is refused the same way.
//
// Running as root for an account with another uid, steps 1 and 2 run in a
// child process (Options.Reexec) that has switched to the account's uid and
// gid, so that no user file is read and no user command runs as root; plain
// Maildir deliveries stay in this process and the files are chowned.
func (a *Agent) Deliver(ctx context.Context, req Request) Outcome {
	j, out := a.newJob(req)
	if out != nil {
		return *out
	}
	var homeSt os.FileInfo
	if j.home != "" {
		if st, err := os.Stat(j.home); err == nil {
			homeSt = st
			if st.Mode()&os.ModeSticky != 0 {
				return temporary("home directory %s has the sticky bit set: delivery deferred", j.home)
			}
			if st.Mode().Perm()&0o002 != 0 {
				return temporary("home directory %s is world-writable", j.home)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return temporary("home directory %s: %v", j.home, err)
		}
	}
	// A home without instruction files or filters stays so while it is
	// unchanged (see dirfact); only the plain case (no extension) is kept.
	plainHome := homeSt != nil && req.Extension == "" && a.plainHomes.Holds(j.home, homeSt)
	var instr instructionFile
	var haveInstr, anyFile bool
	if !req.NoInstructions && !plainHome {
		var err error
		if instr, haveInstr, err = findInstructionFile(j.home, req.Extension); err != nil {
			return temporary("%v", err)
		}
		anyFile = haveInstr
		if haveInstr && instr.Empty {
			haveInstr = false // dot-courier(5): an empty file means default delivery
		}
	}
	filters := []string{}
	var script *sieveSource
	if !haveInstr {
		if a.systemRules != "" && fileExists(a.systemRules) {
			filters = append(filters, a.systemRules)
		}
		if j.home != "" && !plainHome {
			if mf := filepath.Join(j.home, ".mailfilter"); fileExists(mf) {
				filters = append(filters, mf)
				anyFile = true
			} else {
				// No .mailfilter: the active Sieve script, if any
				// (sieve.go).
				var err error
				if script, err = j.activeSieve(); err != nil {
					return temporary("%v", err)
				}
				anyFile = anyFile || script != nil
			}
		}
	}
	if homeSt != nil && req.Extension == "" && !req.NoInstructions && !plainHome && !anyFile {
		a.plainHomes.Remember(j.home, homeSt, time.Now())
	}
	if !haveInstr && len(filters) == 0 && script == nil {
		return j.deliverPlain(ctx)
	}
	if a.euid == 0 && j.acct.UID != 0 {
		return a.deliverAsUser(ctx, j)
	}
	if a.euid != 0 && j.acct.UID != a.euid {
		// The user's files would run with this process's rights, which
		// are not the user's: refuse, as maildrop -d does.
		return temporary("cannot run the delivery instructions or filters of %s (uid %d) as uid %d", j.acct.Name, j.acct.UID, a.euid)
	}
	msg, out := j.readMessage()
	if out != nil {
		return *out
	}
	if haveInstr {
		return j.runInstructionFile(ctx, instr, msg)
	}
	if script != nil {
		if len(filters) == 0 {
			return j.runSieve(ctx, script, msg)
		}
		// maildroprc first, as for .mailfilter; the script decides
		// what the system rules leave undecided.
		return j.runFilters(ctx, filters, msg, FilterMode{then: func(ctx context.Context, msg []byte) Outcome {
			return j.runSieve(ctx, script, msg)
		}})
	}
	return j.runFilters(ctx, filters, msg, FilterMode{})
}

// job is one message on its way to one account.
type job struct {
	a      *Agent
	req    Request
	acct   *auth.Account
	home   string
	root   string // the account's Maildir
	dir    string // where relative destinations start
	conf   Confinement
	prefix []byte
	mds    map[string]*maildir.Maildir
	done   []string
	// manual is maildrop's manual mode (a filter file named on the
	// command line, run with the user's own permissions), where the
	// filter's MAILDIRQUOTA applies as maildrop applies it.
	manual bool
	// filterQuota is $MAILDIRQUOTA at the current delivery (manual mode).
	filterQuota string
}

func (a *Agent) newJob(req Request) (*job, *Outcome) {
	if req.Account == nil {
		o := Outcome{Status: StatusPermanent, ExitCode: ExitNoUser, Reason: "no account"}
		return nil, &o
	}
	acct := req.Account
	root := acct.MaildirPath()
	if root == "" || !filepath.IsAbs(root) {
		o := temporary("account %s has no absolute Maildir path (%q)", acct.Name, root)
		return nil, &o
	}
	j := &job{a: a, req: req, acct: acct, home: acct.Home, root: filepath.Clean(root), mds: map[string]*maildir.Maildir{}}
	if j.home != "" {
		j.home = filepath.Clean(j.home)
	}
	j.dir = j.home
	if j.dir == "" {
		j.dir = j.root
	}
	j.conf = Confinement{Home: j.home, Maildir: j.root}
	var p bytes.Buffer
	if req.AddTrace {
		p.WriteString("Return-Path: <" + req.Sender + ">\n")
		if req.Recipient != "" {
			p.WriteString("Delivered-To: " + req.Recipient + "\n")
		}
	}
	for _, h := range req.Headers {
		if err := checkHeaderLine(h); err != nil {
			o := Outcome{Status: StatusPermanent, ExitCode: ExitUsage, Reason: err.Error()}
			return nil, &o
		}
		p.WriteString(h + "\n")
	}
	if strings.ContainsAny(req.Sender, "\r\n\x00") || strings.ContainsAny(req.Recipient, "\r\n\x00") {
		o := Outcome{Status: StatusPermanent, ExitCode: ExitDataErr, Reason: "line break in an envelope address"}
		return nil, &o
	}
	j.prefix = p.Bytes()
	return j, nil
}

// checkHeaderLine accepts "Name: value" with a valid field name (RFC 5322
// 3.6.8) and no line breaks.
func checkHeaderLine(h string) error {
	i := strings.IndexByte(h, ':')
	if i <= 0 || strings.ContainsAny(h, "\r\n\x00") {
		return fmt.Errorf("bad header line %q", h)
	}
	for _, c := range h[:i] {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("bad header name in %q", h)
		}
	}
	return nil
}

func temporary(format string, args ...any) Outcome {
	return Outcome{Status: StatusTemporary, ExitCode: ExitTempFail, Reason: fmt.Sprintf(format, args...)}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// messageReader streams the prefix then the message with CRs before LFs
// removed, failing after max bytes.
func (j *job) messageReader() io.Reader {
	return io.MultiReader(bytes.NewReader(j.prefix), &boundedReader{r: maildir.LFReader(messageOrEmpty(j.req.Message)), left: j.a.opt.MaxMessageSize})
}

var errTooLarge = errors.New("message too large")

type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// readMessage reads the whole message (with the prefix) for filters and
// instruction files, which may deliver it several times.
func (j *job) readMessage() ([]byte, *Outcome) {
	b, err := io.ReadAll(j.messageReader())
	if err != nil {
		o := j.readError(err)
		return nil, &o
	}
	return b, nil
}

func (j *job) readError(err error) Outcome {
	if errors.Is(err, errTooLarge) {
		return Outcome{Status: StatusPermanent, ExitCode: ExitDataErr, Reason: fmt.Sprintf("message larger than %d bytes", j.a.opt.MaxMessageSize)}
	}
	return temporary("reading the message: %v", err)
}

// deliverPlain is the common case: the message streams into INBOX.
func (j *job) deliverPlain(ctx context.Context) Outcome {
	if err := ctx.Err(); err != nil {
		return temporary("%v", err)
	}
	dest := Destination{Kind: DestMaildir, Root: j.root, Folder: maildir.Inbox, Path: j.root}
	if err := j.deliverMaildir(dest, j.messageReader(), maildir.DeliverOptions{Defer: j.req.Defer}); err != nil {
		return j.failure(err)
	}
	return j.success()
}

func (j *job) success() Outcome {
	return Outcome{Status: StatusOK, ExitCode: ExitOK, Delivered: j.done}
}

// failure turns a delivery error into Courier's answer: over quota is 77
// with maildrop's "maildir over quota."; anything else is temporary.
func (j *job) failure(err error) Outcome {
	var o Outcome
	switch {
	case errors.Is(err, maildir.ErrOverQuota):
		o = Outcome{Status: StatusPermanent, ExitCode: ExitOverQuota, Reason: "maildir over quota."}
	case errors.Is(err, errTooLarge):
		o = j.readError(err)
	default:
		o = temporary("%v", err)
	}
	o.Delivered = j.done
	return o
}

// maildirFor opens (and caches) a maildir. The account's own Maildir is
// created when missing and gets the account's quota, as the gateway does;
// any other maildir must exist (maildrop defers otherwise).
func (j *job) maildirFor(root string) (*maildir.Maildir, error) {
	if md, ok := j.mds[root]; ok && j.filterQuota == "" {
		return md, nil
	}
	opt := maildir.Options{Logger: j.a.log, Hostname: j.a.hostname}
	if j.a.euid == 0 {
		// Written as root for the account: only where it could write.
		opt.Reader = maildir.ReaderFor(j.acct.UID, j.acct.GID)
	}
	md, err := maildir.OpenWithOptions(root, opt)
	if root == j.root && (errors.Is(err, maildir.ErrNotMaildir) || errors.Is(err, os.ErrNotExist)) {
		if err := maildir.Make(root); err != nil {
			return nil, fmt.Errorf("maildir %s: create: %w", root, err)
		}
		j.handOver(root, filepath.Join(root, "tmp"), filepath.Join(root, "new"), filepath.Join(root, "cur"))
		md, err = maildir.OpenWithOptions(root, opt)
	}
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", root, err)
	}
	quota := ""
	if root == j.root {
		quota = j.acct.Quota
	}
	if j.filterQuota != "" {
		// Manual mode: the filter's MAILDIRQUOTA is the quota of the
		// maildir it delivers to, as maildrop (deliverquota) applies it.
		quota = j.filterQuota
	}
	if quota != "" {
		want, err := maildir.ParseQuota(quota)
		if err != nil {
			return nil, fmt.Errorf("account %s: quota %q: %w", j.acct.Name, quota, err)
		}
		if have, _, err := md.Quota(); err != nil || have != want {
			if err := md.SetQuota(want); err != nil {
				return nil, fmt.Errorf("account %s: set quota: %w", j.acct.Name, err)
			}
			j.handOver(filepath.Join(root, "maildirsize"))
		}
	}
	j.mds[root] = md
	return md, nil
}

// deliverMaildir stores the message in a maildir folder.
func (j *job) deliverMaildir(d Destination, r io.Reader, opt maildir.DeliverOptions) error {
	md, err := j.maildirFor(d.Root)
	if err != nil {
		return err
	}
	f, err := md.Folder(d.Folder)
	if err != nil {
		return fmt.Errorf("maildir %s: folder %s: %w", d.Root, d.Folder, err)
	}
	if opt.Journal == nil {
		opt.Journal = j.a.journal.Load()
	}
	key, err := f.Deliver(r, opt)
	if err != nil {
		return fmt.Errorf("maildir %s: deliver: %w", f.Path(), err)
	}
	if j.a.euid == 0 && j.acct.UID != 0 {
		handOver := func() {
			if opt.Flags == "" && len(opt.Keywords) == 0 {
				j.handOver(filepath.Join(f.Path(), "new", key))
			} else if m, _ := filepath.Glob(filepath.Join(f.Path(), "cur", key+"*")); len(m) > 0 {
				j.handOver(m...)
			}
			j.handOver(filepath.Join(d.Root, "maildirsize"))
		}
		if opt.Defer != nil {
			opt.Defer.Then(handOver) // the file is there after the deferred write
		} else {
			handOver()
		}
	}
	j.done = append(j.done, d.String())
	j.quotaWarning(md, d)
	return nil
}

// handOver gives files this root process made to the account, so that the
// user's IMAP and POP3 sessions own their mail. Missing files are skipped.
func (j *job) handOver(paths ...string) {
	if j.a.euid != 0 || j.acct.UID == 0 {
		return
	}
	for _, p := range paths {
		if err := os.Lchown(p, j.acct.UID, j.acct.GID); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.a.log.Warn("deliver: cannot give file to account", "path", p, "account", j.acct.Name, "err", err)
		}
	}
}

// deliverTo delivers msg to a destination as a filter or instruction file
// names it; for programs it returns their exit code.
func (j *job) deliverTo(ctx context.Context, dest string, msg []byte, vars map[string]string, from string, opt maildir.DeliverOptions) (int, error) {
	d, err := ResolveDestination(j.dir, j.conf, dest)
	if err != nil {
		return 0, err
	}
	switch d.Kind {
	case DestMaildir:
		if j.manual && vars != nil {
			j.filterQuota = strings.TrimSpace(vars["MAILDIRQUOTA"])
		}
		return 0, j.deliverMaildir(d, bytes.NewReader(msg), opt)
	case DestMbox:
		lock := DefaultMboxLock
		if vars != nil {
			lock = mboxLockFromVars(vars)
		}
		if err := deliverMbox(ctx, d.Path, msg, from, j.a.opt.Now(), lock, 0o600); err != nil {
			return 0, err
		}
		j.done = append(j.done, d.String())
		return 0, nil
	case DestProgram:
		// A filter's program runs under its $SHELL, as maildrop runs it.
		shell := "/bin/sh"
		if sh := strings.TrimSpace(vars["SHELL"]); sh != "" {
			shell = sh
		}
		code, _, err := j.runProgram(ctx, shell, d.Command, msg, j.programEnv(vars), 0)
		if err != nil {
			return 0, err
		}
		j.done = append(j.done, d.String())
		return code, nil
	default:
		if err := j.forward(ctx, d.Addresses, msg, from, vars); err != nil {
			// maildrop treats $SENDMAIL as a delivery program: its exit
			// code becomes EXITCODE and the filter goes on.
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) && exitErr.ExitCode() > 0 {
				j.a.log.Info("deliver: forward failed", "account", j.acct.Name, "error", err)
				return exitErr.ExitCode(), nil
			}
			return 0, err
		}
		j.done = append(j.done, d.String())
		return 0, nil
	}
}

// messageOrEmpty treats a nil message as an empty one.
func messageOrEmpty(r io.Reader) io.Reader {
	if r == nil {
		return bytes.NewReader(nil)
	}
	return r
}
