package sqlauth

import (
	"strings"
	"testing"
)

// FuzzParse: any authmysqlrc/authpgsqlrc text is parsed or refused with
// an error, never a panic; a parsed one has what a query needs.
func FuzzParse(f *testing.F) {
	f.Add("MYSQL_SERVER localhost\nMYSQL_USER_TABLE passwd\nMYSQL_CRYPT_PWFIELD crypt\nMYSQL_UID_FIELD uid\nMYSQL_GID_FIELD gid\nMYSQL_HOME_FIELD home\n")
	f.Add("PGSQL_CONNECTION host=a \\\n port=5\nPGSQL_SELECT_CLAUSE SELECT a, b \\\n FROM t WHERE x='$(local_part)'\n")
	f.Add("MYSQL_PORT -1\nMYSQL_PORT 2\n\\\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, d := range []Dialect{MySQL, Postgres} {
			c, err := Parse(d, lines("rc", text))
			if err != nil {
				continue
			}
			if c.SelectClause == "" && (c.UserTable == "" || c.HomeField == "") {
				t.Fatalf("accepted without a table or home field: %+v", c)
			}
		}
	})
}

// FuzzNames: whatever a client sends as its login name, what reaches a
// SELECT_CLAUSE cannot leave a quoted string in MySQL or PostgreSQL.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"alice@example.test", "x' OR '1'='1", `a\'@b`, "a\x00b", "ünï@cøde.test", "@", "a@"} {
		f.Add(s)
	}
	m := &Module{cfg: &Config{DefaultDomain: "example.test", SelectClause: "x"}}
	f.Fuzz(func(t *testing.T, name string) {
		local, domain, ok := m.split(name)
		if !ok {
			return
		}
		for _, v := range []string{local, domain} {
			if strings.ContainsAny(v, "'\"\\`\x00\n\r") {
				t.Fatalf("%q gave %q", name, v)
			}
		}
	})
}
