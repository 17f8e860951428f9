package smap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

const simpleMsg = "Subject: hello\nFrom: bob@example.test\nDate: 05 Aug 2003 05:00:00 -0500\n\nhello world\n"

const mimeMsg = `Subject: Test MIME message
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary=aaa

--aaa
Content-Type: multipart/alternative; boundary=bbb

--bbb
Content-Type: text/plain; charset=iso-8859-1
Content-Disposition: inline

text/plain content

--bbb
Content-Type: text/html; charset=iso-8859-1
Content-Disposition: inline

text/html content

--bbb--

--aaa
Content-Type: message/rfc822

Mime-Version: 1.0
Subject: Attached message
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Attached message

--aaa--
`

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got: %q\nwant: %q", what, got, want)
	}
}

func TestGreetingCapabilityNoopLogout(t *testing.T) {
	e := newTestEnv(t)
	cl := e.dial()
	expect(t, "CAPABILITY", cl.cmd(`\SMAP1 CAPABILITY`), "* CAPABILITY SMAP1\r\n+OK CAPABILITY completed\r\n")
	expect(t, "NOOP", cl.cmd(`\SMAP1 NOOP`), "+OK NOOP completed\r\n")
	expect(t, "LOGOUT", cl.cmd(`\SMAP1 LOGOUT`), "* BYE Courier-SMAP server shutting down\r\n+OK LOGOUT completed\r\n")
}

func TestLoginFailsWithBadPasswordAndAfterFiveFailuresCloses(t *testing.T) {
	e := newTestEnv(t)
	cl := e.dial()
	for i := 0; i < 4; i++ {
		expect(t, "bad login", cl.cmd(`\SMAP1 LOGIN alice wrong`), "-ERR Login failed.\r\n")
	}
	expect(t, "fifth", cl.cmd(`\SMAP1 LOGIN alice wrong`), "-ERR Login failed.\r\n")
	if l := cl.line(); l != "* BYE Too many failed logins\r\n" {
		t.Errorf("after five failures: %q", l)
	}
	if got := e.srv.Stats().LoginFailures; got != 5 {
		t.Errorf("LoginFailures = %d", got)
	}
}

func TestLoginRefusedWithoutTLSUnlessAllowed(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = false })
	cl := e.dial()
	expect(t, "login", cl.cmd(`\SMAP1 LOGIN alice secret`), "-ERR STARTTLS required\r\n")
}

func TestLoginWithQuotedWordsAndLogout(t *testing.T) {
	e := newTestEnv(t)
	cl := e.dial()
	expect(t, "login", cl.cmd(`\SMAP1 LOGIN "alice" "secret"`), "+OK SMAP1 LOGIN Ok.\n")
	expect(t, "logout", cl.cmd("LOGOUT"), "* BYE Courier-SMAP server shutting down\n+OK LOGOUT completed\n")
}

func TestListTopLevelAndSubfolders(t *testing.T) {
	e := newTestEnv(t)
	for _, f := range []string{"Sub", "Sub.Deep", "Other"} {
		if err := e.md.CreateFolder(f); err != nil {
			t.Fatal(err)
		}
	}
	cl := e.login()
	expect(t, "LIST", cl.cmd("LIST"), `* LIST "INBOX" "New Mail" FOLDER
* LIST "INBOX" "Folders" DIRECTORY
* LIST "public" "Public Folders" DIRECTORY
+OK LIST completed
`)
	expect(t, "LIST INBOX", cl.cmd("LIST INBOX"), `* LIST "Other" "Other" FOLDER
* LIST "Sub" "Sub" FOLDER DIRECTORY
+OK LIST completed
`)
	expect(t, "LIST INBOX Sub", cl.cmd("LIST INBOX Sub"), `* LIST "Deep" "Deep" FOLDER
+OK LIST completed
`)
	expect(t, "LIST public", cl.cmd("LIST public"), "+OK LIST completed\n")
}

