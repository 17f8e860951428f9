package mailbot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Config is what Run takes from the process.
type Config struct {
	Getenv   func(string) string
	Environ  []string // environment of the mail program
	Now      func() time.Time
	Hostname string
	Location *time.Location
	LockWait time.Duration // how long to wait for the -d database
}

// MailbotMain runs mailbot with args (without the program name). The exit
// status is the mail program's; 0 when no reply is due; 75 for a bad
// command line or a reply database that cannot be used (the delivery is
// retried rather than the reply lost or sent twice); 1 for other errors.
func MailbotMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	host, _ := os.Hostname()
	cfg := Config{Getenv: os.Getenv, Environ: os.Environ(), Now: time.Now, Hostname: host, Location: time.Local, LockWait: 30 * time.Second}
	return Run(context.Background(), cfg, args, stdin, stdout, stderr)
}

// Run is MailbotMain with its environment passed in.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	o, err := parseArgs(args, cfg.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "Usage: mailbot [ options ] [ $MAILER arg arg... ] (see mailbot(1))")
		return 75
	}
	reply, err := buildReply(cfg, o, stdin)
	if err != nil {
		fmt.Fprintln(stderr, err)
		var dbErr *dbError
		if errors.As(err, &dbErr) {
			return 75
		}
		return 1
	}
	if reply == nil {
		return 0
	}
	if o.showOnly {
		if _, err := stdout.Write(reply); err != nil {
			fmt.Fprintf(stderr, "mailbot: write: %v\n", err)
			return 1
		}
		return 0
	}
	return send(ctx, cfg, o, reply, stdout, stderr)
}

// send pipes the reply into the mail program, as Courier's mailbot does by
// exec'ing it with the reply on standard input.
func send(ctx context.Context, cfg Config, o *options, reply []byte, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, o.command[0], o.command[1:]...)
	cmd.Stdin = bytes.NewReader(reply)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = cfg.Environ
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if code := exitErr.ExitCode(); code >= 0 {
			return code
		}
		return 75
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailbot: %s: %v\n", o.command[0], err)
		return 75
	}
	return 0
}

type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// buildReply returns the reply, or nil when none is due.
func buildReply(cfg Config, o *options, stdin io.Reader) ([]byte, error) {
	c, ok, err := loadContent(o)
	if err != nil || !ok {
		// Read the message anyway, so that the writer into our pipe ends cleanly.
		_, _ = io.Copy(io.Discard, stdin)
		return nil, err
	}
	m, err := readOriginal(stdin)
	if err != nil {
		return nil, fmt.Errorf("mailbot: %w", err)
	}
	sender := o.sender
	if sender == "" {
		sender = firstAddress(replyAddress(m, false))
		if sender == "" {
			return nil, nil // no one to answer
		}
	}
	envelope, known := cfg.Getenv("SENDER"), false
	if cfg.Environ != nil {
		for _, kv := range cfg.Environ {
			if strings.HasPrefix(kv, "SENDER=") {
				known = true
			}
		}
	}
	if !known && m.has("Return-Path") {
		envelope, known = m.get("Return-Path"), true
		if a := firstAddress(envelope); a != "" {
			envelope = a
		}
	}
	if reasonNotToAnswer(m, envelope, known) != "" {
		return nil, nil
	}
	if len(o.recipients) > 0 && !addressedToUs(m, o.recipients) {
		return nil, nil
	}
	if o.dbFile != "" {
		recent, err := recentlyAnswered(o.dbFile, sender, o.days, cfg.Now(), cfg.LockWait)
		if err != nil {
			return nil, &dbError{err}
		}
		if recent {
			return nil, nil
		}
	}
	return compose(cfg, o, m, c, sender), nil
}

