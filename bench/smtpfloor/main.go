// Command smtpfloor is the least an SMTP server with Postern's durability
// can do: it answers every command with a fixed reply and makes each
// message durable with one record in Postern's delivery journal
// (mailbox/maildir/wal, the same write and flush as a delivery) before its
// 250, then forgets it. No parsing beyond the verb, no policy, no Maildir.
//
// Its rate under a load generator is a ceiling for any Go server on the
// machine that acknowledges a message only once it is on disk, and so the
// yardstick for how much of Postern's time is its own work; see
// bench/README.md and bench/compare-postfix.sh (FLOOR=1). Not a mail
// server: it stores nothing anyone can read.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"postern/mailbox/maildir/wal"
)

const maxMessage = 16 << 20

func main() {
	fs := flag.NewFlagSet("smtpfloor", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: smtpfloor -addr HOST:PORT -dir DIR

Answers SMTP on HOST:PORT and writes each message as one journal record in
DIR/journal (fsync'd before the 250), then drops it. A benchmark yardstick,
not a mail server: see bench/README.md. Stops on SIGINT or SIGTERM.

Options:
`)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:2528", "`address` to listen on")
	dir := fs.String("dir", "", "`directory` for the journal file (created)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "smtpfloor: -dir is required")
		os.Exit(2)
	}
	if err := run(*addr, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "smtpfloor:", err)
		os.Exit(1)
	}
}

func run(addr, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	log, err := wal.Open(filepath.Join(dir, "journal"), wal.Options{Sync: func() error { return nil }}, func(wal.Record) error { return nil })
	if err != nil {
		return err
	}
	defer log.Close()
	slog.Info("smtpfloor", "addr", addr, "journal", log.Stats().Mode)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go serve(c, log)
	}
}

// serve answers one connection: 250 to everything but DATA (354, then 250
// once the message's record is durable) and QUIT (221).
func serve(c net.Conn, log *wal.Log) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 1024)
	reply := func(s string) bool {
		bw.WriteString(s)
		if br.Buffered() > 0 { // pipelined: answer with the group
			return true
		}
		return bw.Flush() == nil
	}
	if !reply("220 smtpfloor ESMTP\r\n") {
		return
	}
	var msg bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		verb := bytes.ToUpper(bytes.TrimSpace(line))
		if i := bytes.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		switch string(verb) {
		case "QUIT":
			reply("221 2.0.0 Bye\r\n")
			bw.Flush()
			return
		case "EHLO":
			if !reply("250-smtpfloor\r\n250-PIPELINING\r\n250 8BITMIME\r\n") {
				return
			}
		case "DATA":
			if !reply("354 End data with <CR><LF>.<CR><LF>\r\n") {
				return
			}
			msg.Reset()
			if err := readData(br, &msg); err != nil {
				return
			}
			r := "250 2.0.0 Ok\r\n"
			if seq, err := log.Append(msg.Bytes()); err != nil {
				r = "451 4.3.0 " + err.Error() + "\r\n"
			} else {
				log.Release(seq)
			}
			if !reply(r) {
				return
			}
		default:
			if !reply("250 2.0.0 Ok\r\n") {
				return
			}
		}
	}
}

// readData reads a dot-terminated message into msg, undoing dot-stuffing.
func readData(br *bufio.Reader, msg *bytes.Buffer) error {
	bol := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if bol && len(line) > 0 && line[0] == '.' {
			if string(line) == ".\r\n" || string(line) == ".\n" {
				return nil
			}
			line = line[1:]
		}
		if msg.Len()+len(line) > maxMessage {
			return errors.New("message too big")
		}
		msg.Write(line)
		bol = line[len(line)-1] == '\n'
	}
}
