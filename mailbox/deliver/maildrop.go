package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/userdb"
	"postern/policy"
	"postern/policy/aliases"
	"postern/rules"
)

// maildropArgs are maildrop(1)'s options plus Postern's long ones.
type maildropArgs struct {
	user         string // -d
	from         string // -f
	fromSet      bool
	embedded     bool   // -m
	special      string // -M
	verbose      string // -V
	headers      []string
	warnPercent  int    // -w
	warnFile     string // -W
	config       string // --config
	instructions bool   // --instructions
	extension    string // --extension
	recipient    string // --recipient
	rest         []string
	help         bool
}

const maildropUsage = `usage: postern maildrop [-a] [-A "Header: value"]... [-f SENDER] [-w N] [-W FILE] -d USER [ARG...]
       postern maildrop [-f SENDER] [-V LEVEL] [-m] FILTERFILE [ARG...]
       postern maildrop -M FILTER [-d USER] [ARG...]
Postern options: --config DIR, --instructions (read .courier/.qmail first),
  --extension EXT, --recipient ADDRESS
`

// parseMaildropArgs reads options as maildrop's getopt does: "-d user" or
// "-duser", option letters up to the first argument that is not an option.
func parseMaildropArgs(args []string) (*maildropArgs, error) {
	o := &maildropArgs{}
	i := 0
	value := func(a string) (string, error) {
		if len(a) > 2 {
			return a[2:], nil
		}
		if i+1 >= len(args) {
			return "", fmt.Errorf("option %s needs a value", a)
		}
		i++
		return args[i], nil
	}
	longValue := func(a, name string) (string, bool, error) {
		if a == name {
			if i+1 >= len(args) {
				return "", true, fmt.Errorf("option %s needs a value", a)
			}
			i++
			return args[i], true, nil
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true, nil
		}
		return "", false, nil
	}
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		if strings.HasPrefix(a, "--") {
			var err error
			var ok bool
			switch {
			case a == "--instructions":
				o.instructions = true
				continue
			case a == "--help":
				o.help = true
				continue
			}
			for _, lv := range []struct {
				name string
				dst  *string
			}{{"--config", &o.config}, {"--extension", &o.extension}, {"--recipient", &o.recipient}} {
				var v string
				if v, ok, err = longValue(a, lv.name); ok {
					*lv.dst = v
					break
				}
			}
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("unknown option %s", a)
			}
			continue
		}
		var err error
		var v string
		switch a[1] {
		case 'a':
			// Authentication is always mandatory here: a failing lookup
			// is a temporary error.
		case 'h':
			o.help = true
		case 'm':
			o.embedded = true
		case 'A':
			if v, err = value(a); err == nil {
				o.headers = append(o.headers, v)
			}
		case 'd':
			o.user, err = value(a)
		case 'f':
			o.from, err = value(a)
			o.fromSet = true
		case 'M':
			o.special, err = value(a)
		case 'V':
			o.verbose, err = value(a)
		case 'w':
			if v, err = value(a); err == nil {
				o.warnPercent, err = strconv.Atoi(v)
				if err == nil && (o.warnPercent < 0 || o.warnPercent > 100) {
					err = fmt.Errorf("-w takes a percentage")
				}
			}
		case 'W':
			o.warnFile, err = value(a)
		case 'D', 't':
			// -D uuu/ggg (Courier-internal) and -t socket (Dovecot auth)
			// are accepted and ignored.
			_, err = value(a)
		default:
			return nil, fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return nil, err
		}
	}
	o.rest = args[i:]
	return o, nil
}