func TestCreateUTF8DotAndHostileNames(t *testing.T) {
	e := newTestEnv(t)
	cl := e.login()
	expect(t, "CREATE", cl.cmd(`CREATE INBOX "Ünï code"`), "+OK Folder created\n")
	expect(t, "CREATE dot", cl.cmd(`CREATE INBOX "a.b"`), "+OK Folder created\n")
	expect(t, "CREATE ../x", cl.cmd(`CREATE INBOX ../x`), "+OK Folder created\n")
	expect(t, "CREATE top", cl.cmd(`CREATE Foo`), "-ERR Cannot create folder: Invalid argument\n")
	expect(t, "CREATE control", cl.cmd("CREATE INBOX \"a\x01b\""), "-ERR Cannot create folder: Invalid argument\n")
	expect(t, "CREATE bad utf8", cl.cmd("CREATE INBOX \"a\xffb\""), "-ERR Cannot create folder: Invalid argument\n")
	expect(t, "CREATE again", cl.cmd(`CREATE INBOX "a.b"`), "-ERR Cannot create folder: File exists\n")
	expect(t, "LIST", cl.cmd("LIST INBOX"), `* LIST "../x" "../x" FOLDER
* LIST "a.b" "a.b" FOLDER
* LIST "Ünï code" "Ünï code" FOLDER
+OK LIST completed
`)
	// Everything stayed inside the Maildir, one directory per folder, the
	// non-ASCII name in modified UTF-7 as IMAP keeps it.
	for _, d := range []string{`.\056\056\057x`, `.a\056b`, ".&ANw-n&AO8- code"} {
		if st, err := os.Stat(filepath.Join(e.root, d, "cur")); err != nil || !st.IsDir() {
			t.Errorf("folder directory %q: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "x")); err == nil {
		t.Error("a folder escaped the Maildir")
	}
}

func TestMkdirRmdirDeleteRename(t *testing.T) {
	e := newTestEnv(t)
	cl := e.login()
	expect(t, "MKDIR", cl.cmd("MKDIR INBOX Dir"), "+OK Folder created\n")
	expect(t, "RMDIR", cl.cmd("RMDIR INBOX Dir"), "+OK Folder deleted\n")
	expect(t, "CREATE", cl.cmd("CREATE INBOX Sub"), "+OK Folder created\n")
	expect(t, "CREATE deep", cl.cmd("CREATE INBOX Sub Deep"), "+OK Folder created\n")
	expect(t, "RENAME", cl.cmd(`RENAME INBOX Sub "" INBOX Sub2`), "+OK Folder renamed.\n")
	expect(t, "LIST", cl.cmd("LIST INBOX"), `* LIST "Sub2" "Sub2" FOLDER DIRECTORY
+OK LIST completed
`)
	expect(t, "DELETE INBOX", cl.cmd("DELETE INBOX"), "-ERR INBOX may not be deleted\n")
	expect(t, "DELETE deep", cl.cmd("DELETE INBOX Sub2 Deep"), "+OK Folder deleted\n")
	expect(t, "DELETE missing", cl.cmd("DELETE INBOX Nope"), "-ERR Cannot delete folder: No such file or directory\n")
	expect(t, "OPEN", cl.cmd("OPEN INBOX Sub2"), "* EXISTS 0\n+OK Folder opened\n")
	expect(t, "DELETE open", cl.cmd("DELETE INBOX Sub2"), "-ERR Cannot DELETE currently open folder.\n")
	expect(t, "CLOSE", cl.cmd("CLOSE"), "+OK Folder closed\n")
	expect(t, "DELETE", cl.cmd("DELETE INBOX Sub2"), "+OK Folder deleted\n")
	names, _ := e.md.Folders()
	if len(names) != 1 {
		t.Errorf("folders left: %v", names)
	}
}

func TestStatusOpenAndFolderCommandsNeedAnOpenFolder(t *testing.T) {
	e := newTestEnv(t)
	e.deliver("INBOX", simpleMsg)
	e.deliver("INBOX", simpleMsg)
	cl := e.login()
	expect(t, "FETCH closed", cl.cmd("FETCH 1 FLAGS"), "-ERR Syntax error.\n")
	expect(t, "STATUS", cl.cmd("STATUS CHEAP INBOX"), "* STATUS EXISTS=2 UNSEEN=2\n+OK Folder status retrieved\n")
	expect(t, "STATUS missing", cl.cmd("STATUS CHEAP INBOX Nope"), "-ERR Cannot read folder status: No such file or directory\n")
	expect(t, "OPEN missing", cl.cmd("OPEN INBOX Nope"), "-ERR Cannot open the folder: No such file or directory\n")
	expect(t, "OPEN none", cl.cmd("OPEN"), "-ERR Invalid folder: Invalid argument\n")
	expect(t, "OPEN", cl.cmd("OPEN INBOX"), "* EXISTS 2\n+OK Folder opened\n")
	expect(t, "SOPEN", cl.cmd(`SOPEN "" INBOX`), "* EXISTS 2\n+OK Folder opened\n")
	expect(t, "unknown", cl.cmd("BOGUS"), "-ERR Syntax error.\n")
	expect(t, "RSET", cl.cmd("RSET"), "+OK Reset\n")
}

func TestFetchAttributesAndFlagsOrder(t *testing.T) {
	e := newTestEnv(t)
	key := e.deliver("INBOX", simpleMsg)
	cl := e.login()
	cl.cmd("OPEN INBOX")
	f, _ := e.md.Folder("INBOX")
	when := time.Date(2003, 8, 3, 3, 0, 0, 0, time.UTC)
	expect(t, "STORE", cl.cmd(`STORE 1 FLAGS=SEEN,REPLIED,DRAFT,DELETED,MARKED,BOGUS "INTERNALDATE=03 Aug 2003 03:00:00 +0000"`),
		"* FETCH 1 FLAGS=DRAFT,MARKED,REPLIED,SEEN,DELETED\n+OK Folder status updated\n")
	got := cl.cmd("FETCH 1 INTERNALDATE SIZE UID KEYWORDS FLAGS")
	want := `* FETCH 1 FLAGS=DRAFT,MARKED,REPLIED,SEEN,DELETED "KEYWORDS=" "UID=` + key + `" SIZE=` + itoa(len(simpleMsg)) + ` "INTERNALDATE=` + rfc822Date(when) + `"` + "\n+OK Message retrieved.\n"
	expect(t, "FETCH attributes", got, want)
	if d, err := f.InternalDate(key); err != nil || !d.Equal(when) {
		t.Errorf("internal date on disk %v, %v", d, err)
	}
	expect(t, "FETCH beyond", cl.cmd("FETCH 2 FLAGS"), "+OK Message retrieved.\n")
	expect(t, "FETCH 0", cl.cmd("FETCH 0 FLAGS"), "+OK Message retrieved.\n")
}

func TestFetchMIMEHeadersAndSections(t *testing.T) {
	e := newTestEnv(t)
	e.deliver("INBOX", mimeMsg)
	cl := e.login()
	cl.cmd("OPEN INBOX")
	expect(t, "MIME", cl.cmd("FETCH 1 CONTENTS.PEEK=MIME(Mime-Version,Content-Type,Content-Disposition)"), `{.90} FETCH 1 LINES=28 SIZE=443 "MIME.ID="
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary=aaa
.
{.51} FETCH 1 LINES=13 SIZE=206 "MIME.ID=1.1" "MIME.PARENT="
Content-Type: multipart/alternative; boundary=bbb
.
{.74} FETCH 1 LINES=1 SIZE=19 "MIME.ID=1.1.1" "MIME.PARENT=1.1"
Content-Type: text/plain; charset=iso-8859-1
Content-Disposition: inline
.
{.73} FETCH 1 LINES=1 SIZE=18 "MIME.ID=1.1.2" "MIME.PARENT=1.1"
Content-Type: text/html; charset=iso-8859-1
Content-Disposition: inline
.
{.30} FETCH 1 LINES=6 SIZE=135 "MIME.ID=1.2" "MIME.PARENT="
Content-Type: message/rfc822
.
{.117} FETCH 1 LINES=1 SIZE=18 "MIME.ID=1.2.0" "MIME.PARENT=1.2"
Mime-Version: 1.0
Content-Type: text/plain; charset=utf-8
.
+OK Message retrieved.
`)
	expect(t, "HEADERS", cl.cmd("FETCH 1 CONTENTS.PEEK=HEADERS(Mime-Version,Content-Type)"), "{.0} FETCH 1 HEADERS\nMime-Version: 1.0\nContent-Type: multipart/mixed; boundary=aaa\n.\n+OK Message retrieved.\n")
	expect(t, "HEADERS[1.2.0]", cl.cmd("FETCH 1 CONTENTS.PEEK=HEADERS[1.2.0]"), "{.117} FETCH 1 HEADERS\nMime-Version: 1.0\nSubject: Attached message\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n.\n+OK Message retrieved.\n")
	for _, bad := range []string{"A", "2", "1.1.3", "1.2.1"} {
		expect(t, "HEADERS["+bad+"]", cl.cmd("FETCH 1 CONTENTS.PEEK=HEADERS["+bad+"]"), "-ERR Cannot retrieve message: Invalid argument\n")
	}
	expect(t, "BODY[1.2.0]", cl.cmd("FETCH 1 CONTENTS=BODY[1.2.0]"), "{18/18} FETCH 1 CONTENTS\nAttached message\n\n\n* FETCH 1 FLAGS=SEEN\n+OK Message retrieved.\n")
}

func TestFetchLargeBodyInBlocksAndDecoded(t *testing.T) {
	e := newTestEnv(t)
	var body strings.Builder
	for i := 0; body.Len() < 20000; i++ {
		body.WriteString("line of a long message body padding padding padding\n")
	}
	e.deliver("INBOX", "Subject: big\n\n"+body.String())
	e.deliver("INBOX", "Subject: qp\nContent-Transfer-Encoding: quoted-printable\n\nThis is =61 text/plain =\nquoted-printable section\n")
	cl := e.login()
	cl.cmd("OPEN INBOX")
	got := cl.cmd("FETCH 1 CONTENTS.PEEK=BODY")
	// Courier's blocks: "{8192/total} FETCH 1 CONTENTS", 8192 octets, then
	// "8192" and 8192 more, then the rest's size and the rest, then "".
	n := body.Len()
	want := "{8192/" + itoa(n) + "} FETCH 1 CONTENTS\n" + body.String()[:8192] + "8192\n" + body.String()[8192:16384] +
		itoa(n-16384) + "\n" + body.String()[16384:] + "\n+OK Message retrieved.\n"
	if got != want {
		t.Errorf("blocks differ: got %d bytes, want %d; start %q", len(got), len(want), got[:60])
	}
	expect(t, "DECODED", cl.cmd("FETCH 2 CONTENTS.PEEK=BODY.DECODED"), "{46/50} FETCH 2 CONTENTS\nThis is a text/plain quoted-printable section\n\n+OK Message retrieved.\n")
}

func TestStoreKeywordsAndNoopSeesOtherSessionsChanges(t *testing.T) {
	e := newTestEnv(t)
	e.deliver("INBOX", simpleMsg)
	e.deliver("INBOX", simpleMsg)
	a, b := e.login(), e.login()
	a.cmd("OPEN INBOX")
	b.cmd("OPEN INBOX")
	expect(t, "STORE keywords", a.cmd("STORE 1-2 +KEYWORDS=work,Later +FLAGS=SEEN"),
		"* FETCH 1 \"KEYWORDS=Later,work\"\n* FETCH 2 \"KEYWORDS=Later,work\"\n* FETCH 1 FLAGS=SEEN\n* FETCH 2 FLAGS=SEEN\n+OK Folder status updated\n")
	expect(t, "STORE -keywords", a.cmd("STORE 2 -KEYWORDS=work"), "* FETCH 2 \"KEYWORDS=Later\"\n+OK Folder status updated\n")
	expect(t, "other NOOP", b.cmd("NOOP"), "* FETCH 1 FLAGS=SEEN \"KEYWORDS=Later,work\"\n* FETCH 2 FLAGS=SEEN \"KEYWORDS=Later\"\n+OK Folder updated\n")
	expect(t, "own NOOP", a.cmd("NOOP"), "+OK Folder updated\n")
	e.deliver("INBOX", simpleMsg)
	expect(t, "new mail", b.cmd("NOOP"), "* EXISTS 3\n+OK Folder updated\n")
	expect(t, "SEARCH", a.cmd("SEARCH ALL KEYWORD Later"), "* SEARCH 1-2\n+OK Search completed.\n")
}

func TestExpungeRangesAsCourier(t *testing.T) {
	e := newTestEnv(t)
	for i := 0; i < 200; i++ {
		e.deliver("INBOX", "Subject: test message\n\ntest message\n")
	}
	cl := e.login()
	cl.cmd("OPEN INBOX")
	cl.cmd("STORE 1-10 20-80 90-130 +FLAGS=DELETED")
	expect(t, "EXPUNGE", cl.cmd("EXPUNGE"), "* EXPUNGE 1-10 20-80 90-119\n* EXPUNGE 19-29\n+OK Folder updated\n")
	expect(t, "EXPUNGE set", cl.cmd("EXPUNGE 1-2 5"), "* EXPUNGE 1-2 5\n+OK Folder updated\n")
	expect(t, "bad set", cl.cmd("EXPUNGE 5 1"), "-ERR Syntax error.\n")
	expect(t, "STATUS", cl.cmd("STATUS X INBOX"), "* STATUS EXISTS=85 UNSEEN=85\n+OK Folder status retrieved\n")
}

func TestCopyMoveAndAdd(t *testing.T) {
	e := newTestEnv(t)
	e.deliver("INBOX", simpleMsg)
	e.deliver("INBOX", simpleMsg)
	if err := e.md.CreateFolder("Dest"); err != nil {
		t.Fatal(err)
	}
	cl := e.login()
	cl.cmd("OPEN INBOX")
	got := cl.cmd(`COPY 1-2 "" INBOX Dest`)
	if !strings.HasPrefix(got, "* COPY 1 \"NEWUID=") || !strings.HasSuffix(got, "+OK Messages copied.\n") || strings.Count(got, "* COPY") != 2 {
		t.Errorf("COPY: %q", got)
	}
	expect(t, "COPY no marker", cl.cmd("COPY 1 INBOX Dest"), "-ERR Syntax error.\n")
	expect(t, "COPY missing", cl.cmd(`COPY 1 "" INBOX Nope`), "-ERR Cannot copy messages: No such file or directory\n")
	got = cl.cmd(`MOVE 2 "" INBOX Dest`)
	if !strings.HasPrefix(got, "* COPY 2 \"NEWUID=") || !strings.HasSuffix(got, "* EXPUNGE 2\n+OK Messages copied.\n") {
		t.Errorf("MOVE: %q", got)
	}
	expect(t, "ADD settings", cl.cmd(`ADD FOLDER INBOX Dest "" FLAGS=SEEN,MARKED KEYWORDS=k1 "INTERNALDATE=03 Aug 2003 03:00:00 -0500"`), "+OK INTERNALDATE set\n")
	expect(t, "ADD data", cl.cmd("ADD {.}"), "> Go ahead\n")
	cl.send("Subject: added\n\n..dotted line\r\nbody\n.\n")
	got = cl.reply()
	if !strings.HasPrefix(got, "* ADD \"UID=") || !strings.HasSuffix(got, "\"\n+OK Message saved\n") {
		t.Errorf("ADD: %q", got)
	}
	expect(t, "OPEN Dest", cl.cmd("OPEN INBOX Dest"), "* EXISTS 4\n+OK Folder opened\n")
	expect(t, "added", cl.cmd("FETCH 4 FLAGS KEYWORDS CONTENTS.PEEK=ALL"), "{34/34} FETCH 4 CONTENTS\nSubject: added\n\n.dotted line\nbody\n\n* FETCH 4 FLAGS=MARKED,SEEN \"KEYWORDS=k1\"\n+OK Message retrieved.\n")
	// Cone's form: the size, then the bytes, then an empty line.
	expect(t, "ADD block", cl.cmd(`ADD FOLDER INBOX ""`), "+OK Will add to this folder\n")
	expect(t, "ADD block data", cl.cmd("ADD {12/12}"), "> Go ahead\n")
	cl.send("Subject: b\r\n\n")
	if got := cl.reply(); !strings.HasSuffix(got, "+OK Message saved\n") {
		t.Errorf("ADD block: %q", got)
	}
	expect(t, "STATUS INBOX", cl.cmd("STATUS X INBOX"), "* STATUS EXISTS=2 UNSEEN=2\n+OK Folder status retrieved\n")
	// Sending is not offered: the message is read and nothing is kept.
	cl.cmd(`ADD FOLDER INBOX "" RCPTTO=x@example.test`)
	cl.cmd("ADD {.}")
	cl.send("Subject: x\n\nx\n.\n")
	expect(t, "ADD send", cl.reply(), "-ERR sending mail through SMAP is not available on this server\n")
	expect(t, "STATUS after send", cl.cmd("STATUS X INBOX"), "* STATUS EXISTS=2 UNSEEN=2\n+OK Folder status retrieved\n")
}

func TestAddTooLargeStoresNothingAndStaysInStep(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.MaxMessageSize = 100 })
	cl := e.login()
	cl.cmd(`ADD FOLDER INBOX ""`)
	cl.cmd("ADD {.}")
	cl.send("Subject: big\n\n" + strings.Repeat("x", 300) + "\n.\n")
	expect(t, "too large", cl.reply(), "-ERR Message too large\n")
	expect(t, "still in step", cl.cmd("STATUS X INBOX"), "* STATUS EXISTS=0 UNSEEN=0\n+OK Folder status retrieved\n")
	entries, _ := os.ReadDir(filepath.Join(e.root, "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp/ not empty: %v", entries)
	}
}

