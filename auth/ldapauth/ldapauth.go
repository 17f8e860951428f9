// Package ldapauth is the authentication service's LDAP module, Courier
// authlib's authldap: accounts are directory entries found by their mail
// attribute under a base DN, configured by the same authldaprc file
// (LDAP_URI, LDAP_BASEDN, LDAP_MAIL, LDAP_HOMEDIR, ...), on
// github.com/go-ldap/ldap/v3. Passwords are checked against the entry's
// hash or clear-text attribute, or, with LDAP_AUTHBIND, by binding as the
// entry. The accounts are listed (authenumerate, shared folders) by a
// paged search with LDAP_ENUMERATE_FILTER.
package ldapauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os/user"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"postern/auth"
	"postern/auth/passwd"
	"postern/auth/rcfile"
	"postern/policy"
)

// Setting is the file's name in the configuration directory.
const Setting = "authldaprc"

// Config is one authldaprc.
type Config struct {
	File            string
	URIs            []string
	BaseDN          string
	BindDN, BindPW  string
	Timeout         time.Duration
	AuthBind        bool // check passwords by binding as the entry
	InitBind        bool // bind as BindDN before searching
	StartTLS        bool // LDAP_TLS 1: StartTLS on ldap:// URIs
	Deref           int
	MailAttr        string
	Filter          string
	Domain          string
	UIDAttr         string
	GIDAttr         string
	GlobUID         int // used when UIDAttr is empty
	GlobGID         int
	HomeAttr        string
	MailRoot        string
	MaildirAttr     string
	QuotaAttr       string
	FullNameAttr    string
	ClearPWAttr     string
	CryptPWAttr     string
	AuxOptions      [][2]string // LDAP attribute, option name
	EnumerateFilter string
}

