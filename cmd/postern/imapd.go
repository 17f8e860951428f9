package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"postern/auth"
	"postern/auth/authconfig"
	"postern/auth/userdb"
	"postern/mailbox/imap"
	"postern/mailbox/proxy"
	"postern/policy"
)

const imapdUsage = `Usage: postern imapd [--preauth] [MAILDIR]

Serves one IMAP session on standard input and output, as Courier's imapd
and Dovecot's imap do when started by inetd, by systemd (a socket unit with
Accept=yes), or through ssh.

Without --preauth the client logs in as on the server's listeners, against
the accounts of CONFIGDIR (the authentication modules of authmodulelist),
with STARTTLS when the configuration has a certificate; a plain-text login
needs STARTTLS first unless insecureauth allows it.

With --preauth (or, as Courier's imapd, with AUTHENTICATED set in the
environment) the session starts logged in ("* PREAUTH") as the user running
the command, on MAILDIR, or $MAILDIR, or $HOME/Maildir: no configuration,
no password. This is the ssh tunnel of mutt, mbsync and offlineimap:

  mutt:    set tunnel="ssh -q mail.example.org postern imapd --preauth"
  mbsync:  Tunnel "ssh -q mail.example.org postern imapd --preauth"

Exit status: 0 when the session ended, 1 when it could not start, 78 for a
configuration error. Documented in docs/imapd.md.
`

func runIMAPD(e *env, args []string) int {
	fs := flag.NewFlagSet("imapd", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), imapdUsage) }
	preauth := fs.Bool("preauth", os.Getenv("AUTHENTICATED") != "", "start logged in as the user running the command")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() > 1 || (fs.NArg() == 1 && !*preauth) {
		fmt.Fprint(e.stderr, "postern imapd: a MAILDIR goes with --preauth\n", imapdUsage)
		return 64
	}
	// The log goes to stderr (inetd and sshd keep it apart from the
	// session); warnings and errors only.
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn := stdioConn(e.stdin, e.stdout)
	if *preauth {
		acct, err := preauthAccount(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(e.stderr, "postern imapd: %v\n", err)
			return 1
		}
		host, _ := os.Hostname()
		srv := imap.NewServer(imap.Options{Hostname: host, Logger: log})
		if err := srv.ServeConn(conn, acct); err != nil {
			fmt.Fprintf(e.stderr, "postern imapd: %v\n", err)
			return 1
		}
		return 0
	}
	cfg, svc, done, code := stdioAuth(e, "imapd", log)
	if code != 0 {
		return code
	}
	defer done()
	srv := imap.NewServer(imap.Options{
		Hostname:          cfg.Me,
		TLSConfig:         cfg.TLSConfig(),
		Auth:              svc,
		Logger:            log,
		AllowInsecureAuth: cfg.InsecureAuth,
		Proxy:             proxy.FromPolicy(cfg, proxy.IMAP, log),
		CourierNamespace:  cfg.IMAPCourierNS,
		SharedRegistry:    filepath.Join(cfg.DataDir, "state", "imap-shared"),
	})
	if err := srv.ServeConn(conn, nil); err != nil {
		fmt.Fprintf(e.stderr, "postern imapd: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return 0
}

// stdioAuth loads the configuration and opens the authentication modules
// for a session on standard input (imapd, pop3d): the configuration, the
// service, what closes the modules, and a non-zero exit status on failure.
// There is no failed-login guard: each session is a process of its own,
// which would forget its counts (inetd's and sshd's own limits apply).
func stdioAuth(e *env, cmd string, log *slog.Logger) (*policy.Config, *auth.Service, func(), int) {
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern %s: configuration:\n%v\n", cmd, err)
		return nil, nil, nil, 78
	}
	db, err := userdb.Open(cfg.UserdbDB)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.stderr, "postern %s: %v\n", cmd, err)
		return nil, nil, nil, 1
	}
	modules, closeModules, err := authconfig.Modules(cfg.Dir, db, log)
	if err != nil {
		if db != nil {
			db.Close()
		}
		fmt.Fprintf(e.stderr, "postern %s: %v\n", cmd, err)
		return nil, nil, nil, 78
	}
	done := func() {
		closeModules()
		if db != nil {
			db.Close()
		}
	}
	return cfg, auth.NewService(modules...), done, 0
}

// preauthAccount is the user running the command, on maildir (or
// $MAILDIR, or $HOME/Maildir), which must be a Maildir already.
func preauthAccount(maildir string) (*auth.Account, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("who is running this: %w", err)
	}
	name := os.Getenv("AUTHENTICATED")
	if name == "" {
		name = u.Username
	}
	if maildir == "" {
		maildir = os.Getenv("MAILDIR")
	}
	if maildir == "" {
		maildir = filepath.Join(u.HomeDir, "Maildir")
	}
	if !filepath.IsAbs(maildir) {
		home := os.Getenv("HOME")
		if home == "" {
			home = u.HomeDir
		}
		maildir = filepath.Join(home, maildir)
	}
	if st, err := os.Stat(filepath.Join(maildir, "cur")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/ in it); make one with postern maildirmake", maildir)
	}
	return &auth.Account{Name: name, Home: u.HomeDir, Maildir: maildir, UID: os.Getuid(), GID: os.Getgid(), Module: "preauth"}, nil
}

// stdioConn is the session's connection: the inherited socket itself when
// standard input is one (inetd, systemd), so that addresses and deadlines
// work; otherwise a pipe pair (ssh).
func stdioConn(in io.Reader, out io.Writer) net.Conn {
	if f, ok := in.(*os.File); ok {
		if c, err := net.FileConn(f); err == nil {
			return c
		}
	}
	return &pipeConn{in: in, out: out}
}

// pipeConn is a net.Conn over a reader and a writer. Deadlines are not
// kept: the session's idle timeout is left to the other end (sshd, the
// client), as with Courier's imapd on a pipe.
type pipeConn struct {
	in  io.Reader
	out io.Writer
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *pipeConn) Close() error {
	if c, ok := p.out.(io.Closer); ok {
		c.Close()
	}
	return nil
}
func (p *pipeConn) LocalAddr() net.Addr                { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr               { return pipeAddr{} }
func (p *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "stdin" }