func TestSearchCriteria(t *testing.T) {
	e := newTestEnv(t)
	e.deliver("INBOX", "Subject: iso test: =?iso-8859-1?Q?S=E2m?=\nDate: 03 Aug 2003 03:00:00 -0500\n\nplain body\n")
	e.deliver("INBOX", "Subject: other\nDate: 05 Aug 2003 05:00:00 -0500\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nS=E2m This is a ttest\n")
	cl := e.login()
	cl.cmd("OPEN INBOX")
	cl.cmd("STORE 2 +FLAGS=MARKED,SEEN")
	for _, c := range []struct{ q, want string }{
		{`SEARCH UNMARKED SUBJECT "sâm"`, "* SEARCH 1\n"},
		{`SEARCH ALL HEADER DATE "05 AUG"`, "* SEARCH 2\n"},
		{`SEARCH ALL TEXT "ttest"`, "* SEARCH 2\n"},
		{`SEARCH ALL BODY "sâm"`, "* SEARCH 2\n"},
		{`SEARCH MARKED SEEN`, "* SEARCH 2\n"},
		{`SEARCH UNMARKED SEEN`, ""},
		{`SEARCH ALL NOT SEEN`, "* SEARCH 1\n"},
		{`SEARCH 1-2 SMALLER 200`, "* SEARCH 1-2\n"},
		{`SEARCH ALL SENTON "05-Aug-2003"`, "* SEARCH 2\n"},
		{`SEARCH ALL SENTBEFORE "04-Aug-2003"`, "* SEARCH 1\n"},
	} {
		expect(t, c.q, cl.cmd(c.q), c.want+"+OK Search completed.\n")
	}
	expect(t, "invalid", cl.cmd("SEARCH UNMARKED INVALID"), "-ERR SEARCH failed: Invalid argument\n")
}

