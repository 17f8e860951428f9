package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/mailbox/acl"
)

// TestACLOwnFolders: the owner manages the ACL of their own folder with
// RFC 4314's commands, and what is stored is Courier's courierimapacl.
func TestACLOwnFolders(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("C0 CAPABILITY\r\n")
	caps := r.until("C0 OK")[0]
	if !strings.Contains(caps, " ACL") || !strings.Contains(caps, " RIGHTS=texk") {
		t.Fatalf("capabilities %q lack ACL RIGHTS=texk", caps)
	}
	r.send("A1 CREATE Work\r\n")
	r.expect("A1 OK")
	r.send("A2 MYRIGHTS Work\r\n")
	r.expect(`* MYRIGHTS Work lrswipkxteacd`)
	r.expect("A2 OK")
	r.send("A3 SETACL Work bob lr\r\n")
	r.expect("A3 OK")
	r.send("A4 SETACL Work bob +it\r\n")
	r.expect("A4 OK")
	r.send("A5 SETACL Work -carol r\r\n")
	r.expect("A5 OK")
	r.send("A6 GETACL Work\r\n")
	r.expect(`* ACL Work alice lrswipkxteacd bob lrit -carol r`)
	r.expect("A6 OK")
	data, err := os.ReadFile(filepath.Join(env.maildirPath("alice"), ".Work", acl.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "owner aceilprstwx\nuser=bob ilrt\n-user=carol r\n" {
		t.Fatalf("courierimapacl = %q", data)
	}
	r.send("A7 SETACL Work bob -t\r\n")
	r.expect("A7 OK")
	r.send("A8 DELETEACL Work -carol\r\n")
	r.expect("A8 OK")
	r.send("A9 GETACL Work\r\n")
	r.expect(`* ACL Work alice lrswipkxteacd bob lri`)
	r.expect("A9 OK")
	// RFC 2086 letters: "c" is "k", "d" is "e", "t" and "x".
	r.send("B1 SETACL Work bob cd\r\n")
	r.expect("B1 OK")
	r.send("B2 GETACL Work\r\n")
	r.expect(`* ACL Work alice lrswipkxteacd bob kxtecd`)
	r.expect("B2 OK")
	r.send("B3 LISTRIGHTS Work bob\r\n")
	r.expect(`* LISTRIGHTS Work bob "" l r s w i p k x t e a c d`)
	r.expect("B3 OK")
	r.send("B4 LISTRIGHTS Work alice\r\n")
	r.expect(`* LISTRIGHTS Work alice lrswipkxtea`)
	r.expect("B4 OK")
	// The owner's rights cannot be changed.
	r.send("B5 SETACL Work alice r\r\n")
	r.expect("B5 NO [CANNOT]")
	r.send("B6 DELETEACL Work owner\r\n")
	r.expect("B6 NO [CANNOT]")
	// Setting empty rights removes the entry.
	r.send(`B7 SETACL Work bob ""` + "\r\n")
	r.expect("B7 OK")
	r.send("B8 GETACL Work\r\n")
	r.expect(`* ACL Work alice lrswipkxteacd`)
	r.expect("B8 OK")
	r.send("B9 GETACL Nope\r\n")
	r.expect("B9 NO [NONEXISTENT]")
}

// TestACLHostileInput: unknown rights are BAD (RFC 4314 3.1), identifiers
// that could not be stored are BAD, nothing reaches the file.
func TestACLHostileInput(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("A1 CREATE Work\r\n")
	r.expect("A1 OK")
	for i, cmd := range []string{
		`SETACL Work bob lrz`,
		`SETACL Work bob L`,
		`SETACL Work bob 0`,
		`SETACL Work bob "l r"`,
		`SETACL Work "" lr`,
		`SETACL Work "-" lr`,
		`SETACL Work "--bob" lr`,
		`SETACL Work "bob smith" lr`,
		`SETACL Work "bob` + "\t" + `x" lr`,
		`SETACL Work "user=" lr`,
		`SETACL Work ` + strings.Repeat("x", 300) + ` lr`,
		`SETACL Work {3}`,
		`SETACL Work bob`,
		`DELETEACL Work ""`,
		`LISTRIGHTS Work "a b"`,
	} {
		tag := "H" + string(rune('a'+i))
		if strings.HasSuffix(cmd, "{3}") {
			r.send(tag + " " + cmd + "\r\n")
			r.expect("+")
			r.send("a\x00b lr\r\n")
		} else {
			r.send(tag + " " + cmd + "\r\n")
		}
		line := r.expect(tag + " ")
		if !strings.HasPrefix(line, tag+" BAD") {
			t.Errorf("%s: %q, want BAD", cmd, line)
		}
		// Ten BADs in a row end the session; a good command between
		// keeps it open.
		r.send(tag + "n NOOP\r\n")
		r.expect(tag + "n OK")
	}
	if _, err := os.Stat(filepath.Join(env.maildirPath("alice"), ".Work", acl.FileName)); !os.IsNotExist(err) {
		t.Fatalf("an ACL file was written: %v", err)
	}
	r.send("Z1 SETACL ../../etc bob lr\r\n")
	r.expect("Z1 NO")
	r.send("Z2 NOOP\r\n")
	r.expect("Z2 OK")
}

// TestACLEntryLimit: one folder's ACL holds at most maxACLEntries entries;
// changing an existing entry is still allowed at the limit.
func TestACLEntryLimit(t *testing.T) {
	env := newTestEnv(t, nil)
	r := env.login("alice", "secret")
	r.send("A1 CREATE Work\r\n")
	r.expect("A1 OK")
	// The inherited "owner" entry is the first.
	for i := 1; i < maxACLEntries; i++ {
		r.send(fmt.Sprintf("S%d SETACL Work u%d l\r\n", i, i))
		r.expect(fmt.Sprintf("S%d OK", i))
	}
	r.send("X1 SETACL Work one-too-many l\r\n")
	r.expect("X1 NO [LIMIT]")
	r.send("X2 SETACL Work u1 lr\r\n")
	r.expect("X2 OK")
}
