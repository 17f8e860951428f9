// Package auth is Postern's authentication service: one place where every
// protocol (SMTP AUTH, IMAP, POP3, SMAP, web) asks "who is this, and may they
// in?", and where the delivery agent asks "where does this user's mail go?".
//
// It plays the role of Courier's authdaemon. The service holds an ordered list
// of modules (the userdb, the SQL modules authmysql and authpgsql,
// authldap and authpam, in the order of the authmodulelist setting); a lookup or a
// login goes to each module in turn until one knows the user. A module that cannot answer
// right now (database down) returns an error wrapping ErrTemporary, which the
// protocols turn into a temporary failure (4xx, NO [UNAVAILABLE], -ERR [SYS/TEMP])
// rather than "no such user".
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// Errors a module returns; callers test them with errors.Is.
var (
	// ErrNoSuchUser means the module does not know the name.
	ErrNoSuchUser = errors.New("auth: no such user")
	// ErrBadPassword means the user exists but the password does not match.
	ErrBadPassword = errors.New("auth: wrong password")
	// ErrDisabled means the account may not use the asked-for service
	// (Courier's "disableimap", "disablepop3", ... options).
	ErrDisabled = errors.New("auth: service disabled for this account")
	// ErrTemporary means the module could not decide now (backend down,
	// timeout); the client should try again later.
	ErrTemporary = errors.New("auth: temporary failure")
)

// Service names, as Courier passes them to authentication modules. A
// per-service password field ("imappw", "pop3pw", "smtppw", "webmailpw") and
// a "disable<service>" option are looked up by these names.
const (
	ServiceIMAP    = "imap"
	ServicePOP3    = "pop3"
	ServiceSMTP    = "smtp"
	ServiceSMAP    = "imap" // Courier's SMAP rides on the IMAP server and its settings
	ServiceWebmail = "webmail"
)

// Account is what a module resolves a user name to: the same facts Courier's
// authtest prints.
type Account struct {
	Name    string // canonical login name, e.g. "alice@example.test"
	UID     int    // system uid that owns the mailbox
	GID     int    // system gid
	Home    string // home directory (filters, .courier files)
	Maildir string // the Maildir++ root; when empty, Home + "/Maildir"
	Quota   string // Maildir++ quota, e.g. "10000000S,1000C"; empty means none
	// Options are Courier's account options ("disableimap=1", "wbnochangepass=1", ...).
	Options map[string]string
	// Fields holds every field the module returned, for tools such as authtest
	// and for later modules' extras (e.g. "mailhost" for proxying).
	Fields map[string]string
	// Module names the module that answered.
	Module string
}

// MaildirPath returns where the account's mail is stored.
func (a *Account) MaildirPath() string {
	if a.Maildir != "" {
		return a.Maildir
	}
	return strings.TrimRight(a.Home, "/") + "/Maildir"
}

// Disabled reports whether the account's options switch service off, the way
// Courier reads "disable<service>=1".
func (a *Account) Disabled(service string) bool {
	v, ok := a.Options["disable"+service]
	return ok && v != "" && v != "0"
}

// Module is one source of accounts.
type Module interface {
	// Name is the module's short name ("userdb", "pam", "ldap", ...).
	Name() string
	// Lookup resolves a name to an account without checking a password
	// (delivery, pre-authenticated logins). Unknown names give ErrNoSuchUser.
	Lookup(ctx context.Context, name string) (*Account, error)
	// Authenticate checks the password for service and returns the account.
	// Unknown names give ErrNoSuchUser, wrong passwords ErrBadPassword.
	Authenticate(ctx context.Context, service, name, password string) (*Account, error)
}

// PasswordSetter is a module that can change an account's password
// (Courier's authpasswd, authtest's third argument).
type PasswordSetter interface {
	// SetPassword replaces the password that guards service for a, an
	// account this module returned.
	SetPassword(ctx context.Context, a *Account, service, newPassword string) error
}

// Service asks its modules in order.
type Service struct {
	modules atomic.Pointer[[]Module] // swapped whole at a reload
	guard   *Guard                   // counts failed logins of AuthenticateFrom; may be nil
}

// NewService returns a service that consults modules in the given order.
func NewService(modules ...Module) *Service {
	s := &Service{}
	s.modules.Store(&modules)
	return s
}

// Modules returns the modules in the order they are asked.
func (s *Service) Modules() []Module { return *s.modules.Load() }

