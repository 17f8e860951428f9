package sqlauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"postern/auth"
	"postern/auth/passwd"
)

// queryTimeout bounds one lookup when the caller's context has no sooner
// deadline: a database that does not answer is a temporary failure, not a
// hung login.
const queryTimeout = 10 * time.Second

// Module is an authentication module backed by one database.
type Module struct {
	cfg   *Config
	db    *sql.DB
	log   *slog.Logger
	query string // the default query, with one placeholder for the name
}

var _ auth.Module = (*Module)(nil)

// Open prepares a module for cfg. It does not connect yet: the first
// lookup does, and a database that is down then is a temporary failure,
// so a server can start while its database is still coming up.
func Open(cfg *Config, log *slog.Logger) (*Module, error) {
	if log == nil {
		log = slog.Default()
	}
	var db *sql.DB
	switch cfg.Dialect {
	case MySQL:
		mc, err := mysqlConfig(cfg)
		if err != nil {
			return nil, err
		}
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.File, err)
		}
		db = sql.OpenDB(conn)
	case Postgres:
		pc, err := pgx.ParseConfig(cfg.Connection)
		if err != nil {
			return nil, fmt.Errorf("%s: PGSQL_CONNECTION: %w", cfg.File, err)
		}
		if cfg.Database != "" {
			pc.Database = cfg.Database
		}
		if cfg.CharacterSet != "" {
			pc.RuntimeParams["client_encoding"] = cfg.CharacterSet
		}
		if pc.ConnectTimeout == 0 {
			pc.ConnectTimeout = 5 * time.Second
		}
		db = stdlib.OpenDB(*pc)
	default:
		return nil, fmt.Errorf("sqlauth: unknown dialect %q", cfg.Dialect)
	}
	// A few connections are plenty: each lookup is one short query.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	m := &Module{cfg: cfg, db: db, log: log.With("module", cfg.Dialect.ModuleName())}
	m.query = m.defaultQuery()
	return m, nil
}

