package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"postern/filters/dkim"
	"postern/gateway"
	"postern/policy"
	"postern/policy/aliases"
)

// maxUnprivilegedMessage bounds what a user's sendmail reads before the
// server (which enforces sizelimit) sees it.
const maxUnprivilegedMessage = 1 << 30

// sendmailOptions is what the sendmail command line says.
type sendmailOptions struct {
	mode       string // "bm" (deliver), "bs" (SMTP on stdin), "bp" (list queue), "bi" (aliases), "q" (run queue)
	from       string // -f
	fullName   string // -F
	readRcpts  bool   // -t
	dotIsEnd   bool   // a line "." ends the message, unless -i / -oi
	notify     string // -N
	ret        string // -R
	envid      string // -V
	verbose    bool
	recipients []string
}

const sendmailUsage = `Usage: postern sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N NOTIFY] [-R RET] [-V ENVID] [RECIPIENT...] < MESSAGE
       postern sendmail -bs | -bp | -bi | -q

Injects a message into Postern without a network connection, as sendmail(8)
does for cron, PHP and scripts. Also called as "sendmail", "mailq" (= -bp)
and "newaliases" (= -bi).

  -t          take recipients from To, Cc and Bcc (Bcc is removed)
  -i, -oi     a line with a single "." does not end the message
  -f SENDER   envelope sender (default: the invoking user at this host)
  -F NAME     full name for a From line that is added when missing
  -N NOTIFY   DSN NOTIFY: never, or success,failure,delay
  -R RET      DSN RET: full or hdrs
  -V ENVID    DSN envelope id
  -bm         deliver the message (the default)
  -bs         speak SMTP on standard input and output
  -bp         list the queue (mailq)
  -bi         rebuild the aliases (newaliases)
  -q          retry every queued message now
  -v          verbose
  -o...       other options are accepted and ignored, as other MTAs do
Exit status: 0 accepted, 64 usage, 65 a mail loop (too many Received
fields), 67 unknown recipient, 69 refused otherwise, 75 temporary failure
(try again), 78 configuration error.
`

func parseSendmailArgs(args []string) (*sendmailOptions, error) {
	o := &sendmailOptions{mode: "bm", dotIsEnd: true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.recipients = append(o.recipients, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			o.recipients = append(o.recipients, a)
			continue
		}
		// value takes the option's argument: attached ("-ffoo") or next.
		value := func(flag string) (string, error) {
			if len(a) > len(flag) {
				return a[len(flag):], nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "-t":
			o.readRcpts = true
		case a == "-i" || a == "-oi":
			o.dotIsEnd = false
		case a == "-v":
			o.verbose = true
		case strings.HasPrefix(a, "-b"):
			switch a {
			case "-bm", "-bs", "-bp", "-bi":
				o.mode = a[1:]
			default:
				return nil, fmt.Errorf("unsupported mode %s", a)
			}
		case strings.HasPrefix(a, "-q"):
			o.mode = "q" // -q, -q30m (the interval is the server's business)
		case strings.HasPrefix(a, "-f") || strings.HasPrefix(a, "-r"):
			o.from, err = value(a[:2])
		case strings.HasPrefix(a, "-F"):
			o.fullName, err = value("-F")
		case strings.HasPrefix(a, "-N"):
			o.notify, err = value("-N")
		case strings.HasPrefix(a, "-R"):
			o.ret, err = value("-R")
		case strings.HasPrefix(a, "-V"):
			o.envid, err = value("-V")
		case strings.HasPrefix(a, "-o"), strings.HasPrefix(a, "-O"), strings.HasPrefix(a, "-B"),
			strings.HasPrefix(a, "-L"), strings.HasPrefix(a, "-C"), a == "-U", a == "-n", a == "-m", a == "-G":
			// Accepted and ignored (-oem, -oQ..., -B8BITMIME, -L tag, ...).
			if (a == "-o" || a == "-O" || a == "-B" || a == "-L" || a == "-C") && i+1 < len(args) {
				i++
			}
		case a == "-h" || a == "--help":
			return nil, errHelp
		default:
			return nil, fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return nil, err
		}
	}
	switch strings.ToUpper(o.ret) {
	case "", "FULL", "HDRS":
		o.ret = strings.ToUpper(o.ret)
	default:
		return nil, fmt.Errorf("-R takes full or hdrs")
	}
	return o, nil
}

var errHelp = errors.New("help")

// readSendmailMessage reads the message from stdin with LF or CRLF line
// endings and returns it with CRLF, stopping at a lone "." when dotIsEnd.
func readSendmailMessage(r io.Reader, dotIsEnd bool, max int64) ([]byte, error) {
	var out bytes.Buffer
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: keep it, unsplit.
			out.Write(line)
			continue
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if dotIsEnd && len(line) > 0 && string(trimmed) == "." && bytes.HasSuffix(line, []byte("\n")) {
			return out.Bytes(), nil
		}
		if len(line) > 0 {
			out.Write(trimmed)
			if bytes.HasSuffix(line, []byte("\n")) || err == io.EOF {
				out.WriteString("\r\n")
			}
		}
		if int64(out.Len()) > max {
			return nil, fmt.Errorf("message larger than sizelimit (%d bytes)", max)
		}
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// headerAddresses collects the addresses of To, Cc and Bcc for -t and
// returns the message without its Bcc fields.
func headerAddresses(msg []byte) ([]string, []byte, error) {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	hdr, body := msg[:end], msg[end:]
	var kept bytes.Buffer
	var rcpts []string
	lines := bytes.SplitAfter(hdr, []byte("\r\n"))
	for i := 0; i < len(lines); {
		field := append([]byte(nil), lines[i]...)
		i++
		for i < len(lines) && len(lines[i]) > 0 && (lines[i][0] == ' ' || lines[i][0] == '\t') {
			field = append(field, lines[i]...)
			i++
		}
		name, value, ok := bytes.Cut(field, []byte(":"))
		lname := strings.ToLower(strings.TrimSpace(string(name)))
		if ok && (lname == "to" || lname == "cc" || lname == "bcc") {
			list, err := parseRecipientList(strings.TrimSpace(string(bytes.ReplaceAll(value, []byte("\r\n"), nil))))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %v", name, err)
			}
			rcpts = append(rcpts, list...)
			if lname == "bcc" {
				continue
			}
		}
		kept.Write(field)
	}
	out := append(kept.Bytes(), body...)
	if end == len(msg) && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return rcpts, out, nil
}

// parseRecipientList reads a To/Cc/Bcc value. Besides RFC 5322 addresses
// it takes bare local names ("root", "Cron Daemon <root>"), which cron and
// scripts write and the submitter qualifies with the default domain.
func parseRecipientList(v string) ([]string, error) {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out, nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "@") {
			a, err := mail.ParseAddress(item)
			if err != nil {
				return nil, err
			}
			out = append(out, a.Address)
			continue
		}
		local := item
		if i, j := strings.LastIndexByte(item, '<'), strings.LastIndexByte(item, '>'); i >= 0 && j > i {
			local = item[i+1 : j]
		}
		if !isBareLocalPart(local) {
			return nil, fmt.Errorf("%q is not an address", item)
		}
		out = append(out, local)
	}
	return out, nil
}

