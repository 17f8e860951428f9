// Command imapbench measures what makes an IMAP server fast or slow on big
// mailboxes, against any server address:
//
//	imapbench fill  -dir MAILDIR -n 100000            write a Maildir with N messages
//	imapbench serve -dir MAILDIR -addr 127.0.0.1:1143  serve it with Postern's IMAP server
//	imapbench run   -addr HOST:PORT -user U -pass P    time the operations below
//
// run times, on one mailbox: LOGIN+SELECT the first time (cold) and again
// (warm), SELECT after one new message was appended (the server must not
// rescan), UID FETCH 1:* (FLAGS), FETCH ENVELOPE of the last 50, UID
// SEARCH on a header and on body text (the median of the repetitions and
// the first, which may build an index), STORE on 1,000 messages, and with
// -idle N it opens N connections that sit in IDLE and holds them for
// -hold, printing IDLE-READY when they are all idle so that a script can
// measure the server's memory. It only connects to the address given.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: imapbench fill|serve|run [flags]")
		return 2
	}
	var err error
	switch args[0] {
	case "fill":
		err = fillMain(args[1:], stdout)
	case "serve":
		err = serveMain(ctx, args[1:], stderr)
	case "run":
		err = benchMain(ctx, args[1:], stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "imapbench: %v\n", err)
		return 1
	}
	return 0
}

// needle is a word in 1 of every 1,000 messages' subject and body, so that
// header and body SEARCH find a few hits in a big folder.
const needle = "zebracrossing"

// fillMain writes N messages into DIR's cur/ (a third of them \Seen),
// named as a delivery agent would name them, with sizes in the name.
func fillMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	dir := fs.String("dir", "", "Maildir to create or extend")
	n := fs.Int("n", 10000, "messages to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *n <= 0 || *n > 10_000_000 {
		return errors.New("fill: -dir and 0 < -n <= 10000000 required")
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(*dir, sub), 0o700); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < *n; i++ {
		subject := words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))] + " report " + strconv.Itoa(i)
		body := strings.Repeat(words[rng.IntN(len(words))]+" ", 20+rng.IntN(60))
		if i%1000 == 999 {
			subject += " " + needle
			body += needle + "\n"
		}
		date := base.Add(time.Duration(i) * time.Minute)
		msg := fmt.Sprintf("Return-Path: <u%d@example.org>\nFrom: User %d <u%d@example.org>\nTo: bench@example.test\nSubject: %s\nDate: %s\nMessage-ID: <%d.bench@example.org>\n\n%s\n",
			i%97, i%97, i%97, subject, date.Format(time.RFC1123Z), i, body)
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1Q%d.bench,S=%d:2,%s", date.Unix(), i, i, len(msg), flags)
		path := filepath.Join(*dir, "cur", name)
		if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
			return err
		}
		os.Chtimes(path, date, date)
	}
	fmt.Fprintf(stdout, "wrote %d messages to %s\n", *n, *dir)
	return nil
}

// conn is a minimal IMAP client that counts responses; it reads literals
// in responses so that any FETCH data stays in step.
type conn struct {
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dial(addr string, timeout time.Duration) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	cn := &conn{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := cn.readLine(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return cn, nil
}

// readLine reads one response line, including any literals it carries.
func (c *conn) readLine() (string, error) {
	var b strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		t := strings.TrimRight(line, "\r\n")
		if strings.HasSuffix(t, "}") {
			if i := strings.LastIndexByte(t, '{'); i >= 0 {
				n, err := strconv.Atoi(strings.TrimSuffix(t[i+1:len(t)-1], "+"))
				if err == nil {
					if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
						return "", err
					}
					continue
				}
			}
		}
		return strings.TrimRight(b.String(), "\r\n"), nil
	}
}

