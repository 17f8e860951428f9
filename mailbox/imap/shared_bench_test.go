package imap

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// benchLogin opens a raw connection for a benchmark and logs in.
func benchLogin(b *testing.B, env *testEnv, user, pass string) *rawConn {
	c, err := net.DialTimeout("tcp", env.addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	r := &rawConn{t: b, c: c, br: bufio.NewReader(c)}
	r.expect("* OK")
	r.send("L1 LOGIN " + user + " " + pass + "\r\n")
	r.expect("L1 OK")
	return r
}

// BenchmarkListShared: LIST "" "*" for bob, whose server has no shared
// folders ("none") or where alice, with 100 folders, shares one ("owner100").
// The difference is the cost of the shared namespace: one auth lookup and
// one ACL read per folder of each registered owner.
func BenchmarkListShared(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "none"
		if shared {
			name = "owner100"
		}
		b.Run(name, func(b *testing.B) {
			env := newBenchEnv(b)
			env.module.users["bob"] = "pw"
			md, err := maildir.Open(env.maildirPath("alice"))
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				if err := md.CreateFolder(fmt.Sprintf("F%03d", i)); err != nil {
					b.Fatal(err)
				}
			}
			if shared {
				a := benchLogin(b, env, "alice", "secret")
				a.send("A1 SETACL F050 bob lr\r\n")
				a.expect("A1 OK")
			}
			r := benchLogin(b, env, "bob", "pw")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.send(`B1 LIST "" "*"` + "\r\n")
				r.until("B1 OK")
			}
		})
	}
}

// BenchmarkLogin100Folders: LOGIN (and LOGOUT) of an account with 100
// folders; the login reads each folder's ACL file (absent here) to keep
// the shared-folder registry current.
func BenchmarkLogin100Folders(b *testing.B) {
	env := newBenchEnv(b)
	md, err := maildir.Open(env.maildirPath("alice"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := md.CreateFolder(fmt.Sprintf("F%03d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := benchLogin(b, env, "alice", "secret")
		r.send("L2 LOGOUT\r\n")
		r.until("L2 OK")
		r.c.Close()
	}
}