func TestIdleReportsDeliveryAndResume(t *testing.T) {
	// inotify wakes the session; the rescan every second is only there so
	// that a machine without inotify does not wait a minute.
	e := newTestEnv(t, func(o *Options) { o.testIdlePoll = time.Second })
	cl := e.login()
	cl.cmd("OPEN INBOX")
	expect(t, "IDLE", cl.cmd("IDLE"), "+OK Entering idle mode...\n")
	e.deliver("INBOX", simpleMsg)
	if l := cl.line(); l != "* EXISTS 1\n" {
		t.Errorf("in IDLE: %q", l)
	}
	expect(t, "RESUME", cl.cmd("RESUME"), "+OK Resumed...\n")
	expect(t, "IDLE again", cl.cmd("IDLE"), "+OK Entering idle mode...\n")
	expect(t, "not RESUME", cl.cmd("NOOP"), "-ERR RESUME is required to follow IDLE\n")
}

func TestIdlePollsWithoutWatcher(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.testIdlePoll = 20 * time.Millisecond })
	e.srv.watch.mu.Lock()
	e.srv.watch.err = os.ErrInvalid // as if inotify were unavailable
	e.srv.watch.mu.Unlock()
	cl := e.login()
	cl.cmd("OPEN INBOX")
	cl.cmd("IDLE")
	e.deliver("INBOX", simpleMsg)
	if l := cl.line(); l != "* EXISTS 1\n" {
		t.Errorf("in IDLE: %q", l)
	}
	cl.cmd("RESUME")
}