// Parse reads an authldaprc's lines. Unknown names, values that do not
// parse and a configuration that could not find an account are errors
// with file and line.
func Parse(lines []policy.Line) (*Config, error) {
	c := &Config{Timeout: 5 * time.Second, InitBind: true, MailAttr: "mail", Deref: ldap.NeverDerefAliases, GlobUID: -1, GlobGID: -1}
	if len(lines) > 0 {
		c.File = lines[0].File
	}
	entries, err := rcfile.Parse(lines, "LDAP_", Setting)
	if err != nil {
		return nil, err
	}
	var server, port string
	var lastLine policy.Line
	strs := map[string]*string{
		"BASEDN": &c.BaseDN, "BINDDN": &c.BindDN, "BINDPW": &c.BindPW, "MAIL": &c.MailAttr,
		"FILTER": &c.Filter, "DOMAIN": &c.Domain, "UID": &c.UIDAttr, "GID": &c.GIDAttr,
		"HOMEDIR": &c.HomeAttr, "MAILROOT": &c.MailRoot, "MAILDIR": &c.MaildirAttr,
		"MAILDIRQUOTA": &c.QuotaAttr, "FULLNAME": &c.FullNameAttr, "CLEARPW": &c.ClearPWAttr,
		"CRYPTPW": &c.CryptPWAttr, "ENUMERATE_FILTER": &c.EnumerateFilter,
		"SERVER": &server, "PORT": &port,
	}
	bools := map[string]*bool{"AUTHBIND": &c.AuthBind, "INITBIND": &c.InitBind, "TLS": &c.StartTLS}
	for _, e := range entries {
		lastLine = e.Line
		name := "LDAP_" + e.Key
		if e.Value == "" && e.Key != "BINDPW" {
			return nil, e.Line.Errorf("%s has no value", name)
		}
		switch {
		case strs[e.Key] != nil:
			*strs[e.Key] = e.Value
		case bools[e.Key] != nil:
			switch e.Value {
			case "0":
				*bools[e.Key] = false
			case "1":
				*bools[e.Key] = true
			default:
				return nil, e.Line.Errorf("%s: %q is not 0 or 1", name, e.Value)
			}
		case e.Key == "URI":
			for _, u := range strings.Split(e.Value, ",") {
				u = strings.TrimSpace(u)
				pu, err := url.Parse(u)
				if err != nil || (pu.Scheme != "ldap" && pu.Scheme != "ldaps" && pu.Scheme != "ldapi") {
					return nil, e.Line.Errorf("%s: %q is not an ldap://, ldaps:// or ldapi:// URI", name, u)
				}
				c.URIs = append(c.URIs, u)
			}
		case e.Key == "PROTOCOL_VERSION":
			if e.Value != "3" {
				return nil, e.Line.Errorf("%s: only LDAP version 3 is spoken", name)
			}
		case e.Key == "TIMEOUT":
			n, err := strconv.Atoi(e.Value)
			if err != nil || n <= 0 || n > 3600 {
				return nil, e.Line.Errorf("%s: %q is not a number of seconds", name, e.Value)
			}
			c.Timeout = time.Duration(n) * time.Second
		case e.Key == "DEREF":
			d, ok := map[string]int{"never": ldap.NeverDerefAliases, "searching": ldap.DerefInSearching, "finding": ldap.DerefFindingBaseObj, "always": ldap.DerefAlways}[e.Value]
			if !ok {
				return nil, e.Line.Errorf("%s: %q is not never, searching, finding or always", name, e.Value)
			}
			c.Deref = d
		case e.Key == "GLOB_UID" || e.Key == "GLOB_GID":
			id, err := globalID(e.Key == "GLOB_UID", e.Value)
			if err != nil {
				return nil, e.Line.Errorf("%s: %v", name, err)
			}
			if e.Key == "GLOB_UID" {
				c.GlobUID = id
			} else {
				c.GlobGID = id
			}
		case e.Key == "AUXOPTIONS":
			for _, p := range strings.Split(e.Value, ",") {
				attr, opt, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok || attr == "" || opt == "" {
					return nil, e.Line.Errorf("%s: %q is not ATTRIBUTE=OPTION", name, p)
				}
				c.AuxOptions = append(c.AuxOptions, [2]string{attr, opt})
			}
		case e.Key == "DEFAULTDELIVERY":
			// Courier's MTA reads it; Postern's delivery follows the
			// account's .courier and filter files instead.
		case strings.HasPrefix(e.Key, "EMAILMAP"):
			return nil, e.Line.Errorf("%s: the two-step e-mail map is not supported; search by LDAP_MAIL and LDAP_FILTER", name)
		default:
			return nil, e.Line.Errorf("unknown setting %s", name)
		}
	}
	if server != "" {
		if len(c.URIs) > 0 {
			return nil, lastLine.Errorf("LDAP_SERVER and LDAP_URI both given; keep LDAP_URI")
		}
		host := server
		if port != "" {
			host = net.JoinHostPort(server, port)
		}
		c.URIs = []string{"ldap://" + host}
	}
	fail := func(format string, args ...any) error {
		return &policy.Error{File: c.File, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(c.URIs) == 0:
		return nil, fail("LDAP_URI is required")
	case c.BaseDN == "":
		return nil, fail("LDAP_BASEDN is required")
	case c.HomeAttr == "":
		return nil, fail("LDAP_HOMEDIR is required")
	case c.UIDAttr == "" && c.GlobUID < 0, c.GIDAttr == "" && c.GlobGID < 0:
		return nil, fail("give LDAP_UID and LDAP_GID (attributes), or LDAP_GLOB_UID and LDAP_GLOB_GID")
	case !c.AuthBind && c.CryptPWAttr == "" && c.ClearPWAttr == "":
		return nil, fail("LDAP_CRYPTPW or LDAP_CLEARPW is required, unless LDAP_AUTHBIND is 1")
	}
	if c.Filter != "" {
		if _, err := ldap.CompileFilter(c.Filter); err != nil {
			return nil, fail("LDAP_FILTER: %v", err)
		}
	}
	if c.EnumerateFilter != "" {
		// Courier's OpenLDAP library takes a filter without its outer
		// parentheses ("objectClass=mailUser"); go-ldap wants them.
		if !strings.HasPrefix(c.EnumerateFilter, "(") {
			c.EnumerateFilter = "(" + c.EnumerateFilter + ")"
		}
		if _, err := ldap.CompileFilter(c.EnumerateFilter); err != nil {
			return nil, fail("LDAP_ENUMERATE_FILTER: %v", err)
		}
	}
	return c, nil
}

// globalID reads LDAP_GLOB_UID/GID: a number, or a user or group name.
func globalID(uid bool, v string) (int, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return n, nil
	}
	var id string
	if uid {
		u, err := user.Lookup(v)
		if err != nil {
			return 0, err
		}
		id = u.Uid
	} else {
		g, err := user.LookupGroup(v)
		if err != nil {
			return 0, err
		}
		id = g.Gid
	}
	return strconv.Atoi(id)
}

