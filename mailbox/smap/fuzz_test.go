package smap

import (
	"bufio"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"postern/internal/netserve"
	"postern/mailbox/maildir"
)

// FuzzCommandLine feeds command lines to the word parser, the message-set
// parser, the folder-path mappings (own and shared) and SEARCH's parser: none may panic, a
// folder name must stay one directory inside the Maildir, and a level's
// on-disk name must read back as the name.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		`LIST INBOX`, `CREATE INBOX "a.b" "Ünï"`, `COPY 1-2 5 "" INBOX Sub`, `FETCH 1 CONTENTS.PEEK=HEADERS[1.2.0](FROM,:ENVELOPE)`,
		`SEARCH UNMARKED NOT SUBJECT "x""y"`, `STORE 3-1 +FLAGS=SEEN`, `OPEN INBOX ../x`, "\"unterminated", `SEARCH 1-3,* TEXT ttest`,
		"\x00\xff\"\"\"", `EXPUNGE 99999999999999999999`,
		`OPEN shared team Lists`, `OPEN shared ../team ../x`, `LIST shared team "a.b" Sub`, `ADD FOLDER shared team "Lists/../.." ""`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		w := newWords(line)
		path := w.path()
		for _, p := range path {
			if p == "" {
				t.Fatal("empty word inside a path")
			}
		}
		if name, err := folderName(path); err == nil && name != "INBOX" {
			if strings.Contains(name, "/") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
				t.Fatalf("folder name %q from %q escapes", name, path)
			}
		}
		for _, p := range path {
			if enc, err := encodeLevel(p); err == nil {
				if strings.ContainsAny(enc, "./") {
					t.Fatalf("level %q encoded as %q", p, enc)
				}
				if back := decodeLevel(enc); back != p {
					t.Fatalf("level %q -> %q -> %q", p, enc, back)
				}
			} else if utf8.ValidString(p) && !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("valid level %q refused: %v", p, err)
			}
		}
		// A shared folder's name stays one Maildir++ folder inside the
		// sharable maildir, whatever the words.
		if _, folder, err := sharedFolderName(path); err == nil {
			if maildir.ValidFolderName(folder) != nil || strings.Contains(folder, "/") || strings.Contains(folder, "..") {
				t.Fatalf("shared folder name %q from %q escapes", folder, path)
			}
		}
		set, _, _, ok := parseMsgSet(newWords(line))
		if ok {
			var last uint32
			for _, r := range set {
				if r.lo <= last || r.hi < r.lo {
					t.Fatalf("set %v not ascending", set)
				}
				last = r.hi
			}
		}
		parseSearch(newWords(line), 10)
	})
}

// FuzzUpload feeds ADD's data to the upload reader in both forms: it must
// end, never give more than the limit, and never leave a CR in the message.
func FuzzUpload(f *testing.F) {
	f.Add(true, "Subject: x\n\n..dot\r\nbody\n.\n")
	f.Add(false, "5\nabcde\n0\n\n")
	f.Add(true, ".\n")
	f.Add(false, "x")
	f.Fuzz(func(t *testing.T, dot bool, data string) {
		sess := &session{conn: netserve.NewConn(nopConn{}, time.Minute)}
		u := &uploadReader{sess: sess, br: bufio.NewReaderSize(strings.NewReader(data), 16), dot: dot, limit: 1 << 12}
		if !dot {
			u.left = leadingNumber(data)
			u.br = bufio.NewReaderSize(strings.NewReader(data[min(len(data), strings.IndexByte(data+"\n", '\n')+1):]), 16)
		}
		var got strings.Builder
		buf := make([]byte, 7)
		for i := 0; ; i++ {
			if i > 1<<20 {
				t.Fatal("reader does not end")
			}
			n, err := u.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if strings.Contains(got.String(), "\r") {
			t.Fatalf("CR in message %q", got.String())
		}
		if int64(got.Len()) > u.limit+1 {
			t.Fatalf("gave %d bytes over a limit of %d", got.Len(), u.limit)
		}
	})
}