func TestShutdownEndsIdleAndWaitingSessions(t *testing.T) {
	e := newTestEnv(t)
	idle := e.login()
	idle.cmd("OPEN INBOX")
	idle.cmd("IDLE")
	waiting := e.login()
	if err := e.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{idle, waiting} {
		if l := cl.line(); l != "* BYE Courier-SMAP server shutting down\n" {
			t.Errorf("at shutdown: %q", l)
		}
	}
}

func TestLongLinesAndGarbage(t *testing.T) {
	e := newTestEnv(t)
	cl := e.login()
	expect(t, "long", cl.cmd("LIST "+strings.Repeat("x", 9000)), "-ERR Command line too long\n")
	expect(t, "after long", cl.cmd("RSET"), "+OK Reset\n")
	expect(t, "unterminated quote", cl.cmd(`CREATE INBOX "abc`), "+OK Folder created\n")
	expect(t, "binary garbage", cl.cmd("\x00\x01\xff\xfe"), "-ERR Syntax error.\n")
	// A megabyte without a newline closes the connection.
	// The server may close before the client has written it all: the
	// write's error is not the test's business.
	go cl.c.Write([]byte(strings.Repeat("y", 2<<20)))
	if l := cl.line(); l != "-ERR Command line too long\n" {
		t.Errorf("absurd line: %q", l)
	}
	if l := cl.line(); l != "* BYE Too much input without a newline\n" {
		t.Errorf("absurd line: %q", l)
	}
}