// cmd sends one command and reads to its tagged response; it returns the
// number of untagged responses and the time taken.
func (c *conn) cmd(timeout time.Duration, format string, args ...any) (int, time.Duration, []string, error) {
	c.tag++
	tag := "b" + strconv.Itoa(c.tag)
	start := time.Now()
	c.c.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, fmt.Sprintf(format, args...)); err != nil {
		return 0, 0, nil, err
	}
	untagged := 0
	var keep []string
	for {
		line, err := c.readLine()
		if err != nil {
			return untagged, time.Since(start), keep, err
		}
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, tag+" OK") {
				return untagged, time.Since(start), keep, fmt.Errorf("%s", line)
			}
			return untagged, time.Since(start), keep, nil
		}
		untagged++
		if len(keep) < 64 && (strings.HasPrefix(line, "* SEARCH") || strings.Contains(line, "EXISTS")) {
			keep = append(keep, line)
		}
	}
}

type benchConfig struct {
	addr, user, pass, mailbox string
	timeout                   time.Duration
	repeat                    int
	idle                      int
	hold                      time.Duration
	coldOnly                  bool
}

func benchMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg benchConfig
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:1143", "IMAP server (plain TCP), the only address dialed")
	fs.StringVar(&cfg.user, "user", "bench", "login name")
	fs.StringVar(&cfg.pass, "pass", "bench", "password")
	fs.StringVar(&cfg.mailbox, "mailbox", "INBOX", "mailbox to test")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "bound on each command")
	fs.IntVar(&cfg.repeat, "repeat", 5, "repetitions of each timed operation (the median is reported)")
	fs.IntVar(&cfg.idle, "idle", 0, "connections to hold in IDLE (0: skip)")
	fs.DurationVar(&cfg.hold, "hold", 10*time.Second, "how long to hold the IDLE connections")
	skipOps := fs.Bool("idle-only", false, "only the IDLE test")
	fs.BoolVar(&cfg.coldOnly, "cold-only", false, "only the first LOGIN+SELECT (for repeated cold-start timings)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.repeat < 1 || cfg.repeat > 100 || cfg.idle < 0 || cfg.idle > 100000 {
		return errors.New("run: -repeat 1..100, -idle 0..100000")
	}
	if !*skipOps {
		if err := timeOperations(cfg, stdout); err != nil {
			return err
		}
	}
	if cfg.idle > 0 {
		return holdIdle(ctx, cfg, stdout)
	}
	return nil
}