// MaildropMain is "postern maildrop" (also reached as "maildrop"), Courier's
// maildrop(1): it reads one message on stdin and
//
//   - with -d USER (delivery mode) looks USER up in the configuration's
//     userdb, switches to the account's uid and gid when running as root,
//     runs CONFIG/maildroprc then ~/.mailfilter, and delivers to $DEFAULT
//     (the account's Maildir); the arguments after the options are $1, $2...
//   - with a FILTERFILE (manual mode) runs that file as the invoking user,
//     in the current directory, delivering to the user's Maildir by default;
//   - with -m FILTERFILE or -M FILTER (embedded mode) runs the filter without
//     delivering: the answer is its echo output and exit code.
//
// Exit codes are maildrop's: 0 delivered, 75 temporary failure (Postfix and
// Exim retry), 77 over quota, 67 unknown user, a delivery program's own code.
func MaildropMain(args []string, stdin io.Reader, stdout, stderr io.Writer, configDir string) int {
	o, err := parseMaildropArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "maildrop: %v\n%s", err, maildropUsage)
		return ExitTempFail // maildrop answers bad arguments with EX_TEMPFAIL
	}
	if o.help {
		fmt.Fprint(stdout, maildropUsage)
		return 0
	}
	if o.config != "" {
		configDir = o.config
	}
	for _, h := range o.headers {
		if err := checkHeaderLine(h); err != nil {
			fmt.Fprintf(stderr, "maildrop: -A: %v\n", err)
			return ExitTempFail
		}
	}
	if o.special != "" && (strings.HasPrefix(o.special, "/") || strings.Contains(o.special, ".") || o.special == "") {
		fmt.Fprintf(stderr, "maildrop: -M %s: the name may not start with / or contain periods\n", o.special)
		return ExitTempFail
	}
	delivery := o.user != "" || (len(o.rest) == 0 && !o.embedded && o.special == "")
	needConfig := delivery || o.special != ""
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var cfg *policy.Config
	var svc *auth.Service
	if configDir != "" {
		c, err := policy.Load(configDir)
		if err != nil {
			// The delivery agent needs only the userdb, maildroprc and the
			// host name. A configuration it cannot fully load — typically
			// a TLS key readable by root only, when Postfix runs us as
			// vmail — still serves for delivery if those are there.
			c = minimalConfig(configDir)
		}
		switch {
		case c != nil:
			cfg = c
		case needConfig:
			fmt.Fprintf(stderr, "maildrop: configuration %s: %v\n", configDir, err)
			return ExitTempFail
		}
	}
	if cfg != nil && cfg.UserdbDB != "" {
		if udb, err := userdb.Open(cfg.UserdbDB); err == nil {
			defer udb.Close()
			svc = auth.NewService(udb)
			if o.user != "" {
				// The modules the server asks (authmodulelist): an
				// account in SQL is found here too. Settings that
				// cannot be read fail the delivery for now rather
				// than call the recipient unknown.
				mods, closeMods, err := authconfig.Modules(cfg.Dir, udb, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
				if err != nil {
					fmt.Fprintf(stderr, "maildrop: authentication modules: %v\n", err)
					return ExitTempFail
				}
				defer closeMods()
				svc = auth.NewService(mods...)
			}
		} else if o.user != "" {
			fmt.Fprintf(stderr, "maildrop: userdb %s: %v\n", cfg.UserdbDB, err)
			return ExitTempFail
		}
	}

	var acct *auth.Account
	ext := o.extension
	if o.user != "" {
		var code int
		acct, ext, code = lookupForDelivery(ctx, svc, o.user, ext, stderr)
		if acct == nil {
			return code
		}
	} else {
		acct, err = invokingAccount(ctx, svc)
		if err != nil {
			fmt.Fprintf(stderr, "maildrop: %v\n", err)
			return ExitTempFail
		}
	}
	if (delivery || o.special != "") && os.Geteuid() != acct.UID {
		if os.Geteuid() != 0 {
			fmt.Fprintf(stderr, "maildrop: cannot deliver as %s (uid %d) when running as uid %d\n", acct.Name, acct.UID, os.Geteuid())
			return ExitTempFail
		}
		// Switch before any of the user's files is read or any of the
		// user's commands runs (maildrop(1), SECURITY).
		if err := dropPrivileges(acct.UID, acct.GID); err != nil {
			fmt.Fprintf(stderr, "maildrop: switching to uid %d gid %d: %v\n", acct.UID, acct.GID, err)
			return ExitTempFail
		}
	}

	opts := Options{
		Config:           cfg,
		Auth:             svc,
		Logger:           logger,
		Stdout:           stdout,
		Stderr:           stderr,
		Environ:          os.Environ(),
		QuotaWarnPercent: o.warnPercent,
		QuotaWarnFile:    o.warnFile,
	}
	if o.warnFile == "" && o.warnPercent > 0 && cfg != nil {
		if p := filepath.Join(cfg.Dir, "quotawarnmsg"); fileExists(p) {
			opts.QuotaWarnFile = p
		}
	}
	verbose := 0
	if o.verbose != "" {
		verbose, _ = strconv.Atoi(o.verbose)
	}
	if verbose > 0 && !delivery {
		// maildrop -V: ignored in delivery mode, as maildrop does.
		opts.Trace = func(s rules.Step) {
			if s.File != "" {
				fmt.Fprintf(stderr, "%s:%d: %s: %s\n", s.File, s.Line, s.What, s.Text)
			} else {
				fmt.Fprintf(stderr, "%s: %s\n", s.What, s.Text)
			}
		}
	}
	agent, err := New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "maildrop: %v\n", err)
		return ExitTempFail
	}
	req := Request{
		Account:        acct,
		Extension:      ext,
		Sender:         o.from,
		Recipient:      o.recipient,
		Message:        stdin,
		Headers:        o.headers,
		NoInstructions: !o.instructions,
	}
	if req.Recipient == "" {
		req.Recipient = acct.Name
	}
	var out Outcome
	switch {
	case o.special != "":
		file, err := specialFilter(acct.Home, o.special)
		if err != nil {
			fmt.Fprintf(stderr, "maildrop: %v\n", err)
			return ExitTempFail
		}
		req.Args = o.rest
		out = agent.Filter(ctx, req, FilterMode{File: file, Dir: acct.Home, Embedded: true, Vars: verboseVars(o.verbose), Delivery: o.user != ""})
	case delivery:
		req.Args = o.rest
		out = agent.Deliver(ctx, req)
	default:
		file := o.rest[0]
		req.Args = o.rest[1:]
		dir, _ := os.Getwd()
		out = agent.Filter(ctx, req, FilterMode{File: file, Dir: dir, Embedded: o.embedded, Vars: verboseVars(o.verbose)})
	}
	if out.Status != StatusOK && out.Reason != "" {
		fmt.Fprintf(stderr, "maildrop: %s\n", out.Reason)
	}
	return out.ExitCode
}