func mysqlConfig(cfg *Config) (*mysql.Config, error) {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.DBName = cfg.Username, cfg.Password, cfg.Database
	switch {
	case cfg.Socket != "":
		mc.Net, mc.Addr = "unix", cfg.Socket
	case cfg.Server == "" || cfg.Server == "localhost" && cfg.Port == 0:
		// As libmysqlclient: "localhost" without a port is the local
		// socket.
		mc.Net, mc.Addr = "unix", "/run/mysqld/mysqld.sock"
	default:
		port := cfg.Port
		if port == 0 {
			port = 3306
		}
		mc.Net, mc.Addr = "tcp", net.JoinHostPort(cfg.Server, strconv.Itoa(port))
	}
	mc.Timeout = 5 * time.Second
	mc.ReadTimeout = queryTimeout
	mc.WriteTimeout = queryTimeout
	if cfg.CharacterSet != "" {
		mc.Params = map[string]string{"charset": cfg.CharacterSet}
	}
	if cfg.SSLCACert != "" || cfg.SSLCert != "" {
		tc := &tls.Config{ServerName: cfg.Server, MinVersion: tls.VersionTLS12}
		if cfg.SSLCACert != "" {
			pem, err := os.ReadFile(cfg.SSLCACert)
			if err != nil {
				return nil, fmt.Errorf("%s: MYSQL_SSL_CACERT: %w", cfg.File, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: MYSQL_SSL_CACERT: no certificate in %s", cfg.File, cfg.SSLCACert)
			}
		}
		if cfg.SSLCert != "" {
			kp, err := tls.LoadX509KeyPair(cfg.SSLCert, cfg.SSLKey)
			if err != nil {
				return nil, fmt.Errorf("%s: MYSQL_SSL_CERT/KEY: %w", cfg.File, err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		mc.TLS = tc
	}
	return mc, nil
}

// Name is the module's name: authmysql or authpgsql.
func (m *Module) Name() string { return m.cfg.Dialect.ModuleName() }

// Close closes the module's connections.
func (m *Module) Close() error { return m.db.Close() }

// Lookup returns the account of name without checking a password.
func (m *Module) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	a, _, _, err := m.fetch(ctx, "courier", name)
	return a, err
}

// Authenticate checks password against the row's crypted password, or its
// clear one when the crypted field is empty.
func (m *Module) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	a, crypt, clear, err := m.fetch(ctx, service, name)
	if err != nil {
		return nil, err
	}
	switch {
	case crypt != "":
		ok, err := passwd.Verify(crypt, password)
		if err != nil {
			m.log.Warn("unusable password hash", "user", a.Name, "err", err)
			return nil, fmt.Errorf("%s: %w: %w", m.Name(), auth.ErrBadPassword, err)
		}
		if !ok {
			return nil, auth.ErrBadPassword
		}
	case clear != "":
		if subtle.ConstantTimeCompare([]byte(clear), []byte(password)) != 1 {
			return nil, auth.ErrBadPassword
		}
	default:
		return nil, fmt.Errorf("%s: %q has no password: %w", m.Name(), a.Name, auth.ErrBadPassword)
	}
	return a, nil
}

// columns, in the order of Courier's SELECT_CLAUSE: username, cryptpw,
// clearpw, uid, gid, home, maildir, quota, fullname, options.
const columns = 10

// defaultQuery builds the query from the table and field names, with a
// placeholder for the login name.
func (m *Module) defaultQuery() string {
	c := m.cfg
	if c.SelectClause != "" {
		return ""
	}
	or := func(field string) string {
		if field == "" {
			return "''"
		}
		return field
	}
	placeholder := "?"
	if c.Dialect == Postgres {
		placeholder = "$1"
	}
	q := fmt.Sprintf("SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM %s WHERE %s = %s",
		c.LoginField, or(c.CryptPWField), or(c.ClearPWField), c.UIDField, c.GIDField, c.HomeField,
		or(c.MaildirField), or(c.QuotaField), or(c.NameField), or(c.AuxOptionsField),
		c.UserTable, c.LoginField, placeholder)
	if c.WhereClause != "" {
		q += " AND (" + c.WhereClause + ")"
	}
	return q
}

// fetch runs the query for name and returns the account and its crypted
// and clear passwords.
func (m *Module) fetch(ctx context.Context, service, name string) (*auth.Account, string, string, error) {
	local, domain, full, ok := m.names(name)
	if !ok {
		return nil, "", "", auth.ErrNoSuchUser
	}
	ctx, cancel := withQueryTimeout(ctx)
	defer cancel()
	var rows *sql.Rows
	var err error
	if m.query != "" {
		rows, err = m.db.QueryContext(ctx, m.query, full)
	} else {
		q := Substitute(m.cfg.SelectClause, map[string]string{"local_part": local, "domain": domain, "service": service})
		rows, err = m.db.QueryContext(ctx, q)
	}
	if err != nil {
		return nil, "", "", m.temporary(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, "", "", m.temporary(err)
		}
		return nil, "", "", auth.ErrNoSuchUser
	}
	cols, err := rows.Columns()
	if err != nil {
		return nil, "", "", m.temporary(err)
	}
	if len(cols) < 6 || len(cols) > columns {
		// A SELECT_CLAUSE may leave out the optional trailing fields,
		// never the first six.
		return nil, "", "", fmt.Errorf("%s: the query returns %d columns, want 6 to 10 (username, cryptpw, clearpw, uid, gid, home[, maildir, quota, fullname, options]): %w", m.Name(), len(cols), auth.ErrTemporary)
	}
	vals := make([]sql.NullString, columns)
	ptrs := make([]any, len(cols))
	for i := range ptrs {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, "", "", fmt.Errorf("%s: %w: %w", m.Name(), auth.ErrTemporary, err)
	}
	v := func(i int) string { return strings.TrimSpace(vals[i].String) }
	a := &auth.Account{
		Name:    v(0),
		Home:    v(5),
		Maildir: v(6),
		Quota:   v(7),
		Module:  m.Name(),
		Options: map[string]string{},
		Fields:  map[string]string{},
	}
	if a.Name == "" {
		a.Name = full
	}
	for i, k := range []*int{&a.UID, &a.GID} {
		n, err := strconv.Atoi(v(3 + i))
		if err != nil || n < 0 {
			m.log.Warn("bad uid or gid in the database", "user", a.Name, "value", v(3+i))
			return nil, "", "", fmt.Errorf("%s: %q has a bad uid or gid %q: %w", m.Name(), a.Name, v(3+i), auth.ErrTemporary)
		}
		*k = n
	}
	if a.Home == "" || !strings.HasPrefix(a.Home, "/") {
		m.log.Warn("home directory missing or not absolute", "user", a.Name, "home", a.Home)
		return nil, "", "", fmt.Errorf("%s: %q has no absolute home directory: %w", m.Name(), a.Name, auth.ErrTemporary)
	}
	if a.Maildir != "" && !strings.HasPrefix(a.Maildir, "/") {
		a.Maildir = strings.TrimRight(a.Home, "/") + "/" + a.Maildir
	}
	setOptions(a, v(9))
	if g := v(8); g != "" {
		a.Fields["gecos"] = g
	}
	crypt, clear := v(1), vals[2].String
	if clear != "" {
		a.Fields["clearpw"] = clear
	}
	a.Fields["systempw"] = crypt
	return a, crypt, clear, nil
}

// names splits name (see split) and joins it again with the default
// domain: the login the table is searched for.
func (m *Module) names(name string) (local, domain, full string, ok bool) {
	local, domain, ok = m.split(name)
	full = local
	if domain != "" {
		full += "@" + domain
	}
	return local, domain, full, ok
}

// withQueryTimeout bounds a query by queryTimeout unless ctx has a
// deadline already.
func withQueryTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, has := ctx.Deadline(); has {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, queryTimeout)
}

// temporary wraps a database error: the module could not decide.
func (m *Module) temporary(err error) error {
	m.log.Warn("database error", "err", err)
	return fmt.Errorf("%s: %w: %w", m.Name(), auth.ErrTemporary, err)
}

// split cuts a login name into local part and domain, adding the default
// domain to a bare name. It refuses names that cannot be quoted safely in
// every SQL dialect and mode: quotes, backslashes, control characters,
// invalid UTF-8, and over-long names.
func (m *Module) split(name string) (local, domain string, ok bool) {
	if name == "" || len(name) > 320 || !utf8.ValidString(name) {
		return "", "", false
	}
	for _, r := range name {
		if r == '\'' || r == '"' || r == '\\' || r == '`' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return "", "", false
		}
	}
	i := strings.LastIndexByte(name, '@')
	if i < 0 {
		return name, m.cfg.DefaultDomain, true
	}
	local, domain = name[:i], name[i+1:]
	if local == "" || domain == "" {
		return "", "", false
	}
	return local, domain, true
}

