package smap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir"
)

// The differential test runs one SMAP script against Courier's imapd
// (Debian's courier-imap, pre-authenticated on stdin with PROTOCOL=SMAP1,
// as Courier's own smaptestsuite runs it) and against Postern's server, on
// copies of the same Maildir, and compares the replies after normalising
// what legitimately differs: the unique names of new messages (ADD's UID,
// COPY's NEWUID) and the order of LIST's lines (Courier's is the order of
// the directory listing). The script copies messages before they have
// keywords: Courier 5.0.13's COPY loses them (the copies come without
// keywords), where Postern's keeps them, as IMAP's COPY does; and ADD's
// data has no line starting with a dot: Courier drops every leading dot of
// a line (and ends the message at a line ".."), where Postern removes the
// one dot of the stuffing.

const courierQPMsg = `Subject: testing body.decoded
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary=zzz

--zzz
Content-Type: text/plain
Content-Transfer-Encoding: 8bit

This is a text/plain 8bit section

--zzz
Content-Type: text/plain
Content-Transfer-Encoding: quoted-printable

This is =61 text/plain =
quoted-printable section

--zzz
Content-Type: text/plain
Content-Transfer-Encoding: base64

VGhpcyBpcyBhIGJhc2U2NCBzZWN0aW9uLCBsb25nIGVub3VnaCB0byBzcGFuIGEgZmV3IGxp
bmVzIG9mIGVuY29kZWQgdGV4dC4K

--zzz--
`

const courierHeaderMsg = `Received: by localhost
Subject: test message
From: nobody@localhost
Cc: nobody@localhost
X-Fold: a
	b
    c
.dot: x
Mime-Version: 1.0
Content-Type: multipart/mixed;
    boundary=abc


--abc
Content-Type: text/plain; charset=iso-8859-1
X-Comment: foo

Mary had a little lamb, its fleece was white as snow.
--abc--

test message
`

const courierScript = `LIST
CREATE INBOX Sub
CREATE INBOX Sub Deep
CREATE INBOX "a.b"
CREATE INBOX ../x
CREATE Foo
CREATE INBOX Sub
MKDIR INBOX Dir
RMDIR INBOX Dir
LIST INBOX
LIST INBOX Sub
LIST public
STATUS CHEAP INBOX
STATUS CHEAP INBOX Nope
OPEN INBOX Nope
FETCH 1 FLAGS
OPEN
OPEN INBOX
FETCH 1 CONTENTS.PEEK=MIME(Mime-Version,Content-Type,Content-Disposition)
FETCH 1 CONTENTS=HEADERS(Mime-Version,Content-Type)
FETCH 1 CONTENTS=HEADERS
FETCH 1 CONTENTS=HEADERS[1.1]
FETCH 1 CONTENTS=HEADERS[1.1.1]
FETCH 1 CONTENTS=HEADERS[1.1.2]
FETCH 1 CONTENTS=HEADERS[1.2]
FETCH 1 CONTENTS=HEADERS[1.2.0]
FETCH 1 CONTENTS=HEADERS[A]
FETCH 1 CONTENTS=HEADERS[2]
FETCH 1 CONTENTS=HEADERS[1.1.3]
FETCH 1 CONTENTS=HEADERS[1.2.1]
FETCH 1 CONTENTS=BODY
FETCH 1 CONTENTS=BODY[1.2.0]
FETCH 2 CONTENTS.PEEK=RAWHEADERS
FETCH 2 CONTENTS.PEEK=MIME
FETCH 2 CONTENTS.PEEK=HEADERS(:ENVELOPE,Received)
FETCH 2 CONTENTS.PEEK=HEADERS(:MIME)
FETCH 2 CONTENTS.PEEK=MIME(:MIME)
FETCH 2 CONTENTS.PEEK=ALL
FETCH 2 CONTENTS.PEEK=BODY.DECODED
FETCH 2 CONTENTS.PEEK=BODY.DECODED[1.1]
FETCH 3 CONTENTS.PEEK=BODY[1.1]
FETCH 3 CONTENTS.PEEK=BODY.DECODED[1.1]
FETCH 3 CONTENTS.PEEK=BODY[1.2]
FETCH 3 CONTENTS.PEEK=BODY.DECODED[1.2]
FETCH 3 CONTENTS.PEEK=BODY[1.3]
FETCH 3 CONTENTS.PEEK=BODY.DECODED[1.3]
FETCH 4 CONTENTS.PEEK=BODY
FETCH 4 CONTENTS.PEEK=ALL[1]
FETCH 0 FLAGS
FETCH 5 FLAGS
FETCH 1-5 FLAGS KEYWORDS SIZE UID INTERNALDATE
COPY 1-2 "" INBOX Sub
COPY 1 INBOX Sub
NOOP
STATUS CHEAP INBOX Sub
MOVE 2 "" INBOX Sub Deep
STORE 1 FLAGS=SEEN,REPLIED,DRAFT,DELETED,MARKED
STORE 1 -FLAGS=DELETED KEYWORDS=x
STORE 2-3 +KEYWORDS=k1,k2 +FLAGS=MARKED
STORE 3 -KEYWORDS=k1
STORE 4 FLAGS=
FETCH 1-4 FLAGS KEYWORDS
SEARCH ALL SEEN
SEARCH UNMARKED NOT SEEN
SEARCH MARKED KEYWORD k2
SEARCH 1-2 SEEN
SEARCH ALL SUBJECT "test message"
SEARCH ALL SMALLER 500
SEARCH ALL INVALID
ADD FOLDER INBOX Sub "" FLAGS=SEEN KEYWORDS=k1 "INTERNALDATE=03 Aug 2003 03:00:00 -0500"
ADD {.}
Subject: added

body
more body
.
NOOP
STORE 1 +FLAGS=DELETED
EXPUNGE
EXPUNGE 1
FETCH 1-10 FLAGS
OPEN INBOX Sub
FETCH 1-5 FLAGS KEYWORDS INTERNALDATE
FETCH 3 CONTENTS.PEEK=ALL
CLOSE
RENAME INBOX Sub "" INBOX Sub2
LIST INBOX
LIST INBOX Sub2
DELETE INBOX Sub2 Deep
DELETE INBOX
ACL INBOX
GETACL INBOX
RSET
BOGUS
LOGOUT
`

