// Package authconfig reads which authentication modules to ask, and
// their settings, from the configuration directory (the authmodulelist
// setting, the SQL modules' authmysqlrc and authpgsqlrc, and authldaprc),
// and opens
// them, for the server and for every tool that looks accounts up as the
// server does (authtest, sendmail, maildrop -d).
package authconfig

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"postern/auth"
	"postern/auth/authdaemon"
	"postern/auth/ldapauth"
	"postern/auth/pamauth"
	"postern/auth/sqlauth"
	"postern/auth/userdb"
	"postern/policy"
)

// ModuleListSetting names the modules the authentication service asks,
// in order, as Courier's authdaemonrc authmodulelist does: authuserdb,
// authmysql, authpgsql, authldap, authpam (and authdaemon, a Courier
// authdaemond asked over its socket), separated by blanks (quotes, as in authdaemonrc,
// are allowed). Without it only the userdb is asked.
const ModuleListSetting = "authmodulelist"

// Spec is one entry of authmodulelist: the userdb, or an SQL
// module with its parsed configuration.
type Spec struct {
	name  string
	sql   *sqlauth.Config  // authmysql, authpgsql
	ldap  *ldapauth.Config // authldap
	pam   bool             // authpam
	cache auth.CacheConfig // authcache, for every module but the userdb

	// daemon is the socket of the authdaemond the authdaemon module asks.
	daemon string
}

// CacheSetting keeps recent answers of the SQL, LDAP and PAM modules
// (auth.Cache): lines "ttl DURATION", "negativettl DURATION", "size N".
// Without it nothing is cached.
const CacheSetting = "authcache"

// Cache defaults, for the lines the authcache setting leaves out.
const (
	DefaultCacheTTL         = 5 * time.Minute
	DefaultCacheNegativeTTL = 30 * time.Second
	DefaultCacheSize        = 10000
)

// ReadCache reads the authcache setting; without it, a configuration that
// caches nothing.
func ReadCache(dir string) (auth.CacheConfig, error) {
	lines, err := policy.ReadSetting(dir, CacheSetting)
	if errors.Is(err, policy.ErrNotSet) {
		return auth.CacheConfig{}, nil
	}
	if err != nil {
		return auth.CacheConfig{}, err
	}
	cfg := auth.CacheConfig{TTL: DefaultCacheTTL, NegativeTTL: DefaultCacheNegativeTTL, Size: DefaultCacheSize}
	for _, l := range lines {
		f := strings.Fields(l.Text)
		if len(f) != 2 {
			return auth.CacheConfig{}, l.Errorf("want NAME VALUE (ttl 5m, negativettl 30s, size 10000)")
		}
		switch f[0] {
		case "ttl", "negativettl":
			d, err := time.ParseDuration(f[1])
			if err != nil || d < 0 {
				return auth.CacheConfig{}, l.Errorf("%s %q: want a duration such as 5m (0 keeps nothing)", f[0], f[1])
			}
			if f[0] == "ttl" {
				cfg.TTL = d
			} else {
				cfg.NegativeTTL = d
			}
		case "size":
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 0 || n > 10_000_000 {
				return auth.CacheConfig{}, l.Errorf("size %q: want a number of entries, 0 to 10000000", f[1])
			}
			cfg.Size = n
		default:
			return auth.CacheConfig{}, l.Errorf("unknown setting %q (ttl, negativettl, size)", f[0])
		}
	}
	return cfg, nil
}

// ClientSetting names the socket of a Courier authdaemond that the
// authdaemon module asks (a path, relative to the configuration directory);
// without it, authdaemon.DefaultSocket.
const ClientSetting = "authdaemonclient"

// readClient reads the authdaemonclient setting. A path equal to the
// authdaemonsocket setting's would have the server ask itself forever.
func readClient(dir string, l policy.Line) (string, error) {
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return filepath.Clean(p)
	}
	path := authdaemon.DefaultSocket
	lines, err := policy.ReadSetting(dir, ClientSetting)
	switch {
	case errors.Is(err, policy.ErrNotSet):
	case err != nil:
		return "", err
	case len(lines) != 1:
		return "", lines[len(lines)-1].Errorf("%s takes one line, the socket's path", ClientSetting)
	default:
		path = abs(lines[0].Text)
	}
	own, err := policy.ReadSetting(dir, "authdaemonsocket")
	if err == nil && len(own) > 0 && abs(own[0].Text) == path {
		return "", l.Errorf("authdaemon would ask this server's own socket %s (authdaemonsocket); point %s at the other authdaemond", path, ClientSetting)
	}
	return path, nil
}

// Name is the module's name in authmodulelist (authuserdb, authpgsql, ...).
func (s Spec) Name() string { return s.name }

