package ldapauth

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// FuzzParse: any authldaprc is parsed or refused with an error, never a
// panic; a parsed one can find an account.
func FuzzParse(f *testing.F) {
	f.Add("LDAP_URI ldap://a, ldaps://b\nLDAP_BASEDN o=x\nLDAP_HOMEDIR h\nLDAP_UID u\nLDAP_GID g\nLDAP_CRYPTPW p\nLDAP_FILTER (objectClass=*)\n")
	f.Add("LDAP_SERVER s\nLDAP_PORT 389\nLDAP_BASEDN o=x\nLDAP_HOMEDIR h\nLDAP_GLOB_UID 5000\nLDAP_GLOB_GID 5000\nLDAP_AUTHBIND 1\nLDAP_AUXOPTIONS a=b,c=d\n")
	f.Add("LDAP_DEREF always\nLDAP_TIMEOUT 0\nLDAP_URI \\\n ldap://x\n")
	f.Add("LDAP_URI ldap://a\nLDAP_BASEDN o=x\nLDAP_HOMEDIR h\nLDAP_UID u\nLDAP_GID g\nLDAP_CRYPTPW p\nLDAP_ENUMERATE_FILTER objectClass=mailUser\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(lines(text))
		if err != nil {
			return
		}
		if len(c.URIs) == 0 || c.BaseDN == "" || c.HomeAttr == "" || c.Timeout <= 0 {
			t.Fatalf("accepted an unusable configuration: %+v", c)
		}
		if _, err := ldap.CompileFilter(c.enumerateFilter()); err != nil {
			t.Fatalf("accepted a configuration that cannot list its accounts: %q: %v", c.enumerateFilter(), err)
		}
	})
}