func TestACLCommands(t *testing.T) {
	e := newTestEnv(t)
	cl := e.login()
	expect(t, "ACL", cl.cmd("ACL INBOX"), "* ACL \"aceilrstwx\"\n+OK ACLs retrieved\n")
	expect(t, "GETACL", cl.cmd("GETACL INBOX"), "* GETACL \"owner\" \"aceilrstwx\" \"administrators\" \"aceilrstwx\"\n+OK ACLs retrieved\n")
	expect(t, "SETACL", cl.cmd(`SETACL INBOX "" user=bob lr`), "* GETACL \"owner\" \"aceilrstwx\" \"administrators\" \"aceilrstwx\" \"user=bob\" \"lr\"\n+OK Updated ACLs\n")
	expect(t, "SETACL +", cl.cmd(`SETACL INBOX "" user=bob +w user=joe -l`), "* GETACL \"owner\" \"aceilrstwx\" \"administrators\" \"aceilrstwx\" \"user=bob\" \"lrw\"\n+OK Updated ACLs\n")
	expect(t, "DELETEACL", cl.cmd(`DELETEACL INBOX "" user=bob`), "* GETACL \"owner\" \"aceilrstwx\" \"administrators\" \"aceilrstwx\"\n+OK Updated ACLs\n")
	expect(t, "ACL bad", cl.cmd("ACL Foo"), "-ERR Invalid folder: Invalid argument\n")
}

