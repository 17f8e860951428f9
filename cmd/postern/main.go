// Command postern is the one Postern binary. Its subcommands run the server
// and every admin tool; called by the names admins expect from Courier
// (maildirmake, deliverquota, ...) through a link, it behaves as that tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"postern/filters/arc"
	"postern/filters/dkim"
	"postern/filters/dmarc"
	"postern/filters/dnsbl"
	"postern/filters/spf"
	"postern/internal/cliflags"
	"postern/mailbox/deliver"
	"postern/mailbox/dotforward"
	"postern/mailbox/mailbot"
	"postern/mailbox/maildir"
	"postern/mailbox/reformail"
	"postern/policy"
	"postern/rules"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(env *env, args []string) int
}

// env is what every command gets: where the configuration is and the
// standard streams (so tests can run commands in-process).
type env struct {
	configDir string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
}

func commands() []command {
	return []command{
		{"init", "write a complete working setup into a directory", runInit},
		{"serve", "run every service in one process", runServe},
		{"imapd", "serve one IMAP session on stdin/stdout: inetd, systemd, or an ssh tunnel (--preauth)", runIMAPD},
		{"pop3d", "serve one POP3 session on stdin/stdout (inetd, systemd)", runPOP3D},
		{"reload", "tell the running server to reload its configuration (SIGHUP)", runReload},
		{"stop", "tell the running server to shut down gracefully (SIGTERM)", runStop},
		{"user", "add, change, delete and list userdb accounts", runUser},
		{"webadmin", "set the passwords of the web admin's logins (CONFIGDIR/webadmin)", runWebadmin},
		{"authtest", "show what an account resolves to, and check a password", runAuthtest},
		{"authenumerate", "list the accounts of every authentication module (Courier's authenumerate)", runAuthenumerate},
		{"authdaemond", "answer Courier authdaemond's socket protocol for Courier's imapd, maildrop, ... (only that)", runAuthdaemond},
		{"makeuserdb", "compile the userdb source into its index", runMakeuserdb},
		{"userdb", "set, unset or delete one account's fields in the userdb source (Courier's userdb)", runUserdb},
		{"userdbpw", "hash a password read from stdin, for userdb (Courier's userdbpw)", runUserdbpw},
		{"pw2userdb", "print the accounts of /etc/passwd and /etc/shadow as userdb lines (Courier's pw2userdb)", runPw2userdb},
		{"maildirmake", "create a Maildir, a Maildir++ folder, or set a quota", runMaildirmake},
		{"deliverquota", "deliver a message from stdin into a Maildir, honouring its quota", runDeliverquota},
		{"maildirkw", "set or list a message's IMAP keywords in a Maildir (Courier's maildirkw)", runMaildirkw},
		{"maildiracl", "list, set, delete or compute a Maildir folder's IMAP ACL (Courier's maildiracl)", runMaildiracl},
		{"deliverfile", "deliver a message from stdin into an mbox file, or a Maildir (a path ending in /)", runDeliverfile},
		{"config", "check the configuration and print what it resolves to", runConfigCheck},
		{"sendmail", "inject a message from standard input (sendmail compatible)", runSendmail},
		{"queue", "list, show, retry, delete or bounce queued messages", runQueue},
		{"mailq", "list the queue (as sendmail -bp)", runMailq},
		{"makealiases", "compile the aliases into their index (also: newaliases)", runMakealiases},
		{"check", "diagnose a policy check as the gateway would (spf, dkim, arc, dmarc, dnsbl), or where mail goes (route)", runCheck},
		{"testmxlookup", "where mail for a domain goes: routes, MX, addresses, TLS (Courier's testmxlookup)", runCheckRoute},
		{"dkim", "make DKIM signing keys and print their DNS records", runDKIM},
		{"dns", "print every DNS record a hosted domain should publish (dns records DOMAIN)", runDNS},
		{"dmarc", "preview or send the DMARC aggregate reports (dmarc report --preview|--send)", runDMARC},
		{"rejects", "list and search the mail refused during SMTP sessions", runRejects},
		{"bayes", "train the bayes content classifier with spam and ham (per user too), forget, show its counts, expire old tokens", runBayes},
		{"quota", "show or recount accounts' Maildir++ quotas (doveadm quota get, recalc)", runQuota},
		{"mailbox", "list, create, delete, rename folders; search, fetch, expunge, move, flag messages (doveadm mailbox, search, ...)", runMailbox},
		{"who", "list the IMAP, POP3 and SMAP sessions of the running server (doveadm who)", runWho},
		{"kick", "end the sessions of users or of a client address (doveadm kick)", runKick},
		{"reputation", "explain or reset the history the reputation check keeps of a client, network or domain", runReputation},
		{"rules", "check a maildrop filter file, or show step by step what it does with a message", runRules},
		{"sieve", "check or try a Sieve script; list, store, activate an account's scripts (sieve-test, doveadm sieve)", runSieve},
		{"maildrop", "deliver a message to a local account: .courier, maildroprc, ~/.mailfilter (Courier's maildrop)", runMaildrop},
		{"dotforward", "in a .courier file (\"|| dotforward\"): obey ~/.forward as sendmail does (Courier's dotforward)", runDotforward},
		{"reformail", "rewrite a message's header (Courier's reformail)", runReformail},
		{"makedat", "build a gdbmfetch database from KEY<TAB>VALUE text (Courier's makedat)", func(e *env, a []string) int { return rules.MakedatMain(a, e.stdout, e.stderr) }},
		{"reformime", "list, extract, decode and rewrite a message's MIME sections (Courier's reformime)", runReformime},
		{"makemime", "build MIME sections and multipart messages (Courier's makemime)", runMakemime},
		{"mailbot", "autoresponder: answer a message once per sender (Courier's mailbot)", runMailbot},
		{"makesmtpaccess", "Courier's make* tools for files read directly (also makehosteddomains, makeacceptmailfor): check, then reload", courierMake("makesmtpaccess", "smtpaccess")},
		{"makehosteddomains", "", courierMake("makehosteddomains", "hosteddomains")},
		{"makeacceptmailfor", "", courierMake("makeacceptmailfor", "esmtpacceptmailfor")},
		{"version", "print the version", runVersion},
	}
}