// Module is an authentication module backed by an LDAP directory.
type Module struct {
	cfg  *Config
	log  *slog.Logger
	pool chan *ldap.Conn // bound connections kept for searches
}

var _ auth.Module = (*Module)(nil)

// poolSize bounds the kept connections.
const poolSize = 4

// Open prepares the module; it connects at the first lookup, so a server
// starts while the directory is down (its lookups fail for now).
func Open(cfg *Config, log *slog.Logger) *Module {
	if log == nil {
		log = slog.Default()
	}
	return &Module{cfg: cfg, log: log.With("module", "authldap"), pool: make(chan *ldap.Conn, poolSize)}
}

// Name is "authldap".
func (m *Module) Name() string { return "authldap" }

// Close closes the kept connections.
func (m *Module) Close() error {
	for {
		select {
		case c := <-m.pool:
			c.Close()
		default:
			return nil
		}
	}
}

// dial connects to the first URI that answers, with StartTLS when asked.
func (m *Module) dial() (*ldap.Conn, error) {
	var errs []error
	for _, u := range m.cfg.URIs {
		c, err := ldap.DialURL(u, ldap.DialWithDialer(&net.Dialer{Timeout: m.cfg.Timeout}))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.SetTimeout(m.cfg.Timeout)
		if m.cfg.StartTLS && strings.HasPrefix(u, "ldap://") {
			host := u
			if pu, err := url.Parse(u); err == nil {
				host = pu.Hostname()
			}
			if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
				c.Close()
				errs = append(errs, fmt.Errorf("%s: StartTLS: %w", u, err))
				continue
			}
		}
		return c, nil
	}
	return nil, errors.Join(errs...)
}

// conn returns a connection for searching: a kept one, or a new one bound
// as LDAP_BINDDN (anonymous without LDAP_INITBIND).
func (m *Module) conn() (*ldap.Conn, error) {
	select {
	case c := <-m.pool:
		if !c.IsClosing() {
			return c, nil
		}
		c.Close()
	default:
	}
	c, err := m.dial()
	if err != nil {
		return nil, err
	}
	if m.cfg.InitBind && m.cfg.BindDN != "" {
		if err := c.Bind(m.cfg.BindDN, m.cfg.BindPW); err != nil {
			c.Close()
			return nil, fmt.Errorf("bind as %s: %w", m.cfg.BindDN, err)
		}
	}
	return c, nil
}

func (m *Module) release(c *ldap.Conn) {
	select {
	case m.pool <- c:
	default:
		c.Close()
	}
}

// Lookup returns the account of name.
func (m *Module) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	a, _, err := m.find(ctx, name)
	return a, err
}

// Authenticate checks password by binding as the entry (LDAP_AUTHBIND),
// or against its hash or clear-text attribute.
func (m *Module) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	a, e, err := m.find(ctx, name)
	if err != nil {
		return nil, err
	}
	if m.cfg.AuthBind {
		if password == "" {
			// An empty password would be an unauthenticated bind,
			// which LDAP servers answer with success.
			return nil, auth.ErrBadPassword
		}
		c, err := m.dial()
		if err != nil {
			return nil, m.temporary(err)
		}
		defer c.Close()
		if err := c.Bind(e.DN, password); err != nil {
			if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				return nil, auth.ErrBadPassword
			}
			return nil, m.temporary(err)
		}
		return a, nil
	}
	crypt := e.GetAttributeValue(m.cfg.CryptPWAttr)
	clear := e.GetAttributeValue(m.cfg.ClearPWAttr)
	switch {
	case m.cfg.CryptPWAttr != "" && crypt != "":
		ok, err := passwd.Verify(crypt, password)
		if err != nil {
			m.log.Warn("unusable password hash", "user", a.Name, "err", err)
			return nil, fmt.Errorf("authldap: %w: %w", auth.ErrBadPassword, err)
		}
		if !ok {
			return nil, auth.ErrBadPassword
		}
	case m.cfg.ClearPWAttr != "" && clear != "":
		if subtle.ConstantTimeCompare([]byte(clear), []byte(password)) != 1 {
			return nil, auth.ErrBadPassword
		}
	default:
		return nil, fmt.Errorf("authldap: %q has no password: %w", a.Name, auth.ErrBadPassword)
	}
	return a, nil
}