// SetModules replaces the modules (a reload that changed authmodulelist or
// a module's settings). Lookups already running finish with the old ones.
func (s *Service) SetModules(modules ...Module) { s.modules.Store(&modules) }

// Lookup finds the account for name in the first module that knows it.
func (s *Service) Lookup(ctx context.Context, name string) (*Account, error) {
	var tempErr error
	for _, m := range s.Modules() {
		a, err := m.Lookup(ctx, name)
		switch {
		case err == nil:
			return a, nil
		case errors.Is(err, ErrNoSuchUser):
			continue
		case errors.Is(err, ErrTemporary):
			// Remember it: if no later module knows the user, the honest
			// answer is "try again", not "no such user".
			tempErr = err
		default:
			return nil, fmt.Errorf("auth %s: lookup %q: %w", m.Name(), name, err)
		}
	}
	if tempErr != nil {
		return nil, tempErr
	}
	return nil, ErrNoSuchUser
}

// Authenticate checks name and password for service against the first module
// that knows name. An account whose options disable service is refused with
// ErrDisabled even when the password matches.
func (s *Service) Authenticate(ctx context.Context, service, name, password string) (*Account, error) {
	var tempErr error
	for _, m := range s.Modules() {
		a, err := m.Authenticate(ctx, service, name, password)
		switch {
		case err == nil:
			if a.Disabled(service) {
				return nil, ErrDisabled
			}
			return a, nil
		case errors.Is(err, ErrNoSuchUser):
			continue
		case errors.Is(err, ErrTemporary):
			tempErr = err
		default:
			// ErrBadPassword and real errors stop here: a second module must
			// not be a way around a wrong password.
			return nil, err
		}
	}
	if tempErr != nil {
		return nil, tempErr
	}
	return nil, ErrNoSuchUser
}

// Enumerator is a module that can list its accounts (Courier's
// auth_enumerate, for authenumerate and for shared folders): the userdb,
// the SQL modules (X_ENUMERATE_CLAUSE), the LDAP module
// (LDAP_ENUMERATE_FILTER), PAM (the passwd file, as Courier's authpam),
// and the authdaemon client (another daemon's ENUMERATE).
type Enumerator interface {
	// Enumerate calls each with every account, in the module's order, and
	// stops at the first error each returns.
	Enumerate(ctx context.Context, each func(*Account) error) error
}

// EnumeratorOf returns m's Enumerator (looking through a Cache), or nil.
func EnumeratorOf(m Module) Enumerator {
	e, _ := Base(m).(Enumerator)
	return e
}

// Enumerate calls each with the accounts of every module that can list
// its own (Courier's auth_enumerate over authmodulelist), module by module
// in the service's order. A name an earlier module listed is left out, as
// a lookup of it finds the earlier module's account; a module's own list is
// passed on as the module gives it. The first error, a module's or each's,
// ends the listing (wrapped with the module's name when it is the
// module's): a partial list must not pass for a whole one.
func (s *Service) Enumerate(ctx context.Context, each func(*Account) error) error {
	return s.EnumerateByModule(ctx, nil, each)
}

// EnumerateByModule is Enumerate with start called before each listing
// module's accounts (authdaemond's "# module" lines); start's error ends
// the listing too.
func (s *Service) EnumerateByModule(ctx context.Context, start func(Module) error, each func(*Account) error) error {
	type lister struct {
		m Module
		e Enumerator
	}
	var listers []lister
	for _, m := range s.Modules() {
		if e := EnumeratorOf(m); e != nil {
			listers = append(listers, lister{m, e})
		}
	}
	// The names of the modules listed so far. The last module's are not
	// kept: no later module needs them, and with one module (the usual
	// case) a large directory costs no memory.
	earlier := map[string]struct{}{}
	for i, l := range listers {
		if start != nil {
			if err := start(l.m); err != nil {
				return err
			}
		}
		keep := i < len(listers)-1
		var listed []string
		var eachErr error
		err := l.e.Enumerate(ctx, func(a *Account) error {
			if _, dup := earlier[a.Name]; dup {
				return nil
			}
			if keep {
				listed = append(listed, a.Name)
			}
			if err := each(a); err != nil {
				eachErr = err
				return err
			}
			return nil
		})
		switch {
		case eachErr != nil:
			return eachErr
		case err != nil:
			return fmt.Errorf("auth %s: enumerate: %w", l.m.Name(), err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, n := range listed {
			earlier[n] = struct{}{}
		}
	}
	return nil
}
