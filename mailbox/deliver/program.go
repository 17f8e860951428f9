package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/mailbox/maildir"
)

// runProgram runs "SHELL -c cmd" in the home with msg on stdin and env as
// its environment, keeps up to keep bytes of its standard output (and a
// little of its standard error for the log), and returns its exit status.
// A program killed by the timeout or a signal is an error (temporary).
func (j *job) runProgram(ctx context.Context, shell, cmd string, msg []byte, env []string, keep int) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, j.a.opt.ProgramTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, shell, "-c", cmd)
	c.Dir = j.dir
	if st, err := os.Stat(c.Dir); err != nil || !st.IsDir() {
		c.Dir = "/"
	}
	c.Env = env
	c.Stdin = bytes.NewReader(msg)
	out := &CapBuffer{Max: keep}
	errOut := &CapBuffer{Max: 4096}
	c.Stdout, c.Stderr = out, errOut
	// Its own process group, so that a timeout kills the pipeline it
	// started, not only the shell.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	err := c.Run()
	if ctx.Err() != nil {
		return 0, nil, fmt.Errorf("program %q: killed after %s: %w", cmd, j.a.opt.ProgramTimeout, ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 0, nil, fmt.Errorf("program %q: killed by %s", cmd, ws.Signal())
		}
		code := exitErr.ExitCode()
		if code != 0 {
			j.a.log.Info("deliver: program exited", "account", j.acct.Name, "command", cmd, "code", code, "stderr", tail(errOut.Bytes()))
		}
		return code, out.Bytes(), nil
	}
	if errOut.Len() > 0 {
		// A program that succeeds may still have something to say (why
		// dotforward ignored a .forward, for one).
		j.a.log.Info("deliver: program wrote to standard error", "account", j.acct.Name, "command", cmd, "stderr", tail(errOut.Bytes()))
	}
	if err != nil && !errors.Is(err, syscall.EPIPE) {
		return 0, nil, fmt.Errorf("program %q: %w", cmd, err)
	}
	if out.over {
		return 0, nil, fmt.Errorf("program %q: more than %d bytes of output", cmd, keep)
	}
	return 0, out.Bytes(), nil
}

// CapBuffer keeps the first Max bytes and notes that there were more. It
// never fails a write, so a chatty program is not killed by SIGPIPE.
type CapBuffer struct {
	bytes.Buffer
	Max  int
	over bool
}

