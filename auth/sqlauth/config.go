// Package sqlauth is the authentication service's SQL modules: Courier
// authlib's authmysql and authpgsql, configured by the same authmysqlrc and
// authpgsqlrc files, against MySQL/MariaDB (github.com/go-sql-driver/mysql)
// and PostgreSQL (github.com/jackc/pgx/v5). An admin moving from Courier
// copies those files into Postern's configuration directory.
//
// A lookup asks for one row: the login name, crypted and clear password,
// uid, gid, home, Maildir, quota, full name and options, either from the
// table and fields the file names (SELECT ... WHERE LOGIN_FIELD = 'name'
// AND (WHERE_CLAUSE)) or from the admin's own SELECT_CLAUSE with $(local_part),
// $(domain) and $(service) filled in. Names that could not be quoted safely
// in every SQL dialect (quotes, backslashes, control characters) are never
// sent: they are unknown users. The accounts are listed (authenumerate,
// shared folders) by ENUMERATE_CLAUSE, or a query built from the table.
package sqlauth

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"postern/auth/rcfile"
	"postern/policy"
)

// Dialect is the kind of database a module talks to.
type Dialect string

const (
	MySQL    Dialect = "mysql" // also MariaDB
	Postgres Dialect = "pgsql"
)

// Setting is the configuration file name of each dialect, as Courier names
// it.
func (d Dialect) Setting() string { return "auth" + string(d) + "rc" }

// ModuleName is the module's name in authmodulelist and in logs.
func (d Dialect) ModuleName() string { return "auth" + string(d) }

func (d Dialect) prefix() string { return strings.ToUpper(string(d)) + "_" }

// Config is one authmysqlrc or authpgsqlrc.
type Config struct {
	Dialect Dialect
	File    string // where it was read from, for messages

	// Where the database is. MySQL: Server (host name, or empty for the
	// local socket), Port, Socket, Username, Password. PostgreSQL:
	// Connection, a libpq connection string ("host=... user=...").
	// Database names the database for both.
	Server, Socket, Username, Password string
	Port                               int
	Connection                         string
	Database                           string
	CharacterSet                       string
	// TLS for MySQL (MYSQL_SSL_*): client key and certificate, and the
	// authority that signed the server's certificate.
	SSLKey, SSLCert, SSLCACert string

	UserTable       string
	CryptPWField    string
	ClearPWField    string
	DefaultDomain   string
	UIDField        string
	GIDField        string
	LoginField      string
	HomeField       string
	NameField       string
	MaildirField    string
	DefaultDelivery string
	QuotaField      string
	AuxOptionsField string
	WhereClause     string
	SelectClause    string
	EnumerateClause string
	ChpassClause    string
}

// keys maps each file key (without its MYSQL_/PGSQL_ prefix) to the field
// it sets; "" marks keys Courier documents that Postern accepts and ignores.
func (c *Config) keys() map[string]*string {
	return map[string]*string{
		"SERVER": &c.Server, "USERNAME": &c.Username, "PASSWORD": &c.Password,
		"SOCKET": &c.Socket, "CONNECTION": &c.Connection, "DATABASE": &c.Database,
		"CHARACTER_SET": &c.CharacterSet,
		"SSL_KEY":       &c.SSLKey, "SSL_CERT": &c.SSLCert, "SSL_CACERT": &c.SSLCACert,
		"USER_TABLE": &c.UserTable, "CRYPT_PWFIELD": &c.CryptPWField, "CLEAR_PWFIELD": &c.ClearPWField,
		"DEFAULT_DOMAIN": &c.DefaultDomain, "UID_FIELD": &c.UIDField, "GID_FIELD": &c.GIDField,
		"LOGIN_FIELD": &c.LoginField, "HOME_FIELD": &c.HomeField, "NAME_FIELD": &c.NameField,
		"MAILDIR_FIELD": &c.MaildirField, "DEFAULTDELIVERY": &c.DefaultDelivery,
		"QUOTA_FIELD": &c.QuotaField, "AUXOPTIONS_FIELD": &c.AuxOptionsField,
		"WHERE_CLAUSE": &c.WhereClause, "SELECT_CLAUSE": &c.SelectClause,
		"ENUMERATE_CLAUSE": &c.EnumerateClause, "CHPASS_CLAUSE": &c.ChpassClause,
	}
}

// ignored are keys of Courier's files that mean nothing here: MYSQL_OPT
// (client flags), MYSQL_SSL_CAPATH and MYSQL_SSL_CIPHERS (Go's TLS picks
// its ciphers; give the authority as MYSQL_SSL_CACERT).
var ignored = map[string]bool{"OPT": true, "SSL_CAPATH": true, "SSL_CIPHERS": true}

// Parse reads the lines of an authmysqlrc or authpgsqlrc: "NAME VALUE"
// per line (blanks between), a value continued on the next line by a
// backslash at the end, and comments. Unknown names, duplicates and a
// missing user table or password field are errors with file and line.
func Parse(d Dialect, lines []policy.Line) (*Config, error) {
	c := &Config{Dialect: d, LoginField: "id"}
	if len(lines) > 0 {
		c.File = lines[0].File
	}
	entries, err := rcfile.Parse(lines, d.prefix(), d.Setting())
	if err != nil {
		return nil, err
	}
	keys := c.keys()
	for _, e := range entries {
		name := d.prefix() + e.Key
		if e.Value == "" && e.Key != "PASSWORD" {
			return nil, e.Line.Errorf("%s has no value", name)
		}
		switch {
		case e.Key == "PORT":
			n, err := strconv.Atoi(e.Value)
			if err != nil || n < 0 || n > 65535 {
				return nil, e.Line.Errorf("%s: %q is not a port number", name, e.Value)
			}
			c.Port = n
		case ignored[e.Key]:
		case keys[e.Key] != nil:
			*keys[e.Key] = e.Value
		default:
			return nil, e.Line.Errorf("unknown setting %s", name)
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) check() error {
	fail := func(format string, args ...any) error {
		return &policy.Error{File: c.File, Reason: fmt.Sprintf(format, args...)}
	}
	if c.SelectClause == "" {
		if c.UserTable == "" {
			return fail("%sUSER_TABLE (or %sSELECT_CLAUSE) is required", c.Dialect.prefix(), c.Dialect.prefix())
		}
		if c.CryptPWField == "" && c.ClearPWField == "" {
			return fail("%sCRYPT_PWFIELD or %sCLEAR_PWFIELD is required", c.Dialect.prefix(), c.Dialect.prefix())
		}
		for _, f := range []struct{ key, v string }{{"UID_FIELD", c.UIDField}, {"GID_FIELD", c.GIDField}, {"HOME_FIELD", c.HomeField}} {
			if f.v == "" {
				return fail("%s%s is required", c.Dialect.prefix(), f.key)
			}
		}
	}
	if c.Dialect == MySQL && c.Connection != "" {
		return fail("MYSQL_CONNECTION is not a MySQL setting; use MYSQL_SERVER, MYSQL_PORT, MYSQL_USERNAME")
	}
	if c.Dialect == Postgres && (c.Server != "" || c.Socket != "") {
		return fail("give PostgreSQL's host and port in PGSQL_CONNECTION (host=... port=...)")
	}
	if c.Dialect == Postgres {
		if _, err := pgx.ParseConfig(c.Connection); err != nil {
			return fail("PGSQL_CONNECTION: %v", err)
		}
	}
	return nil
}