// Read reads authmodulelist and each SQL module's file, and
// returns their errors with file and line.
func Read(dir string) ([]Spec, error) {
	lines, err := policy.ReadSetting(dir, ModuleListSetting)
	if errors.Is(err, policy.ErrNotSet) {
		return []Spec{{name: "authuserdb"}}, nil
	}
	if err != nil {
		return nil, err
	}
	var specs []Spec
	seen := map[string]bool{}
	for _, l := range lines {
		text := l.Text
		if k, v, ok := strings.Cut(text, "="); ok && strings.TrimSpace(k) == "authmodulelist" {
			text = v // a line copied from authdaemonrc
		}
		for _, w := range strings.Fields(strings.Trim(strings.TrimSpace(text), `"'`)) {
			w = strings.Trim(w, `"'`)
			name := w
			if !strings.HasPrefix(name, "auth") {
				name = "auth" + name
			}
			if seen[name] {
				return nil, l.Errorf("%s listed twice", w)
			}
			seen[name] = true
			switch name {
			case "authuserdb":
				specs = append(specs, Spec{name: name})
			case "authmysql", "authpgsql":
				d := sqlauth.MySQL
				if name == "authpgsql" {
					d = sqlauth.Postgres
				}
				rc, err := policy.ReadSetting(dir, d.Setting())
				if errors.Is(err, policy.ErrNotSet) {
					return nil, l.Errorf("%s is listed, but %s is missing", w, d.Setting())
				}
				if err != nil {
					return nil, err
				}
				cfg, err := sqlauth.Parse(d, rc)
				if err != nil {
					return nil, err
				}
				specs = append(specs, Spec{name: name, sql: cfg})
			case "authldap":
				rc, err := policy.ReadSetting(dir, ldapauth.Setting)
				if errors.Is(err, policy.ErrNotSet) {
					return nil, l.Errorf("%s is listed, but %s is missing", w, ldapauth.Setting)
				}
				if err != nil {
					return nil, err
				}
				cfg, err := ldapauth.Parse(rc)
				if err != nil {
					return nil, err
				}
				specs = append(specs, Spec{name: name, ldap: cfg})
			case "authdaemon":
				path, err := readClient(dir, l)
				if err != nil {
					return nil, err
				}
				specs = append(specs, Spec{name: name, daemon: path})
			case "authpam":
				if !pamauth.Available {
					_, err := pamauth.Open(pamauth.Config{}, nil)
					return nil, l.Errorf("%v", err)
				}
				specs = append(specs, Spec{name: name, pam: true})
			case "authshadow", "authpwd", "authvchkpw", "authcustom", "authpipe", "authsqlite":
				return nil, l.Errorf("%s: Courier has this module; Postern does not have it yet (available: authuserdb, authmysql, authpgsql, authldap, authpam, authdaemon)", w)
			default:
				return nil, l.Errorf("unknown authentication module %q (available: authuserdb, authmysql, authpgsql, authldap, authpam, authdaemon)", w)
			}
		}
	}
	if len(specs) == 0 {
		return nil, &policy.Error{File: lines[0].File, Reason: "no module listed"}
	}
	cache, err := ReadCache(dir)
	if err != nil {
		return nil, err
	}
	for i := range specs {
		if specs[i].name != "authuserdb" { // local and fast; and recompiled often
			specs[i].cache = cache
		}
	}
	return specs, nil
}

// Open opens the modules of specs in order; udb is the userdb's.
// The returned close function closes the SQL and LDAP modules'
// connections.
func Open(specs []Spec, udb *userdb.DB, log *slog.Logger) ([]auth.Module, func(), error) {
	var mods []auth.Module
	var closers []io.Closer
	closeAll := func() {
		for _, m := range closers {
			m.Close()
		}
	}
	for _, s := range specs {
		if s.daemon != "" {
			mods = append(mods, auth.NewCache(authdaemon.NewClient(s.daemon), s.cache))
			continue
		}
		if s.pam {
			m, err := pamauth.Open(pamauth.Config{}, log)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			mods = append(mods, auth.NewCache(m, s.cache))
			continue
		}
		if s.ldap != nil {
			m := ldapauth.Open(s.ldap, log)
			closers = append(closers, m)
			mods = append(mods, auth.NewCache(m, s.cache))
			continue
		}
		if s.sql == nil {
			if udb != nil {
				mods = append(mods, udb)
			}
			continue
		}
		m, err := sqlauth.Open(s.sql, log)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s: %w", s.name, err)
		}
		closers = append(closers, m)
		mods = append(mods, auth.NewCache(m, s.cache))
	}
	return mods, closeAll, nil
}

// Modules reads and opens the modules the configuration in dir lists.
// The close function closes the SQL modules.
func Modules(dir string, udb *userdb.DB, log *slog.Logger) ([]auth.Module, func(), error) {
	specs, err := Read(dir)
	if err != nil {
		return nil, nil, err
	}
	return Open(specs, udb, log)
}

// Equal reports whether two lists name the same modules with the same
// settings (a reload then keeps the open ones).
func Equal(a, b []Spec) bool { return reflect.DeepEqual(a, b) }