// TestKeywordsReachMaildir: what SMAP stores is what maildir (and so IMAP)
// reads.
func TestKeywordsReachMaildir(t *testing.T) {
	e := newTestEnv(t)
	key := e.deliver("INBOX", simpleMsg)
	cl := e.login()
	cl.cmd("OPEN INBOX")
	cl.cmd("STORE 1 KEYWORDS=$Junk,work +FLAGS=REPLIED")
	f, _ := e.md.Folder("INBOX")
	snap, err := f.Sync(false)
	if err != nil || len(snap.Messages) != 1 {
		t.Fatal(err)
	}
	m := snap.Messages[0]
	if m.Key != key || m.Flags != "R" || strings.Join(m.Keywords, ",") != "$Junk,work" {
		t.Errorf("on disk: %+v", m)
	}
	_ = maildir.FlagReplied
}

// SOPEN: a NOOP that finds nothing new saves the view ("* SNAPSHOT id",
// again only after it changed); a later SOPEN with the id reports only
// what changed since; an unknown id opens the folder as OPEN does.
func TestSnapshots(t *testing.T) {
	e := newTestEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver("INBOX", simpleMsg)
	}
	cl := e.login()
	expect(t, "SOPEN", cl.cmd(`SOPEN "" INBOX`), "* EXISTS 3\n+OK Folder opened\n")
	first := cl.cmd("NOOP")
	if !strings.HasPrefix(first, `* SNAPSHOT "`) || !strings.HasSuffix(first, "\"\n+OK Folder updated\n") {
		t.Fatalf("first NOOP: %q", first)
	}
	cl.cmd("STORE 1 +FLAGS=SEEN")
	got := cl.cmd("NOOP")
	if !strings.HasPrefix(got, `* SNAPSHOT "`) || got == first {
		t.Fatalf("NOOP after STORE: %q", got)
	}
	id := got[len(`* SNAPSHOT "`) : strings.IndexByte(got, '\n')-1]
	expect(t, "unchanged NOOP", cl.cmd("NOOP"), "+OK Folder updated\n")
	cl.cmd("LOGOUT")

	f, _ := e.md.Folder("INBOX")
	snap, _ := f.Sync(false)
	if err := f.Remove(snap.Messages[1].Key); err != nil {
		t.Fatal(err)
	}
	e.deliver("INBOX", simpleMsg)
	cl = e.login()
	expect(t, "SOPEN id", cl.cmd(`SOPEN "`+id+`" INBOX`), "* SNAPSHOTEXISTS \""+id+"\"\n* EXPUNGE 2\n* EXISTS 3\n+OK Folder updated\n")
	expect(t, "FETCH restored", cl.cmd("FETCH 1 FLAGS"), "* FETCH 1 FLAGS=SEEN\n+OK Message retrieved.\n")
	expect(t, "SOPEN bad id", cl.cmd(`SOPEN "../../x" INBOX`), "* EXISTS 3\n+OK Folder opened\n")
	expect(t, "OPEN", cl.cmd(`OPEN INBOX`), "* EXISTS 3\n+OK Folder opened\n")
	expect(t, "no snapshots after OPEN", cl.cmd("NOOP"), "+OK Folder updated\n")
}