// compose writes the reply in Courier's layout: -A fields, Precedence and
// Auto-Submitted (RFC 3834 5), addressing, threading (RFC 5322 3.6.4),
// subject, then the MIME body for the chosen -T format.
func compose(cfg Config, o *options, m *original, c *content, sender string) []byte {
	var h bytes.Buffer
	for _, a := range o.extraHeaders {
		h.WriteString(a + "\n")
	}
	h.WriteString("Precedence: junk\nAuto-Submitted: auto-replied\n")
	forward := o.mode == "forward" || o.mode == "forwardatt"
	if !forward {
		h.WriteString("To: " + replyAddress(m, o.replyEnvelope) + "\n")
		if o.mode == "replyall" {
			var cc []string
			for _, f := range m.fields {
				if strings.EqualFold(f.name, "To") || strings.EqualFold(f.name, "Cc") {
					cc = append(cc, addresses(unfold(f.value))...)
				}
			}
			if len(cc) > 0 {
				h.WriteString("Cc: " + strings.Join(cc, ", ") + "\n")
			}
		}
		if id := m.get("Message-ID"); id != "" {
			refs := strings.Fields(m.get("References"))
			if len(refs) == 0 {
				if irt := m.get("In-Reply-To"); strings.HasPrefix(irt, "<") {
					refs = strings.Fields(irt)[:1]
				}
			}
			refs = append(refs, id)
			h.WriteString("References: " + strings.Join(refs, "\n            ") + "\n")
			h.WriteString("In-Reply-To: " + id + "\n")
		}
	}
	subject := m.get("Subject")
	switch {
	case o.subject != nil:
		subject = *o.subject
	case forward:
		subject += " (fwd)"
	default:
		subject = replySubject(subject)
	}
	h.WriteString("Subject: " + subject + "\nMime-Version: 1.0\n")

	// The text part: salutation and quote for replies, then the response.
	var text bytes.Buffer
	quoting := !o.noQuote && !forward && o.mode != "replydsn" && m.isPlainText()
	if quoting {
		text.WriteString(salutation(o.salutation, m, sender, cfg.Location) + "\n\n")
		if q := quote(m.body); q != "" {
			text.WriteString(q + "\n")
		}
	}
	text.Write(c.body)
	if !bytes.HasSuffix(c.body, []byte("\n")) && len(c.body) > 0 {
		text.WriteString("\n")
	}
	textPart := c.header + "Content-Transfer-Encoding: 8bit\n\n" + text.String()

	switch o.mode {
	case "forward":
		var fw strings.Builder
		fw.WriteString("\n" + o.forwardSep + "\n")
		for _, name := range []string{"From", "To", "Cc", "Subject", "Message-ID", "Date"} {
			if v := m.get(name); v != "" {
				fw.WriteString(name + ": " + v + "\n")
			}
		}
		fw.WriteString("\n")
		h.WriteString(textPart + fw.String())
		h.Write(m.body)
	case "forwardatt", "replydsn":
		boundary := newBoundary(cfg.Hostname)
		if o.mode == "replydsn" {
			fmt.Fprintf(&h, "Content-Type: multipart/report; report-type=delivery-status;\n    boundary=%q\n\n", boundary)
		} else {
			fmt.Fprintf(&h, "Content-Type: multipart/mixed; boundary=%q\n\n", boundary)
		}
		h.WriteString("This is a MIME-formatted message.  If you see this text it means that your\nE-mail software does not support MIME-formatted messages.\n\n")
		h.WriteString("--" + boundary + "\n" + textPart)
		if o.mode == "forwardatt" {
			h.WriteString("\n" + o.forwardSep + "\n")
		}
		h.WriteString("\n--" + boundary + "\n")
		if o.mode == "replydsn" {
			// RFC 3464 2.2, 2.3: one per-recipient block for the -M address.
			dsnFrom := o.dsnFrom
			if dsnFrom == "" {
				dsnFrom = sender
			}
			h.WriteString("Content-Type: message/delivery-status\nContent-Transfer-Encoding: 7bit\n\n")
			h.WriteString("Arrival-Date: " + cfg.Now().In(cfg.Location).Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\n\n")
			h.WriteString("Final-Recipient: rfc822; " + dsnFrom + "\nAction: delivered\nStatus: 2.0.0\n")
			h.WriteString("\n--" + boundary + "\n")
		}
		if o.mode == "forwardatt" || o.fullMessage {
			h.WriteString("Content-Type: message/rfc822\nContent-Description: Forwarded message\n\n")
			h.Write(m.rawHeader)
			h.WriteString("\n")
			h.Write(m.body)
		} else {
			h.WriteString("Content-Type: text/rfc822-headers; charset=\"utf-8\"\nContent-Disposition: attachment\nContent-Transfer-Encoding: 8bit\n\n")
			h.Write(m.rawHeader)
		}
		h.WriteString("\n--" + boundary + "--\n")
	default:
		h.WriteString(textPart)
	}
	return h.Bytes()
}