// argv0Tools maps the program names of Courier's tools to subcommands, so a
// link named "maildirmake" to this binary works as Courier's maildirmake.
var argv0Tools = map[string]string{
	"sendmail":     "sendmail",
	"imapd":        "imapd",
	"pop3d":        "pop3d",
	"mailq":        "mailq",
	"newaliases":   "makealiases",
	"makealiases":  "makealiases",
	"maildirmake":  "maildirmake",
	"deliverquota": "deliverquota",
	"maildirkw":    "maildirkw",
	"maildiracl":   "maildiracl",
	"makeuserdb":   "makeuserdb",
	"userdb":       "userdb",
	"userdbpw":     "userdbpw",
	"pw2userdb":    "pw2userdb",
	"authtest":     "authtest",
	"authdaemond":  "authdaemond",
	"testmxlookup": "testmxlookup",
	"reformime":    "reformime",
	"makemime":     "makemime",
	"dotforward":   "dotforward",

	// authlib's account list, from every module.
	"authenumerate": "authenumerate",
	// Courier compiles these files into .dat databases; Postern reads
	// them as they are, so these check them and reload the server.
	"makesmtpaccess":     "makesmtpaccess",
	"makesmtpaccess-msa": "makesmtpaccess",
	"makehosteddomains":  "makehosteddomains",
	"makeacceptmailfor":  "makeacceptmailfor",
}

