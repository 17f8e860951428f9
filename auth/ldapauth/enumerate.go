package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-ldap/ldap/v3"

	"postern/auth"
)

// enumeratePageSize is how many entries one page of a listing asks for
// (the paged results control, RFC 2696): under OpenLDAP's default size
// limit (500) and Active Directory's MaxPageSize (1000), so that neither
// cuts a page short, and few enough that one page in memory is small.
const enumeratePageSize = 400

var _ auth.Enumerator = (*Module)(nil)

// enumerateFilter is the filter a listing searches with, as Courier's
// authldap chooses it: LDAP_ENUMERATE_FILTER, else LDAP_FILTER, else
// every entry with a mail attribute.
func (c *Config) enumerateFilter() string {
	switch {
	case c.EnumerateFilter != "":
		return c.EnumerateFilter
	case c.Filter != "":
		return c.Filter
	}
	return "(" + c.MailAttr + "=*)"
}

// Enumerate calls each with an account for every address of every entry
// under LDAP_BASEDN that the enumerate filter matches (auth.Enumerator):
// an entry with two LDAP_MAIL values is two accounts, as in Courier. The
// search is paged, so a large directory is read a page at a time, on one
// connection bound as LDAP_BINDDN (whose size limits must let it see
// every entry). An entry a lookup could not use (no absolute home, a uid
// that is not a number) is logged and left out; a directory error or a
// size limit that cuts the list short ends it with an error wrapping
// auth.ErrTemporary.
func (m *Module) Enumerate(ctx context.Context, each func(*auth.Account) error) error {
	filter := m.cfg.enumerateFilter()
	paging := ldap.NewControlPaging(enumeratePageSize)
	req := ldap.NewSearchRequest(m.cfg.BaseDN, ldap.ScopeWholeSubtree, m.cfg.Deref, 0,
		int(m.cfg.Timeout/time.Second), false, filter, m.attributes(false), []ldap.Control{paging})
	c, err := m.conn()
	if err != nil {
		return m.temporary(err)
	}
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			c.Close()
			return err
		}
		res, err := c.Search(req)
		if err != nil && page == 0 && !isLDAPResult(err) {
			// A kept connection the server has dropped: once more, on
			// a new one.
			c.Close()
			if c, err = m.conn(); err != nil {
				return m.temporary(err)
			}
			res, err = c.Search(req)
		}
		if err != nil {
			c.Close()
			return fmt.Errorf("authldap: enumerate %s under %s: %w: %w", filter, m.cfg.BaseDN, auth.ErrTemporary, err)
		}
		for _, e := range res.Entries {
			for _, name := range e.GetAttributeValues(m.cfg.MailAttr) {
				a, err := m.account(name, e)
				if err != nil {
					m.log.Warn("entry left out of the listing", "dn", e.DN, "err", err)
					continue
				}
				delete(a.Fields, "systempw") // not asked for
				if err := each(a); err != nil {
					// The rest of the pages are not wanted: closing
					// the connection ends the search on the server.
					c.Close()
					return err
				}
			}
		}
		ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if ctl == nil || len(ctl.Cookie) == 0 {
			// The last page, or a server without paging that sent
			// everything at once.
			m.release(c)
			return nil
		}
		paging.SetCookie(ctl.Cookie)
	}
}

// isLDAPResult reports whether err is the server's answer (a result code)
// rather than a connection that failed.
func isLDAPResult(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork
}