// find searches for name's entry and makes its account.
func (m *Module) find(ctx context.Context, name string) (*auth.Account, *ldap.Entry, error) {
	full, ok := m.fullName(name)
	if !ok {
		return nil, nil, auth.ErrNoSuchUser
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, m.temporary(err)
	}
	filter := "(" + m.cfg.MailAttr + "=" + ldap.EscapeFilter(full) + ")"
	if m.cfg.Filter != "" {
		filter = "(&" + m.cfg.Filter + filter + ")"
	}
	req := ldap.NewSearchRequest(m.cfg.BaseDN, ldap.ScopeWholeSubtree, m.cfg.Deref, 2, int(m.cfg.Timeout/time.Second), false, filter, m.attributes(true), nil)
	var res *ldap.SearchResult
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var c *ldap.Conn
		if c, err = m.conn(); err != nil {
			return nil, nil, m.temporary(err)
		}
		res, err = c.Search(req)
		if err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			m.release(c)
			break
		}
		c.Close() // a kept connection the server has dropped: once more
	}
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, nil, auth.ErrNoSuchUser
		}
		return nil, nil, m.temporary(err)
	}
	switch {
	case res == nil || len(res.Entries) == 0:
		return nil, nil, auth.ErrNoSuchUser
	case len(res.Entries) > 1:
		// Two entries with one address: delivering to either could be
		// wrong; defer until the directory is fixed.
		m.log.Warn("more than one entry has this address", "user", full, "filter", filter)
		return nil, nil, fmt.Errorf("authldap: more than one entry for %q: %w", full, auth.ErrTemporary)
	}
	e := res.Entries[0]
	a, err := m.account(full, e)
	if err != nil {
		m.log.Warn("unusable entry", "dn", e.DN, "err", err)
		return nil, nil, fmt.Errorf("authldap: %s: %v: %w", e.DN, err, auth.ErrTemporary)
	}
	return a, e, nil
}

// attributes lists the attributes an account is made of, with the
// password attributes or without (a listing).
func (m *Module) attributes(passwords bool) []string {
	attrs := []string{m.cfg.MailAttr, m.cfg.HomeAttr}
	more := []string{m.cfg.UIDAttr, m.cfg.GIDAttr, m.cfg.MaildirAttr, m.cfg.QuotaAttr, m.cfg.FullNameAttr}
	if passwords {
		more = append(more, m.cfg.CryptPWAttr, m.cfg.ClearPWAttr)
	}
	for _, a := range more {
		if a != "" {
			attrs = append(attrs, a)
		}
	}
	for _, o := range m.cfg.AuxOptions {
		attrs = append(attrs, o[0])
	}
	return attrs
}