func main() {
	os.Exit(run(os.Args, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

func run(argv []string, e *env) int {
	e.configDir = os.Getenv("POSTERN_CONFIG")
	if e.configDir == "" {
		e.configDir = policy.DefaultDir
	}
	if sub, ok := argv0Tools[filepath.Base(argv[0])]; ok {
		return dispatch(e, sub, argv[1:])
	}
	fs := flag.NewFlagSet("postern", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.configDir, "config", e.configDir, "configuration `directory` (or set POSTERN_CONFIG)")
	fs.Usage = func() {} // printed below: --help on stdout, a mistake on stderr
	if err := fs.Parse(argv[1:]); err != nil {
		if err == flag.ErrHelp {
			usage(e.stdout, fs)
			return 0
		}
		usage(e.stderr, fs)
		return 64
	}
	if fs.NArg() == 0 {
		usage(e.stderr, fs)
		return 64
	}
	return dispatch(e, fs.Arg(0), fs.Args()[1:])
}

func dispatch(e *env, name string, args []string) int {
	if name == "help" {
		if len(args) > 0 {
			return dispatch(e, args[0], []string{"--help"})
		}
		fs := flag.NewFlagSet("postern", flag.ContinueOnError)
		fs.String("config", policy.DefaultDir, "configuration `directory` (or set POSTERN_CONFIG)")
		usage(e.stdout, fs)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(e, args)
		}
	}
	fmt.Fprintf(e.stderr, "postern: unknown command %q (see 'postern help')\n", name)
	return 64
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: postern [--config DIR] COMMAND [ARGS]\n\nPostern is a mail server: SMTP, Maildir++ delivery, IMAP and POP3, with Courier's formats and tools.\n\nCommands:\n")
	for _, c := range commands() {
		if c.summary != "" { // aliases described by the line before
			fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintf(w, "\nOptions:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\n'postern COMMAND --help' describes a command; docs/ has a page for each.\n")
}

// newFlags makes a subcommand's flag set with a --config flag of its own, so
// "postern user --config DIR list" works as well as "postern --config DIR user list".
func newFlags(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.configDir, "config", e.configDir, "configuration `directory`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: postern %s %s\n\n%s\n\nOptions:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps -h/--help to exit 0, with the usage on
// standard output (where `postern serve --help | less` reads it), and
// errors to 64, with the usage on standard error.
func parseFlags(e *env, fs *flag.FlagSet, args []string) (exit int, done bool) {
	switch err := cliflags.Parse(fs, args, e.stdout); {
	case err == flag.ErrHelp:
		return 0, true
	case err != nil:
		return 64, true
	}
	return 0, false
}

func runRules(e *env, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: postern rules check FILE...
       postern rules test [-x] [-m] [-f FROM] [-V N=V] FILE [ARG...] < MESSAGE

check  reports syntax errors in maildrop filter files as FILE:LINE:COL: message.
test   runs FILE on the message without delivering anything and prints, step by
       step, which conditions matched and where the message would go.
See docs/rules.md for the language.
`)
	}
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	switch args[0] {
	case "check":
		return rules.CheckMain(args[1:], e.stdout, e.stderr)
	case "test":
		return rules.RunTestMain(args[1:], e.stdin, e.stdout, e.stderr)
	case "-h", "--help", "help":
		usage(e.stdout)
		return 0
	}
	fmt.Fprintf(e.stderr, "postern rules: unknown subcommand %q\n", args[0])
	usage(e.stderr)
	return 64
}

func runVersion(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprintln(e.stdout, "Usage: postern version\n\nPrints the version of this binary.")
		return 0
	}
	fmt.Fprintln(e.stdout, "postern", version)
	return 0
}

// wantsHelp reports a lone --help/-h, for the Courier-compatible tools whose
// own option parsing knows no such flag.
func wantsHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help")
}

func runCheck(e *env, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: postern check spf --ip IP --helo NAME --sender ADDR [--dns HOST:PORT]
       postern check dkim [--dns HOST:PORT] < MESSAGE
       postern check arc [--dns HOST:PORT] [--ip IP] < MESSAGE
       postern check dmarc --ip IP --helo NAME --sender ADDR [--dns HOST:PORT] < MESSAGE
       postern check dnsbl IP|DOMAIN [--zone ZONE ...] [--dns HOST:PORT]
       postern check dnsbl --message - [--zone ZONE ...] [--dns HOST:PORT] < MESSAGE
       postern check route ADDRESS|DOMAIN [--dns HOST:PORT]

Runs one check the way the gateway does and says what it found and why:
spf    RFC 7208 result (pass|fail|softfail|neutral|none|temperror|permerror),
       the record and mechanism that decided, every DNS lookup made;
dkim   every signature's result (RFC 6376) and why;
arc    the ARC chain's sets, its result (RFC 8617) and why;
dmarc  SPF, DKIM and DMARC (RFC 7489) step by step, and the SMTP answer;
dnsbl  every DNS list's answer for IP or DOMAIN, or for the link domains
       of a message's body (URI lists), and the combined verdict;
route  where mail for an address or a domain would go: accepted or not,
       local, alias, and the routes rule, MX hosts, addresses, TLS/DANE/
       MTA-STS (also as "testmxlookup DOMAIN", Courier's name).
See docs/spf.md, docs/dkim.md, docs/arc.md, docs/dmarc.md, docs/dnsbl.md, docs/routes.md.
`)
	}
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	switch args[0] {
	case "spf":
		return spf.CheckMain(args[1:], e.stdout, e.stderr)
	case "dkim":
		return dkim.CheckMain(args[1:], e.stdin, e.stdout, e.stderr)
	case "arc":
		return arc.CheckMain(args[1:], e.stdin, e.stdout, e.stderr)
	case "dmarc":
		return dmarc.CheckMain(args[1:], e.stdin, e.stdout, e.stderr)
	case "dnsbl":
		return dnsbl.CheckMainInput(withConfigArg(e, args[1:]), e.stdin, e.stdout, e.stderr)
	case "route":
		return runCheckRoute(e, args[1:])
	case "-h", "--help", "help":
		usage(e.stdout)
		return 0
	}
	fmt.Fprintf(e.stderr, "postern check: unknown check %q\n", args[0])
	usage(e.stderr)
	return 64
}

// withConfigArg passes the global --config on to tools that read settings.
func withConfigArg(e *env, args []string) []string {
	for _, a := range args {
		// --zone replaces the configuration (the two exclude each other).
		if a == "--config" || strings.HasPrefix(a, "--config=") || a == "--zone" || strings.HasPrefix(a, "--zone=") ||
			a == "-zone" || strings.HasPrefix(a, "-zone=") {
			return args
		}
	}
	return append([]string{"--config", e.configDir}, args...)
}

func runDKIM(e *env, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: postern dkim keygen DOMAIN [--selector S] [--type ed25519|rsa] [--bits 2048] [--force]
       postern dkim records [--check] [--dns HOST:PORT]

keygen   writes a signing key into CONFIG/dkim/ and prints the DNS TXT record
records  prints the records of every key; --check asks DNS whether they are published
See docs/dkim.md.
`)
	}
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	switch args[0] {
	case "keygen":
		return dkim.KeygenMain(args[1:], e.stdout, e.stderr, e.configDir)
	case "records":
		return dkim.RecordsMain(args[1:], e.stdout, e.stderr, e.configDir)
	case "-h", "--help", "help":
		usage(e.stdout)
		return 0
	}
	fmt.Fprintf(e.stderr, "postern dkim: unknown subcommand %q\n", args[0])
	usage(e.stderr)
	return 64
}

func runMaildrop(e *env, args []string) int {
	return deliver.MaildropMain(args, e.stdin, e.stdout, e.stderr, e.configDir)
}

// runDotforward is Courier's dotforward(1). The delivery agent runs it for
// "|| dotforward" when no dotforward is installed (mailbox/deliver).
func runDotforward(e *env, args []string) int {
	return dotforward.Main(args, os.Getenv, e.stdin, e.stdout, e.stderr)
}

func runReformail(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: reformail [-a|-A|-i|-I|-u|-U HEADER] [-R OLD NEW] [-c] [-d] [-f0|-f1] [-x|-X HEADER] [-D LEN FILE] [-s COMMAND...] < MESSAGE

Rewrites the header of the message on standard input, as Courier's
reformail(1) does: add, replace, rename, keep first or last, extract
header fields, convert mbox "From " lines, split a mailbox, and detect
duplicate Message-IDs. See docs/reformail.md.
`)
		return 0
	}
	return reformail.ReformailMain(args, e.stdin, e.stdout, e.stderr)
}

func runMailbot(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: mailbot [-t FILE|-m FILE] [-T reply|replyall|replydsn|replydraft|forward|forwardatt]
               [-A 'Header: value'] [-s SUBJECT] [-d DBFILE -D DAYS] [-r ADDR,...] [-f ADDR] [-n]
               [SENDMAIL COMMAND...] < MESSAGE

Answers the message on standard input (a vacation or auto-reply message),
at most once per sender per period, never to bounces, lists, bulk or
automatic mail, and pipes the reply to the sendmail command (default
"sendmail -f ''"). Compatible with Courier's mailbot(1); see docs/mailbot.md.
`)
		return 0
	}
	return mailbot.MailbotMain(args, e.stdin, e.stdout, e.stderr)
}

func runMaildirmake(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: maildirmake [-q QUOTA] [-f FOLDER] [-F FOLDER] [-S] [-s MODE] MAILDIR
       maildirmake --add NICK=PATH MAILDIR | --del NICK MAILDIR

Creates MAILDIR (tmp/, new/, cur/), or with -f a Maildir++ folder inside it
(-F takes the name in UTF-8 and stores it in modified UTF-7), and with -q
sets the Maildir++ quota ("10000000S,1000C"). -S makes a sharable maildir,
-s read|write[,group] a shared folder in one, --add/--del list sharable
maildirs in MAILDIR/shared-maildirs. Compatible with Courier's
maildirmake(1); see docs/maildirmake.md.
`)
		return 0
	}
	return maildir.MaildirmakeMain(args, e.stdout, e.stderr)
}