func verboseVars(v string) map[string]string {
	if v == "" {
		return nil
	}
	return map[string]string{"VERBOSE": v}
}

// lookupForDelivery finds the -d user. An unknown name is tried again
// without an address extension ("user-foo@domain" is "user@domain" with
// extension "foo"), longest account first.
func lookupForDelivery(ctx context.Context, svc *auth.Service, name, ext string, stderr io.Writer) (*auth.Account, string, int) {
	if svc == nil {
		fmt.Fprintln(stderr, "maildrop: no user database configured")
		return nil, "", ExitTempFail
	}
	acct, err := svc.Lookup(ctx, name)
	if errors.Is(err, auth.ErrNoSuchUser) {
		local, domain, hasDomain := strings.Cut(name, "@")
		for _, c := range aliases.ExtensionCandidates(local, "-+") {
			if c.Ext == "" {
				continue
			}
			try := c.Base
			if hasDomain {
				try += "@" + domain
			}
			if a, err2 := svc.Lookup(ctx, try); err2 == nil {
				acct, err, ext = a, nil, c.Ext
				break
			}
		}
	}
	switch {
	case errors.Is(err, auth.ErrNoSuchUser):
		fmt.Fprintln(stderr, "Invalid user specified.")
		return nil, "", ExitNoUser
	case err != nil:
		fmt.Fprintf(stderr, "maildrop: looking up %s: %v\n", name, err)
		return nil, "", ExitTempFail
	}
	return acct, ext, 0
}

// invokingAccount is the account of the user running maildrop: the userdb
// entry of the same name when there is one, else the passwd entry.
func invokingAccount(ctx context.Context, svc *auth.Service) (*auth.Account, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("who am I: %w", err)
	}
	if svc != nil {
		if a, err := svc.Lookup(ctx, u.Username); err == nil && a.UID == os.Getuid() {
			return a, nil
		}
	}
	home := u.HomeDir
	if h := os.Getenv("HOME"); h != "" && os.Getuid() != 0 {
		home = h
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	acct := &auth.Account{Name: u.Username, UID: uid, GID: gid, Home: home, Module: "passwd"}
	if sh := passwdShell(u.Username); sh != "" {
		acct.Fields = map[string]string{"shell": sh}
	}
	return acct, nil
}

// passwdShell is the login shell /etc/passwd gives name, maildrop's $SHELL
// in manual mode; "" when the file has no entry for name.
func passwdShell(name string) string {
	b, err := readBounded("/etc/passwd", 4<<20)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimRight(line, "\n"), ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}

// specialFilter finds maildrop -M's file: $HOME/.mailfilters/NAME, else
// NAME with its last "-part" replaced by "-default", repeatedly, else
// "default". The directory must be the account's and private.
func specialFilter(home, name string) (string, error) {
	dir := filepath.Join(home, ".mailfilters")
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("-M: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("-M: %s must not have group or world permissions", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return "", fmt.Errorf("-M: %s is not owned by uid %d", dir, os.Geteuid())
	}
	candidates := []string{name}
	for p := name; ; {
		i := strings.LastIndexByte(p, '-')
		if i < 0 {
			break
		}
		p = p[:i]
		candidates = append(candidates, p+"-default")
	}
	candidates = append(candidates, "default")
	for _, c := range candidates {
		f := filepath.Join(dir, c)
		if fileExists(f) {
			return f, nil
		}
	}
	return "", fmt.Errorf("-M: no filter %s in %s", name, dir)
}

// dropPrivileges switches the whole process (every thread: Go's
// syscall.Setuid does so on Linux) to uid and gid, supplementary groups
// first, then the group, then the user, so that root cannot be regained.
func dropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

// minimalConfig is the part of a configuration directory delivery needs,
// read without policy.Load's checks of everything else; nil when the
// directory has no compiled userdb.
func minimalConfig(dir string) *policy.Config {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	c := &policy.Config{Dir: abs, UserdbSource: filepath.Join(abs, "userdb"), UserdbDB: filepath.Join(abs, "userdb.db")}
	if !fileExists(c.UserdbDB) {
		return nil
	}
	if b, err := readBounded(filepath.Join(abs, "me"), 4096); err == nil {
		c.Me, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	return c
}