func login(cfg benchConfig) (*conn, time.Duration, error) {
	start := time.Now()
	c, err := dial(cfg.addr, cfg.timeout)
	if err != nil {
		return nil, 0, err
	}
	if _, _, _, err := c.cmd(cfg.timeout, "LOGIN %q %q", cfg.user, cfg.pass); err != nil {
		c.c.Close()
		return nil, 0, fmt.Errorf("LOGIN: %w", err)
	}
	return c, time.Since(start), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// timeOperations runs each operation and prints one line per result.
func timeOperations(cfg benchConfig, out io.Writer) error {
	report := func(name string, d time.Duration, extra string) {
		fmt.Fprintf(out, "%-34s %12s  %s\n", name, ms(d), extra)
	}
	// Cold: the first LOGIN+SELECT of this mailbox since the server started.
	c, lt, err := login(cfg)
	if err != nil {
		return err
	}
	_, st, lines, err := c.cmd(cfg.timeout, "SELECT %q", cfg.mailbox)
	if err != nil {
		return fmt.Errorf("SELECT: %w", err)
	}
	exists := 0
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "EXISTS" {
			exists, _ = strconv.Atoi(f[1])
		}
	}
	report("LOGIN+SELECT cold", lt+st, fmt.Sprintf("%d messages", exists))
	c.cmd(cfg.timeout, "LOGOUT")
	c.c.Close()
	if cfg.coldOnly {
		return nil
	}

	var warm []time.Duration
	for i := 0; i < cfg.repeat; i++ {
		c, lt, err := login(cfg)
		if err != nil {
			return err
		}
		_, st, _, err := c.cmd(cfg.timeout, "SELECT %q", cfg.mailbox)
		if err != nil {
			return err
		}
		warm = append(warm, lt+st)
		c.cmd(cfg.timeout, "LOGOUT")
		c.c.Close()
	}
	report("LOGIN+SELECT warm", median(warm), "")

	c, _, err = login(cfg)
	if err != nil {
		return err
	}
	defer c.c.Close()
	// One new message arrives (APPEND by a second connection), then SELECT.
	other, _, err := login(cfg)
	if err != nil {
		return err
	}
	msg := "From: a@example.org\r\nSubject: one more\r\n\r\nnew\r\n"
	other.c.SetDeadline(time.Now().Add(cfg.timeout))
	fmt.Fprintf(other.c, "a1 APPEND %q {%d+}\r\n%s\r\n", cfg.mailbox, len(msg), msg)
	for {
		l, err := other.readLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "a1 ") {
			break
		}
	}
	other.cmd(cfg.timeout, "LOGOUT")
	other.c.Close()
	_, st, _, err = c.cmd(cfg.timeout, "SELECT %q", cfg.mailbox)
	if err != nil {
		return err
	}
	report("SELECT after one new message", st, "")

	timeCmd := func(name, command string) error {
		var ds []time.Duration
		var n int
		var lines []string
		for i := 0; i < cfg.repeat; i++ {
			u, d, l, err := c.cmd(cfg.timeout, "%s", command)
			if err != nil {
				return fmt.Errorf("%s: %w", command, err)
			}
			ds = append(ds, d)
			n, lines = u, l
		}
		extra := fmt.Sprintf("%d responses", n)
		if len(lines) > 0 && strings.HasPrefix(lines[0], "* SEARCH") {
			extra = fmt.Sprintf("%d hits", len(strings.Fields(lines[0]))-2)
		}
		// The first run may build what later ones reuse (the header
		// fields, the text index).
		extra += ", first " + ms(ds[0])
		report(name, median(ds), extra)
		return nil
	}
	if err := timeCmd("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)"); err != nil {
		return err
	}
	last := max(exists-49, 1)
	if err := timeCmd("FETCH last 50 (ENVELOPE)", fmt.Sprintf("FETCH %d:* (ENVELOPE)", last)); err != nil {
		return err
	}
	if err := timeCmd("UID SEARCH SUBJECT (header)", "UID SEARCH SUBJECT "+needle); err != nil {
		return err
	}
	if err := timeCmd("UID SEARCH BODY (text)", "UID SEARCH BODY "+needle); err != nil {
		return err
	}
	top := min(1000, exists)
	var stores []time.Duration
	for i := 0; i < cfg.repeat; i++ {
		op := "+"
		if i%2 == 1 {
			op = "-"
		}
		_, d, _, err := c.cmd(cfg.timeout, "STORE 1:%d %sFLAGS.SILENT (\\Flagged)", top, op)
		if err != nil {
			return err
		}
		stores = append(stores, d)
	}
	if cfg.repeat%2 == 1 {
		c.cmd(cfg.timeout, "STORE 1:%d -FLAGS.SILENT (\\Flagged)", top)
	}
	report(fmt.Sprintf("STORE %d messages", top), median(stores), "")
	c.cmd(cfg.timeout, "LOGOUT")
	return nil
}

// holdIdle opens cfg.idle connections, puts each in IDLE, prints
// IDLE-READY and holds them for cfg.hold (or until interrupted).
func holdIdle(ctx context.Context, cfg benchConfig, out io.Writer) error {
	var mu sync.Mutex
	var conns []*conn
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	start := time.Now()
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	var firstErr error
	for i := 0; i < cfg.idle; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := login(cfg)
			if err == nil {
				_, _, _, err = c.cmd(cfg.timeout, "SELECT %q", cfg.mailbox)
			}
			if err == nil {
				c.c.SetDeadline(time.Now().Add(cfg.timeout))
				_, err = fmt.Fprintf(c.c, "i IDLE\r\n")
				if err == nil {
					var l string
					l, err = c.readLine()
					if err == nil && !strings.HasPrefix(l, "+") {
						err = fmt.Errorf("IDLE: %s", l)
					}
				}
				c.c.SetDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				if c != nil {
					c.c.Close()
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("idle connections: %d of %d up: %w", len(conns), cfg.idle, firstErr)
	}
	fmt.Fprintf(out, "IDLE-READY %d connections in %s\n", len(conns), ms(time.Since(start)))
	if f, ok := out.(*os.File); ok {
		f.Sync()
	}
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
	}
	return nil
}