// runDeliverfile is how an alias to a file ("/var/mail/archive",
// "/srv/list/Maildir/") is delivered: the server runs it as the alias
// user, so the file is written with that user's rights, never root's.
func runDeliverfile(e *env, args []string) int {
	fs := flag.NewFlagSet("deliverfile", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	from := fs.String("f", "", "envelope sender, for the mbox \"From \" line")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: postern deliverfile [-f SENDER] PATH < MESSAGE

Delivers the message on standard input (LF line ends) into PATH: appended
to an mbox file (created 0600; dot-lock and flock as maildrop does; synced;
left as it was on failure), or, when PATH ends in "/", into that Maildir
(created when missing). Exit status: 0 delivered, 75 temporary failure,
77 over quota, 64 usage. The server runs it for aliases to files, as the
aliasuser (docs/aliases.md).
`)
	}
	if err := cliflags.Parse(fs, args, e.stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 64
	}
	if fs.NArg() != 1 || !filepath.IsAbs(fs.Arg(0)) {
		fs.Usage()
		return 64
	}
	path := fs.Arg(0)
	if strings.HasSuffix(path, "/") {
		if _, err := os.Stat(filepath.Join(path, "cur")); err != nil {
			if err := maildir.Make(filepath.Clean(path)); err != nil {
				fmt.Fprintf(e.stderr, "deliverfile: %v\n", err)
				return 75
			}
		}
		return maildir.DeliverquotaMain([]string{filepath.Clean(path)}, e.stdin, e.stdout, e.stderr)
	}
	msg, err := io.ReadAll(io.LimitReader(e.stdin, 1<<30))
	if err != nil {
		fmt.Fprintf(e.stderr, "deliverfile: reading the message: %v\n", err)
		return 75
	}
	if err := deliver.AppendMbox(context.Background(), path, msg, *from); err != nil {
		fmt.Fprintf(e.stderr, "deliverfile: %v\n", err)
		return 75
	}
	return 0
}

func runDeliverquota(e *env, args []string) int {
	if wantsHelp(args) {
		fmt.Fprint(e.stdout, `Usage: deliverquota [-c] [-w PERCENT] [-W FILE] MAILDIR [QUOTA] < MESSAGE

Delivers the message on standard input into MAILDIR, refusing it when the
Maildir++ quota would be exceeded. Exit status: 0 delivered, 77 over quota,
75 temporary failure, 64 usage. Compatible with Courier's deliverquota(8);
see docs/deliverquota.md.
`)
		return 0
	}
	return maildir.DeliverquotaMain(args, e.stdin, e.stdout, e.stderr)
}