func (c *CapBuffer) Write(p []byte) (int, error) {
	room := c.Max - c.Len()
	if room < len(p) {
		c.over = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// courierEnv is the environment Courier's local delivery gives programs
// (dot-courier(5), ENVIRONMENT): HOME, USER, SENDER, RECIPIENT, LOCAL,
// HOST, EXT, EXT2-EXT4, DEFAULT, UFLINE, RPLINE, DTLINE, MAILDIRQUOTA.
func (j *job) courierEnv(defaultPart string) map[string]string {
	local, host := j.req.Recipient, ""
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local, host = local[:i], local[i+1:]
	}
	sender := j.req.Sender
	ufrom := sender
	if ufrom == "" {
		ufrom = "MAILER-DAEMON"
	}
	env := map[string]string{
		"HOME":         j.home,
		"USER":         j.acct.Name,
		"LOGNAME":      j.acct.Name,
		"SENDER":       sender,
		"RECIPIENT":    j.req.Recipient,
		"LOCAL":        local,
		"HOST":         host,
		"EXT":          j.req.Extension,
		"DEFAULT":      defaultPart,
		"MAILDIRQUOTA": j.acct.Quota,
		"UFLINE":       "From " + ufrom + " " + j.a.opt.Now().Format("Mon Jan _2 15:04:05 2006") + "\n",
		"RPLINE":       "Return-Path: <" + sender + ">\n",
		"DTLINE":       "Delivered-To: " + j.req.Recipient + "\n",
		"PATH":         "/bin:/usr/bin:/usr/local/bin",
		"SHELL":        "/bin/sh",
	}
	ext := j.req.Extension
	for i := 2; i <= 4; i++ {
		k := strings.IndexByte(ext, '-')
		if k < 0 {
			ext = ""
		} else {
			ext = ext[k+1:]
		}
		env["EXT"+strconv.Itoa(i)] = ext
	}
	return env
}

// programEnv is the environment of a program: a filter's variables
// (maildropfilter(7): every variable is exported), or Courier's set.
func (j *job) programEnv(vars map[string]string) []string {
	if vars == nil {
		vars = j.courierEnv("")
	}
	return envList(vars)
}

func envList(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// forward resends msg to addrs through sendmail with the original
// envelope sender, so that bounces go to the author (maildrop 2.9.3 passes
// an empty "-f", a null sender; see docs/maildrop.md), or its
// SRS address when the configuration turns SRS on (srssecrets), so that
// the copy passes SPF and a bounce still reaches the author through us. A
// filter may name its own $SENDMAIL.
func (j *job) forward(ctx context.Context, addrs []string, msg []byte, from string, vars map[string]string) error {
	for _, a := range addrs {
		if err := checkAddress(a); err != nil {
			return err
		}
	}
	// Postern's own sendmail gets -oi; a filter's own $SENDMAIL runs as
	// written, as maildrop runs it (its default, too, carries the -oi).
	argv := append(append([]string(nil), j.a.sendmail...), "-oi")
	if vars != nil {
		if f := strings.Fields(vars["SENDMAIL"]); len(f) > 0 && vars["SENDMAIL"] != j.a.sendmailVar() {
			argv = f
		}
	}
	switch {
	case j.a.opt.ForwardSender != nil:
		from = j.a.opt.ForwardSender(from)
	case j.a.opt.Config != nil:
		from = j.a.opt.Config.ForwardSender(from)
	}
	if from == "" {
		from = "<>"
	}
	argv = append(argv, "-f", from)
	argv = append(argv, addrs...)
	if seal := j.a.opt.SealForward; seal != nil {
		// The domain mail was addressed to signs, as for an alias's
		// copy; maildrop -d gives only an account name.
		forwarder := j.req.Recipient
		if !strings.Contains(forwarder, "@") && j.req.Account != nil {
			forwarder = j.req.Account.Name
		}
		var why string
		if msg, why = seal(ctx, msg, forwarder); why != "" {
			j.a.log.Debug("forward not ARC-sealed", "to", strings.Join(addrs, ","), "reason", why)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, j.a.opt.ProgramTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stdin = bytes.NewReader(msg)
	c.Env = j.programEnv(vars)
	errOut := &CapBuffer{Max: 4096}
	c.Stdout, c.Stderr = errOut, errOut
	c.WaitDelay = 2 * time.Second
	if err := c.Run(); err != nil {
		return fmt.Errorf("forward to %s: %s: %w (%s)", strings.Join(addrs, ", "), argv[0], err, tail(errOut.Bytes()))
	}
	return nil
}

// sendmailVar is $SENDMAIL as filters see it by default.
func (a *Agent) sendmailVar() string {
	return strings.Join(a.sendmail, " ") + " -oi"
}

// quotaWarning is maildrop -w: after a delivery into a maildir with a
// quota, when the maildir is at least QuotaWarnPercent full, a warning
// message goes into its INBOX, at most once per 24 hours (the quotawarn
// file's time says when the last one went).
func (j *job) quotaWarning(md *maildir.Maildir, d Destination) {
	pct := j.a.opt.QuotaWarnPercent
	if pct <= 0 {
		return
	}
	limit, used, err := md.Quota()
	if err != nil || limit.IsZero() || limit.Percent(used) < pct {
		return
	}
	stamp := filepath.Join(d.Root, "quotawarn")
	now := j.a.opt.Now()
	if st, err := os.Stat(stamp); err == nil && now.Sub(st.ModTime()) < 24*time.Hour {
		return
	}
	text := []byte(defaultQuotaWarning)
	if j.a.opt.QuotaWarnFile != "" {
		if b, err := readBounded(j.a.opt.QuotaWarnFile, 64<<10); err == nil {
			text = b
		}
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "Date: %s\nMessage-Id: <%d.quotawarn@%s>\n", now.Format(time.RFC1123Z), now.UnixNano(), j.a.hostname)
	msg.Write(text)
	if _, err := md.Deliver(maildir.Inbox, &msg, maildir.DeliverOptions{IgnoreQuota: true}); err != nil {
		j.a.log.Warn("deliver: quota warning", "maildir", d.Root, "err", err)
		return
	}
	if f, err := os.Create(stamp); err == nil {
		f.Close()
		os.Chtimes(stamp, now, now)
		j.handOver(stamp)
	}
}

const defaultQuotaWarning = `From: Mail Delivery System <MAILER-DAEMON>
Subject: Mail quota warning
Mime-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Your mailbox on the server is now more than the warning threshold full.
To keep receiving mail, please delete some messages.
`
