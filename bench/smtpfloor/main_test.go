package main

import (
	"bufio"
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/mailbox/maildir/wal"
)

func TestReadData(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\n.\r\n", "a\r\n"},
		{"..x\r\n.\r\nQUIT\r\n", ".x\r\n"},
		{"a\n.\n", "a\n"},
		{".\r\n", ""},
		{strings.Repeat("y", 10000) + "\r\n.z\r\n.\r\n", strings.Repeat("y", 10000) + "\r\nz\r\n"},
	} {
		var msg bytes.Buffer
		if err := readData(bufio.NewReaderSize(strings.NewReader(tc.in), 16), &msg); err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if msg.String() != tc.want {
			t.Fatalf("%q: got %q, want %q", tc.in, msg.String(), tc.want)
		}
	}
	var msg bytes.Buffer
	if err := readData(bufio.NewReader(strings.NewReader("no end\r\n")), &msg); err == nil {
		t.Fatal("a message without its dot was accepted")
	}
}

func FuzzReadData(f *testing.F) {
	f.Add([]byte("a\r\n..b\r\n.\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var msg bytes.Buffer
		readData(bufio.NewReaderSize(bytes.NewReader(in), 16), &msg)
		if msg.Len() > len(in) {
			t.Fatalf("%d bytes out of %d in", msg.Len(), len(in))
		}
	})
}

// TestServeJournals: each 250 follows a journal record of the message.
func TestServeJournals(t *testing.T) {
	log, err := wal.Open(filepath.Join(t.TempDir(), "journal"), wal.Options{Sync: func() error { return nil }}, func(wal.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c, log)
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	c.Write([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"))
	var got []string
	for len(got) < 7 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimSpace(l))
	}
	c.Write([]byte("Subject: x\r\n\r\n..body\r\n.\r\nQUIT\r\n"))
	for range 2 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimSpace(l))
	}
	if got[0] != "220 smtpfloor ESMTP" || got[6] != "354 End data with <CR><LF>.<CR><LF>" || got[7] != "250 2.0.0 Ok" || got[8] != "221 2.0.0 Bye" {
		t.Fatalf("dialogue: %q", got)
	}
	if st := log.Stats(); st.Records != 1 {
		t.Fatalf("journal records: %d, want 1", st.Records)
	}
}
