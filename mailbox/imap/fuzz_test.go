package imap

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"postern/mailbox/acl"
)

// FuzzParseCommand feeds arbitrary bytes to the command reader, command
// after command, as a session would: it must never panic, hang, or read
// past the input; errors are only parse errors or the end of input.
func FuzzParseCommand(f *testing.F) {
	for _, seed := range []string{
		"a1 LOGIN alice secret\r\n",
		"a2 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODYSTRUCTURE)\r\n",
		"a3 UID SEARCH CHARSET UTF-8 OR (SEEN FROM {3+}\r\nbob) NOT 1:5,7 SENTSINCE 1-Jan-2020\r\n",
		"a4 APPEND INBOX (\\Seen) \" 1-Jan-2020 00:00:00 +0000\" {5+}\r\nhello\r\n",
		"a5 STORE 1,2:4 +FLAGS.SILENT (\\Deleted $Junk)\r\n",
		"a6 LIST \"\" %\r\na7 STATUS INBOX (MESSAGES UNSEEN)\r\n",
		"a8 ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a9 FETCH 1 BODY[1.2.3.MIME]\r\n",
		"b1 FETCH 1 (FLAGS\r\nb2 NOOP\r\n",
		"c1 CREATE {4}\r\nabcd\r\n",
		"d1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
		"z1 COMPRESS DEFLATE\r\nz2 COMPRESS\r\n",
		"e1 FETCH 1:* (PREVIEW (LAZY) EMAILID THREADID SAVEDATE)\r\ne2 FETCH 1 PREVIEW (lazy) (CHANGEDSINCE 4)\r\n",
		"e3 FETCH 1 PREVIEW (CHANGEDSINCE 4)\r\ne4 FETCH 1 PREVIEW (\r\n",
		"u1 APPEND INBOX (\\Seen) UTF8 (~{5+}\r\nhello) UTF8 (~{2+}\r\nhi)\r\nu2 APPEND INBOX utf8 ({1}\r\n",
		"r1 REPLACE 1 Drafts (\\Draft) {5+}\r\nhello\r\nr2 UID REPLACE 7 INBOX UTF8 (~{2+}\r\nhi)\r\nr3 REPLACE 0 x {1}\r\n",
		"e5 SEARCH EMAILID Mabc THREADID T-1_x SAVEDSINCE 1-Jan-2020 SAVEDATESUPPORTED\r\ne6 STATUS INBOX (MAILBOXID)\r\n",
	} {
		f.Add([]byte(seed))
	}
	srv := NewServer(Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDecoder(bufio.NewReader(bytes.NewReader(data)), nil)
		d.maxSkip = 1 << 20
		for i := 0; i < 1000; i++ {
			d.reset()
			cmd, err := srv.parseCommand(d, anyState)
			if err == nil && cmd.spec.ownsLineEnd {
				// APPEND's messages, one after another (MULTIAPPEND).
				var a appendArgs
				switch args := cmd.args.(type) {
				case appendArgs:
					a = args
				case replaceArgs:
					a = args.msg
				}
				for err == nil {
					if err = d.skip(a.size); err != nil {
						break
					}
					if a.utf8 {
						if err = d.expect(')', "')'"); err != nil {
							break
						}
					}
					if b, perr := d.peek(); perr != nil || b != ' ' {
						err = d.crlf()
						break
					}
					d.readByte()
					a, err = d.appendMessage()
				}
			}
			if err == nil {
				continue
			}
			var pe *parseError
			if errors.As(err, &pe) || errors.Is(err, errLiteralTooBig) {
				if derr := d.discardCommand(); derr != nil {
					return
				}
				continue
			}
			return // end of input, or a limit that closes the connection
		}
	})
}

// FuzzSeqSet: a parsed set prints back to a set that parses the same.
func FuzzSeqSet(f *testing.F) {
	for _, s := range []string{"1", "*", "1:*", "5:2", "1,3:5,7:*", "4294967295", "1,,2", "0", ":", "1:2:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := parseSeqSet(s)
		if err != nil {
			return
		}
		again, err := parseSeqSet(set.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", s, set.String(), err)
		}
		if again.String() != set.String() {
			t.Fatalf("%q: round trip %q != %q", s, again.String(), set.String())
		}
		for _, n := range []uint32{1, 2, 100} {
			set.contains(n, 50)
		}
	})
}

// FuzzMailboxName: decoding modified UTF-7 never panics, and what decodes
// encodes back to a name that decodes the same.
func FuzzMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "&ZeVnLIqe-", "a&-b", "&Jjo", "&AGE-", "Work.2024", "\xff", "caf\xc3\xa9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if dec, err := decodeMUTF7(s); err == nil {
			again, err := decodeMUTF7(encodeMUTF7(dec))
			if err != nil || again != dec {
				t.Fatalf("%q: decoded %q, re-encoded %q decodes to %q (%v)", s, dec, encodeMUTF7(dec), again, err)
			}
		}
		wireMailboxName(s)
		matchPattern(s, "INBOX.a.b")
	})
}

// FuzzACLIdentifier: an identifier SETACL accepts is stored in a form the
// ACL file keeps (no space, no control character) and shown back as sent,
// up to the "user=" prefix and the "anonymous" synonym.
func FuzzACLIdentifier(f *testing.F) {
	for _, s := range []string{"bob", "-bob", "anyone", "anonymous", "user=bob", "-user=x", "group=staff", "--x", "-", "", "a b", "user=", "caf\xc3\xa9", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := storedIdentifier(s)
		if !ok {
			return
		}
		if !acl.ValidID(id) {
			t.Fatalf("%q stored as invalid %q", s, id)
		}
		back := wireIdentifier(id)
		again, ok := storedIdentifier(back)
		if !ok || again != id {
			t.Fatalf("%q -> %q -> %q -> %q (%v)", s, id, back, again, ok)
		}
		if l := acl.Parse(acl.List{{ID: id, Rights: acl.All}}.Marshal()); len(l) != 1 || l[0].ID != id {
			t.Fatalf("%q does not survive the file: %+v", id, l)
		}
	})
}