// account makes an entry into an account.
func (m *Module) account(full string, e *ldap.Entry) (*auth.Account, error) {
	a := &auth.Account{Name: full, Module: "authldap", Options: map[string]string{}, Fields: map[string]string{"dn": e.DN}}
	ids := []struct {
		attr string
		glob int
		to   *int
	}{{m.cfg.UIDAttr, m.cfg.GlobUID, &a.UID}, {m.cfg.GIDAttr, m.cfg.GlobGID, &a.GID}}
	for _, id := range ids {
		if id.attr == "" {
			*id.to = id.glob
			continue
		}
		v := e.GetAttributeValue(id.attr)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s %q is not a uid or gid", id.attr, v)
		}
		*id.to = n
	}
	a.Home = e.GetAttributeValue(m.cfg.HomeAttr)
	if a.Home != "" && !strings.HasPrefix(a.Home, "/") && m.cfg.MailRoot != "" {
		a.Home = path.Join(m.cfg.MailRoot, a.Home)
	}
	if !strings.HasPrefix(a.Home, "/") {
		return nil, fmt.Errorf("%s %q is not an absolute path (set LDAP_MAILROOT for relative ones)", m.cfg.HomeAttr, a.Home)
	}
	if m.cfg.MaildirAttr != "" {
		if md := e.GetAttributeValue(m.cfg.MaildirAttr); md != "" {
			if !strings.HasPrefix(md, "/") {
				md = path.Join(a.Home, md)
			}
			a.Maildir = md
		}
	}
	if m.cfg.QuotaAttr != "" {
		a.Quota = e.GetAttributeValue(m.cfg.QuotaAttr)
	}
	if m.cfg.FullNameAttr != "" {
		if g := e.GetAttributeValue(m.cfg.FullNameAttr); g != "" {
			a.Fields["gecos"] = g
		}
	}
	var opts []string
	for _, o := range m.cfg.AuxOptions {
		if v := e.GetAttributeValue(o[0]); v != "" {
			a.Options[o[1]] = v
			opts = append(opts, o[1]+"="+v)
		}
	}
	if len(opts) > 0 {
		a.Fields["options"] = strings.Join(opts, ",")
	}
	if m.cfg.CryptPWAttr != "" {
		a.Fields["systempw"] = e.GetAttributeValue(m.cfg.CryptPWAttr)
	}
	return a, nil
}

// fullName adds LDAP_DOMAIN to a bare name, and refuses names no address
// has (control characters, invalid UTF-8, over-long).
func (m *Module) fullName(name string) (string, bool) {
	if name == "" || len(name) > 320 || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", false
	}
	if !strings.Contains(name, "@") && m.cfg.Domain != "" {
		name += "@" + m.cfg.Domain
	}
	return name, true
}

func (m *Module) temporary(err error) error {
	m.log.Warn("directory error", "err", err)
	return fmt.Errorf("authldap: %w: %w", auth.ErrTemporary, err)
}

// Ping checks that a directory server answers and the bind succeeds (for
// postern config).
func (m *Module) Ping(ctx context.Context) error {
	c, err := m.conn()
	if err != nil {
		return m.temporary(err)
	}
	m.release(c)
	return nil
}

// SetPassword replaces a's LDAP_CRYPTPW attribute with a {CRYPT}
// SHA-512-crypt hash of newPassword (and LDAP_CLEARPW, when given, with
// the clear text), bound as LDAP_BINDDN: the directory must let that DN
// write those attributes.
func (m *Module) SetPassword(ctx context.Context, a *auth.Account, service, newPassword string) error {
	if newPassword == "" {
		return errors.New("empty password")
	}
	dn := a.Fields["dn"]
	if dn == "" {
		return errors.New("authldap: the account has no entry")
	}
	if m.cfg.CryptPWAttr == "" && m.cfg.ClearPWAttr == "" {
		return errors.New("authldap: without LDAP_CRYPTPW or LDAP_CLEARPW there is no attribute to change; change the password in the directory")
	}
	req := ldap.NewModifyRequest(dn, nil)
	if m.cfg.CryptPWAttr != "" {
		hash, err := passwd.Hash(newPassword, passwd.SchemeSHA512Crypt)
		if err != nil {
			return err
		}
		req.Replace(m.cfg.CryptPWAttr, []string{"{CRYPT}" + hash})
	}
	if m.cfg.ClearPWAttr != "" {
		req.Replace(m.cfg.ClearPWAttr, []string{newPassword})
	}
	c, err := m.conn()
	if err != nil {
		return m.temporary(err)
	}
	if err := c.Modify(req); err != nil {
		c.Close()
		return fmt.Errorf("authldap: change the password of %s: %w", dn, err)
	}
	m.release(c)
	return nil
}
