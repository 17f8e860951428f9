package sqlauth

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"postern/auth"
)

// enumerateTimeout bounds a listing when the caller's context has no
// deadline: long enough for a large table, short enough that a database
// that stopped answering does not hold the listing forever.
const enumerateTimeout = 10 * time.Minute

var _ auth.Enumerator = (*Module)(nil)

// enumerateQuery is the query that lists the accounts, with Courier's
// columns: login name, uid, gid, home, and optionally Maildir and options.
// X_ENUMERATE_CLAUSE is the admin's own, with $(local_part) as "*",
// $(domain) as the default domain (or "*") and $(service) as "enumerate",
// as Courier fills them in; without it the query is built from the table
// and field names (uid, gid and home as Courier's defaults when a
// SELECT_CLAUSE configuration leaves them out) and X_WHERE_CLAUSE. ""
// means the accounts cannot be listed: only a SELECT_CLAUSE names the
// table.
func (m *Module) enumerateQuery() string {
	c := m.cfg
	if c.EnumerateClause != "" {
		domain := c.DefaultDomain
		if domain == "" {
			domain = "*"
		}
		return Substitute(c.EnumerateClause, map[string]string{"local_part": "*", "domain": domain, "service": "enumerate"})
	}
	if c.UserTable == "" {
		return ""
	}
	or := func(field, def string) string {
		if field == "" {
			return def
		}
		return field
	}
	q := fmt.Sprintf("SELECT %s, %s, %s, %s, %s, %s FROM %s",
		c.LoginField, or(c.UIDField, "uid"), or(c.GIDField, "gid"), or(c.HomeField, "home"),
		or(c.MaildirField, "''"), or(c.AuxOptionsField, "''"), c.UserTable)
	if c.WhereClause != "" {
		q += " WHERE (" + c.WhereClause + ")"
	}
	return q
}

// Enumerate calls each with every account of the table (auth.Enumerator),
// in the database's order. The rows are streamed, not gathered: a large
// table costs one row of memory at a time, and holds one connection for
// the listing. A row without a name, with a uid or gid that is not a
// number, or without an absolute home is logged and left out, as a lookup
// of it would fail; a database error ends the listing with an error
// wrapping auth.ErrTemporary.
//
// A configuration with X_SELECT_CLAUSE and neither X_ENUMERATE_CLAUSE nor
// X_USER_TABLE cannot say where the accounts are: it lists none, with a
// warning.
func (m *Module) Enumerate(ctx context.Context, each func(*auth.Account) error) error {
	q := m.enumerateQuery()
	if q == "" {
		m.log.Warn("accounts not listed: give " + m.cfg.Dialect.prefix() + "ENUMERATE_CLAUSE (the query has a SELECT_CLAUSE and no USER_TABLE)")
		return nil
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, enumerateTimeout)
		defer cancel()
	}
	rows, err := m.db.QueryContext(ctx, q)
	if err != nil {
		return m.temporary(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return m.temporary(err)
	}
	if len(cols) < 4 || len(cols) > 6 {
		return fmt.Errorf("%s: the enumerate query returns %d columns, want 4 to 6 (username, uid, gid, home[, maildir, options])", m.Name(), len(cols))
	}
	vals := make([]sql.NullString, 6)
	ptrs := make([]any, len(cols))
	for i := range ptrs {
		ptrs[i] = &vals[i]
	}
	skipped := 0
	for rows.Next() {
		for i := range vals {
			vals[i] = sql.NullString{}
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("%s: enumerate: %w: %w", m.Name(), auth.ErrTemporary, err)
		}
		a, why := m.enumerated(vals)
		if a == nil {
			skipped++
			m.log.Warn("account left out of the listing", "user", strings.TrimSpace(vals[0].String), "reason", why)
			continue
		}
		if err := each(a); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return m.temporary(err)
	}
	if skipped > 0 {
		m.log.Info("listing done", "left_out", skipped)
	}
	return nil
}

// enumerated makes one listed row into an account, or says why it cannot.
func (m *Module) enumerated(vals []sql.NullString) (*auth.Account, string) {
	v := func(i int) string { return strings.TrimSpace(vals[i].String) }
	a := &auth.Account{Name: v(0), Home: v(3), Maildir: v(4), Module: m.Name(),
		Options: map[string]string{}, Fields: map[string]string{}}
	if a.Name == "" {
		return nil, "no name"
	}
	if strings.ContainsAny(a.Name, "\t\r\n") {
		return nil, "control characters in the name"
	}
	for i, id := range []*int{&a.UID, &a.GID} {
		n, err := strconv.Atoi(v(1 + i))
		if err != nil || n < 0 {
			return nil, fmt.Sprintf("uid or gid %q is not a number", v(1+i))
		}
		*id = n
	}
	if !strings.HasPrefix(a.Home, "/") {
		return nil, fmt.Sprintf("home %q is not an absolute path", a.Home)
	}
	if a.Maildir != "" && !strings.HasPrefix(a.Maildir, "/") {
		a.Maildir = strings.TrimRight(a.Home, "/") + "/" + a.Maildir
	}
	setOptions(a, v(5))
	return a, ""
}

// setOptions reads the options field ("disableimap=1,sharedgroup=x") into
// a.
func setOptions(a *auth.Account, opts string) {
	if opts == "" {
		return
	}
	for _, o := range strings.Split(opts, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(o), "=")
		if k != "" {
			a.Options[k] = val
		}
	}
	a.Fields["options"] = opts
}