// Substitute fills $(name) in clause with vars[name]; an unknown variable
// is left as it is. The values must already be safe to put between quotes
// (see split).
func Substitute(clause string, vars map[string]string) string {
	var b strings.Builder
	for {
		i := strings.Index(clause, "$(")
		if i < 0 {
			b.WriteString(clause)
			return b.String()
		}
		j := strings.IndexByte(clause[i:], ')')
		if j < 0 {
			b.WriteString(clause)
			return b.String()
		}
		name := clause[i+2 : i+j]
		b.WriteString(clause[:i])
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(clause[i : i+j+1])
		}
		clause = clause[i+j+1:]
	}
}

// Ping checks that the database answers (for postern config).
func (m *Module) Ping(ctx context.Context) error {
	if err := m.db.PingContext(ctx); err != nil {
		return m.temporary(err)
	}
	return nil
}

// SetPassword changes a's password in the database: with X_CHPASS_CLAUSE
// that statement, its $(local_part), $(domain), $(newpass) and
// $(newpass_crypt) filled in; without it, the crypted field (and the
// clear one, when the file names one) of a's row in X_USER_TABLE. The new
// hash is SHA-512-crypt. A database laid out by X_SELECT_CLAUSE needs
// X_CHPASS_CLAUSE.
func (m *Module) SetPassword(ctx context.Context, a *auth.Account, service, newPassword string) error {
	if newPassword == "" {
		return errors.New("empty password")
	}
	hash, err := passwd.Hash(newPassword, passwd.SchemeSHA512Crypt)
	if err != nil {
		return err
	}
	local, domain, full, ok := m.names(a.Name)
	if !ok {
		return auth.ErrNoSuchUser
	}
	ctx, cancel := withQueryTimeout(ctx)
	defer cancel()
	c := m.cfg
	var res sql.Result
	switch {
	case c.ChpassClause != "":
		// The clause quotes the values itself: a password that could
		// leave its quotes cannot be put in.
		if strings.ContainsAny(newPassword, `'"\`+"`") || strings.IndexFunc(newPassword, unicode.IsControl) >= 0 || !utf8.ValidString(newPassword) {
			return fmt.Errorf("%sCHPASS_CLAUSE cannot take a password with quotes, backslashes or control characters", c.Dialect.prefix())
		}
		q := Substitute(c.ChpassClause, map[string]string{"local_part": local, "domain": domain, "newpass": newPassword, "newpass_crypt": hash})
		res, err = m.db.ExecContext(ctx, q)
	case c.SelectClause != "":
		return fmt.Errorf("the accounts come from %sSELECT_CLAUSE: give %sCHPASS_CLAUSE to change passwords", c.Dialect.prefix(), c.Dialect.prefix())
	default:
		ph := func(i int) string {
			if c.Dialect == Postgres {
				return fmt.Sprintf("$%d", i)
			}
			return "?"
		}
		var sets []string
		var args []any
		if c.CryptPWField != "" {
			args = append(args, hash)
			sets = append(sets, c.CryptPWField+" = "+ph(len(args)))
		}
		if c.ClearPWField != "" {
			args = append(args, newPassword)
			sets = append(sets, c.ClearPWField+" = "+ph(len(args)))
		}
		args = append(args, full)
		q := fmt.Sprintf("UPDATE %s SET %s WHERE %s = %s", c.UserTable, strings.Join(sets, ", "), c.LoginField, ph(len(args)))
		if c.WhereClause != "" {
			q += " AND (" + c.WhereClause + ")"
		}
		res, err = m.db.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return m.temporary(err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s: no row of %q was changed", m.Name(), full)
	}
	return nil
}
