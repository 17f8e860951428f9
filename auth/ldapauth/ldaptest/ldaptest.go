// Package ldaptest runs a real OpenLDAP slapd for a test: its own
// configuration and database in the test's directory, on a free loopback
// port, stopped when the test ends. .ci/run installs Debian's slapd.
package ldaptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Server is a running slapd.
type Server struct {
	URI     string // ldap://127.0.0.1:PORT
	BaseDN  string // dc=example,dc=test, created empty
	AdminDN string // the rootdn
	AdminPW string
}

const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
database mdb
maxsize 10485760
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw admin-secret
directory %[1]s/db
`

// Start runs slapd for t. Without slapd it skips the test, or fails it
// under CI, where .ci/run should have installed it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		bin = "/usr/sbin/slapd"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("slapd is not installed; .ci/run should have installed it")
			}
			t.Skip("slapd is not installed")
		}
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(slapdConf, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{URI: fmt.Sprintf("ldap://127.0.0.1:%d", port), BaseDN: "dc=example,dc=test", AdminDN: "cn=admin,dc=example,dc=test", AdminPW: "admin-secret"}
	var out strings.Builder
	cmd := exec.Command(bin, "-f", conf, "-h", s.URI+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := ldap.DialURL(s.URI)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Add(t, s.BaseDN, map[string][]string{"objectClass": {"dcObject", "organization"}, "o": {"example"}, "dc": {"example"}})
	return s
}

// Add adds an entry as the administrator.
func (s *Server) Add(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	c, err := ldap.DialURL(s.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.AdminDN, s.AdminPW); err != nil {
		t.Fatal(err)
	}
	req := ldap.NewAddRequest(dn, nil)
	for k, v := range attrs {
		req.Attribute(k, v)
	}
	if err := c.Add(req); err != nil {
		t.Fatalf("add %s: %v", dn, err)
	}
}