// isBareLocalPart: a dot-atom local part (RFC 5322 3.2.3) with no domain.
func isBareLocalPart(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return false
		}
	}
	return true
}

func runSendmail(e *env, args []string) int {
	o, err := parseSendmailArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(e.stdout, sendmailUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "sendmail: %v\n%s", err, sendmailUsage)
		return 64
	}
	// A user other than root (a cron job, PHP as www-data) may not read
	// the whole configuration nor write the spool and the mailboxes: the
	// message goes to the running server's submission socket, found
	// through the one setting it needs.
	viaServer := os.Geteuid() != 0 && (o.mode == "" || o.mode == "bm")
	var cfg *policy.Config
	if viaServer {
		dataDir, err := policy.DataDirOf(e.configDir)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: %v\n", err)
			return 78
		}
		cfg = &policy.Config{Dir: e.configDir, DataDir: dataDir, SizeLimit: maxUnprivilegedMessage}
	} else {
		var err error
		if cfg, err = policy.Load(e.configDir); err != nil {
			fmt.Fprintf(e.stderr, "sendmail: configuration %s:\n%v\n", e.configDir, err)
			return 78
		}
	}
	switch o.mode {
	case "bp":
		return runMailq(e, nil)
	case "bi":
		return aliases.MakealiasesMain(nil, e.stdout, e.stderr, cfg.Dir)
	case "q":
		return runQueue(e, []string{"retry"})
	case "bs":
		return sendmailSMTP(e, cfg)
	}
	msg, err := readSendmailMessage(e.stdin, o.dotIsEnd, cfg.SizeLimit)
	if err != nil {
		fmt.Fprintf(e.stderr, "sendmail: reading the message: %v\n", err)
		return 75
	}
	rcpts := o.recipients
	if o.readRcpts {
		fromHeaders, stripped, err := headerAddresses(msg)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: -t: %v\n", err)
			return 64
		}
		rcpts = append(rcpts, fromHeaders...)
		msg = stripped
	}
	if len(rcpts) == 0 {
		fmt.Fprintf(e.stderr, "sendmail: no recipients (give addresses, or -t)\n")
		return 64
	}
	sub := gateway.Submission{Login: "root", UID: os.Getuid(), From: o.from, FullName: o.fullName,
		Rcpts: rcpts, Notify: o.notify, Ret: o.ret, EnvID: o.envid, Msg: msg}
	if u, err := user.Current(); err == nil {
		sub.Login = u.Username
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var id string
	var ref *gateway.Refusal
	if !viaServer {
		rt, closeAll, err := openGateway(cfg)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: %v\n", err)
			return 75
		}
		defer closeAll()
		signer, err := dkim.LoadSigner(cfg.Dir)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: the message is not DKIM-signed: %v\n", err)
		}
		sb := &gateway.Submitter{Router: rt.router, Local: rt.local, Queue: rt.queue, Me: cfg.Me, Log: rt.log, Signer: signer}
		id, ref, err = sb.Submit(ctx, sub)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: could not accept the message: %v\n", err)
			return 75
		}
	} else {
		// Not allowed to write the spool and the mailboxes (a user's cron
		// job, PHP as www-data): the running server accepts the message
		// on its submission socket, knowing the sender by its uid.
		var err error
		id, ref, err = gateway.SubmitToServer(ctx, filepath.Join(cfg.DataDir, gateway.SubmitSocketName), sub)
		if err != nil {
			fmt.Fprintf(e.stderr, "sendmail: %v\n", err)
			return 75
		}
	}
	if ref != nil {
		fmt.Fprintf(e.stderr, "sendmail: %s\n", ref.Text)
		switch {
		case ref.Code < 500:
			return 75
		case ref.Enhanced == "5.4.6":
			return 65 // EX_DATAERR: the message's own header says it loops
		case strings.HasPrefix(ref.Enhanced, "5.1."):
			return 67
		}
		return 69 // EX_UNAVAILABLE: refused for good
	}
	if o.verbose {
		fmt.Fprintf(e.stdout, "accepted as %s for %d recipient(s)\n", id, len(rcpts))
	}
	return 0
}