// courierScript2 is Courier's smaptestsuite's expunge test (200 messages,
// ranges across the 100-per-line limit), IDLE, keywords, SEARCH and the
// folder commands' errors.
const courierScript2 = `OPEN INBOX
IDLE
RESUME
IDLE
NOOP
STORE 1-10 20-80 90-130 +FLAGS=DELETED
EXPUNGE
STATUS X INBOX
EXPUNGE 1-2 5
STORE 1 "INTERNALDATE=10 Jan 2022 09:00:00 -0500"
FETCH 1 INTERNALDATE
STORE 2 KEYWORDS=a,b,c +KEYWORDS=d -KEYWORDS=a
FETCH 1-2 KEYWORDS
SEARCH ALL KEYWORD d
SEARCH 1-5 NOT KEYWORD d
SEARCH ALL SUBJECT "message 20"
SEARCH ALL HEADER SUBJECT "MESSAGE 2"
SEARCH ALL TEXT "message 19"
SEARCH ALL BODY "test message"
SEARCH ALL LARGER 45
SEARCH
CREATE INBOX
CREATE
CREATE INBOX a
CREATE INBOX a
RENAME INBOX a "" INBOX b
RENAME INBOX nope "" INBOX c
RENAME INBOX b "" INBOX
RENAME INBOX b
ADD FLAGS=SEEN
ADD {.}
Subject: nowhere

x
.
STATUS X INBOX b
SETACL INBOX "" user=u1 lr user=u2 lr user=u3 lr user=u4 lr user=u5 lr user=u6 lr
GETACL INBOX
LOGOUT
`

// courierMessages are the template Maildir's messages, in new/ with fixed
// names so that both servers number them alike.
func courierMessages() []string {
	var big strings.Builder
	big.WriteString("Subject: big\n\n")
	for i := 1; i <= 300; i++ {
		big.WriteString("line " + itoa(i) + " of a long message body padding padding padding\n")
	}
	return []string{mimeMsg, courierHeaderMsg, courierQPMsg, big.String()}
}

