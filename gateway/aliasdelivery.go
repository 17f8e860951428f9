package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/gateway/delivery"
	"postern/mailbox/deliver"
	"postern/mailbox/maildir"
)

// AliasProgramTimeout bounds one run of an alias's program or file
// delivery; a program still running then is killed (with its process
// group) and the delivery retried later.
const AliasProgramTimeout = 10 * time.Minute

// deliverPipe delivers to an alias's program ("|command", run by
// /bin/sh -c) or file ("/path": an mbox; "/path/": a Maildir, through
// "postern deliverfile"). Both run as the configured aliasuser when the
// server runs as root (never as root: Postfix's default_privs), with the
// message on standard input as a local delivery agent sees it: LF line
// ends, Return-Path and Delivered-To on top. The exit status is read as
// Courier reads a delivery program's (deliver.StatusForExit): 0 delivered,
// 64, 65, 67-70, 76-78 permanent (a bounce), others temporary (retried).
func (l *LocalDelivery) deliverPipe(ctx context.Context, env *delivery.Envelope, rc delivery.Recipient, msg delivery.Message) delivery.Result {
	var argv []string
	switch {
	case strings.HasPrefix(rc.Pipe, "|") && len(rc.Pipe) > 1:
		argv = []string{"/bin/sh", "-c", rc.Pipe[1:]}
	case strings.HasPrefix(rc.Pipe, "/"):
		self := l.Self
		if len(self) == 0 {
			exe, err := os.Executable()
			if err != nil {
				return delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; cannot find the postern binary for a file delivery"}
			}
			self = []string{exe}
		}
		argv = append(append([]string(nil), self...), "deliverfile", "-f", env.From, rc.Pipe)
	default:
		return delivery.Result{Err: fmt.Errorf("bad alias target %q", rc.Pipe), Permanent: true, Status: "5.3.0", Diagnostic: "x-postern; bad alias target"}
	}
	cfg := l.Router.Config()
	name := cfg.AliasUser
	u, err := user.Lookup(name)
	if err != nil {
		return delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; aliasuser " + name + " unknown: " + err.Error()}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if os.Geteuid() == 0 && uid == 0 {
		return delivery.Result{Err: errors.New("aliasuser is root"), Status: "4.3.0", Diagnostic: "x-postern; aliasuser may not be root"}
	}
	local, domain, _ := splitAddress(rc.Addr)
	ctx, cancel := context.WithTimeout(ctx, AliasProgramTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stdin = io.MultiReader(bytes.NewReader(traceForLocal(env.From, rc.Addr)), maildir.LFReader(io.NewSectionReader(msg, 0, msg.Size())))
	c.Dir = "/" // the alias user may have no home (nobody's is /nonexistent)
	c.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + u.HomeDir,
		"USER=" + u.Username,
		"LOGNAME=" + u.Username,
		"SHELL=/bin/sh",
		"SENDER=" + env.From,
		"RECIPIENT=" + rc.Addr,
		"LOCAL=" + local,
		"HOST=" + domain,
		"ORIGINAL_RECIPIENT=" + strings.TrimPrefix(rc.ORcpt, "rfc822;"),
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		c.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	out := &deliver.CapBuffer{Max: 2048}
	c.Stdout, c.Stderr = out, out
	err = c.Run()
	what := strings.TrimPrefix(rc.Pipe, "|")
	if ctx.Err() != nil {
		return delivery.Result{Err: ctx.Err(), Status: "4.3.0", Diagnostic: fmt.Sprintf("x-postern; %s killed after %s", what, AliasProgramTimeout)}
	}
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		code = exitErr.ExitCode()
	case err != nil:
		return delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; " + what + ": " + err.Error()}
	}
	if code == 0 {
		return delivery.Result{Status: "2.0.0", Diagnostic: "x-postern; delivered to " + what}
	}
	text := strings.Join(strings.Fields(out.String()), " ")
	if text == "" {
		text = "exit status " + strconv.Itoa(code)
	}
	diag := fmt.Sprintf("x-postern; %s: %s", what, text)
	switch deliver.StatusForExit(code) {
	case deliver.StatusOK:
		return delivery.Result{Status: "2.0.0", Diagnostic: "x-postern; delivered to " + what}
	case deliver.StatusPermanent:
		status := "5.3.0"
		if code == 77 {
			status = "5.2.2" // over quota (deliverquota)
		}
		return delivery.Result{Err: fmt.Errorf("%s: exit %d", what, code), Permanent: true, Status: status, Diagnostic: diag}
	}
	return delivery.Result{Err: fmt.Errorf("%s: exit %d", what, code), Status: "4.3.0", Diagnostic: diag}
}
