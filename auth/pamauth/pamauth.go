// Package pamauth is the authentication service's PAM module, Courier
// authlib's authpam: the accounts are the system's (getpwnam: uid, gid,
// home, the Maildir in the home), and PAM checks their passwords with the
// service's PAM configuration: /etc/pam.d/imap, pop3, esmtp (SMTP AUTH),
// webmail, as Courier's packages install them. PAM cannot list accounts:
// Enumerate reads the passwd file, as Courier's authpam does with getpwent.
//
// PAM is a C library: the module is built with cgo and the build tag
// "pam" (the Makefile sets it when libpam's headers are installed).
// Without them Available is false and Open says how to get it.
package pamauth

import (
	"context"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"postern/auth"
)

// Config is the module's configuration; nothing in Courier's authpam is
// configurable beyond the PAM files themselves.
type Config struct {
	// ConfDir, when set, is where the PAM service files are read instead
	// of /etc/pam.d (tests).
	ConfDir string
	// PasswdFile, when set, is the file Enumerate lists the accounts of
	// instead of /etc/passwd (tests).
	PasswdFile string
}

// Module is the PAM module.
type Module struct {
	cfg Config
	log *slog.Logger
}

var _ auth.Module = (*Module)(nil)

// Open returns the module, or an error when this binary has no PAM.
func Open(cfg Config, log *slog.Logger) (*Module, error) {
	if !Available {
		return nil, fmt.Errorf("authpam: this postern was built without PAM; install libpam0g-dev (Debian) and rebuild with make, which then adds -tags pam")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Module{cfg: cfg, log: log.With("module", "authpam")}, nil
}

// Name is "authpam".
func (m *Module) Name() string { return "authpam" }

// Close does nothing: PAM keeps no connection.
func (m *Module) Close() error { return nil }

// Lookup returns the system account of name.
func (m *Module) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	if !systemName(name) {
		return nil, auth.ErrNoSuchUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, ok := err.(user.UnknownUserError); ok {
			return nil, auth.ErrNoSuchUser
		}
		return nil, fmt.Errorf("authpam: %w: %w", auth.ErrTemporary, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || !strings.HasPrefix(u.HomeDir, "/") {
		return nil, fmt.Errorf("authpam: %s: unusable passwd entry: %w", name, auth.ErrTemporary)
	}
	a := &auth.Account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir, Module: "authpam",
		Options: map[string]string{}, Fields: map[string]string{}}
	if u.Name != "" {
		a.Fields["gecos"] = u.Name
	}
	return a, nil
}

// Authenticate looks the user up, then asks PAM: its auth and account
// stacks for the service's PAM name.
func (m *Module) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	a, err := m.Lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if password == "" {
		return nil, auth.ErrBadPassword
	}
	if err := m.check(PAMService(service), a.Name, password); err != nil {
		return nil, err
	}
	return a, nil
}

// PAMService is the PAM service name Courier uses for a protocol: "esmtp"
// for SMTP AUTH, the protocol's own name otherwise.
func PAMService(service string) string {
	if service == auth.ServiceSMTP {
		return "esmtp"
	}
	if service == "" {
		return "login"
	}
	return service
}

// systemName accepts what can be a system login name: no "@", no blanks
// or control characters, not empty, not over 256 bytes.
func systemName(name string) bool {
	if name == "" || len(name) > 256 || !utf8.ValidString(name) || strings.ContainsAny(name, "@/:") {
		return false
	}
	return strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0
}