// fillMaildir puts the template messages into root's new/, each with the
// same name and modification time on both sides.
func fillMaildir(t *testing.T, root string, msgs []string) {
	t.Helper()
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i, m := range msgs {
		name := filepath.Join(root, "new", itoa(1000000000+i)+".M1P1.test,S="+itoa(len(m)))
		if err := os.WriteFile(name, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// scriptUnits splits a script into what a client sends before waiting for
// a reply: one command, or an ADD {.} with its data.
func scriptUnits(script string) []string {
	var units []string
	lines := strings.SplitAfter(script, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" {
			continue
		}
		units = append(units, l)
		if strings.HasPrefix(l, "ADD {.}") {
			var data strings.Builder
			for i++; i < len(lines); i++ {
				data.WriteString(lines[i])
				if lines[i] == ".\n" {
					break
				}
			}
			units = append(units, data.String())
		}
	}
	return units
}

var (
	uidRe  = regexp.MustCompile(`"(NEW)?UID=[^"]*"`)
	snapRe = regexp.MustCompile(`(?m)^\* SNAPSHOT "[^"]*"$`)
	listRe = regexp.MustCompile(`(?m)^(\* LIST [^\n]*\n)+`)
)

func normalise(s string) string {
	s = uidRe.ReplaceAllString(s, `"${1}UID=*"`)
	s = snapRe.ReplaceAllString(s, `* SNAPSHOT *`)
	return listRe.ReplaceAllStringFunc(s, func(block string) string {
		lines := strings.SplitAfter(block, "\n")
		slices.Sort(lines)
		return strings.Join(lines, "")
	})
}

func TestCourierImapdDifferential(t *testing.T) {
	// /usr/bin/imapd is the program; /usr/sbin/imapd is the script that
	// starts the daemon.
	imapd := "/usr/bin/imapd"
	if _, err := os.Stat(imapd); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Courier's imapd is missing; .ci/run installs courier-imap")
		}
		t.Skip("Courier's imapd (courier-imap) is not installed")
	}
	var many []string
	for i := 1; i <= 200; i++ {
		many = append(many, "Subject: test message "+itoa(i)+"\n\ntest message\n")
	}
	for _, c := range []struct {
		name   string
		msgs   []string
		script string
	}{
		{"fetch-store-copy-add", courierMessages(), courierScript},
		{"expunge-idle-search-errors", many, courierScript2},
		{"snapshots", courierMessages(), "SOPEN \"\" INBOX\nNOOP\nSTORE 1 +FLAGS=SEEN\nNOOP\nNOOP\nSOPEN \"00112233445566778899aabbccddeeff\" INBOX\nNOOP\nLOGOUT\n"},
	} {
		t.Run(c.name, func(t *testing.T) { differential(t, imapd, c.msgs, c.script) })
	}
}

// startEarlyInASecond waits until the clock is 0.15–0.3 s into a second.
// Messages a script creates within one second are numbered by their
// names' "M<microseconds>" part, which Courier compares as text and Postern
// as a number: the two orders differ only when one second's names cross a
// power of ten (M99171, then M100002), so each side starts where its
// script, done in well under 0.7 s, creates names of six digits only.
func startEarlyInASecond() {
	for {
		ns := time.Now().Nanosecond()
		if ns >= 150e6 && ns < 300e6 {
			return
		}
		wait := time.Duration(1e9+150e6-ns) % time.Second
		time.Sleep(wait)
	}
}

func differential(t *testing.T, imapd string, msgs []string, script string) {
	// Courier's side.
	dir := t.TempDir()
	cmd := filepath.Join(dir, "Maildir")
	if err := maildir.Make(cmd); err != nil {
		t.Fatal(err)
	}
	fillMaildir(t, cmd, msgs)
	c := exec.Command(imapd, cmd)
	c.Env = []string{"PATH=/usr/bin:/bin", "MAILDIR=" + cmd, "PROTOCOL=SMAP1", "IMAP_KEYWORDS=1", "IMAP_BROKENUIDV=1", "AUTHENTICATED=alice"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		c.Env = append(c.Env, "TZ="+tz)
	}
	c.Stdin = strings.NewReader(script)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	startEarlyInASecond()
	if err := c.Run(); err != nil {
		t.Fatalf("Courier's imapd: %v\n%s", err, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "+OK SMAP1 LOGIN Ok.") {
		t.Fatalf("Courier's imapd did not log in:\n%s\n%s", out.String(), errOut.String())
	}
	courier := normalise(out.String())

	// Postern's side.
	e := newTestEnv(t)
	fillMaildir(t, e.root, msgs)
	cl := e.dial()
	startEarlyInASecond()
	var got strings.Builder
	got.WriteString(cl.cmd(`\SMAP1 LOGIN alice secret`))
	for _, u := range scriptUnits(script) {
		cl.send(u)
		got.WriteString(cl.reply())
		if u == "LOGOUT\n" {
			break
		}
	}
	postern := normalise(got.String())
	if courier == postern {
		return
	}
	cls := strings.SplitAfter(courier, "\n")
	pls := strings.SplitAfter(postern, "\n")
	for i := 0; i < len(cls) || i < len(pls); i++ {
		var a, b string
		if i < len(cls) {
			a = cls[i]
		}
		if i < len(pls) {
			b = pls[i]
		}
		if a != b {
			lo := max(0, i-5)
			t.Fatalf("replies differ at line %d:\ncourier: %q\npostern: %q\ncontext (courier):\n%s\ncontext (postern):\n%s", i+1, a, b,
				strings.Join(cls[lo:min(len(cls), i+3)], ""), strings.Join(pls[lo:min(len(pls), i+3)], ""))
		}
	}
}
