package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"postern/mailbox/maildir"
	"postern/rules"
)

// runInstructionFile carries out a .courier/.qmail file.
func (j *job) runInstructionFile(ctx context.Context, f instructionFile, msg []byte) Outcome {
	src, err := readBounded(f.Path, maxInstructionFile)
	if err != nil {
		return temporary("instructions %s: %v", f.Path, err)
	}
	ins, err := ParseInstructions(src)
	if err != nil {
		return temporary("instructions %s: %v", f.Path, err)
	}
	env := j.courierEnv(f.Default)
	if len(ins) == 0 {
		// Comments only: deliberately nowhere (qmail's "#" file).
		j.a.log.Info("deliver: discarded by instructions", "account", j.acct.Name, "file", f.Path)
		return j.success()
	}
	if o, _ := j.runInstructions(ctx, ins, msg, env, 0); o != nil {
		return *o
	}
	return j.success()
}

// runInstructions carries out instructions in order (dot-courier(5)): a
// program's exit code 0 goes on, 99 stops with success, a permanent code
// bounces, any other code defers; "||" programs' output is carried out in
// their place, after exit 0 or 99 alike (99 then stops: what Courier's
// dotforward does when it has forwarded the message). It returns a non-nil
// Outcome to stop, and whether to stop with success (99).
func (j *job) runInstructions(ctx context.Context, ins []Instruction, msg []byte, env map[string]string, depth int) (*Outcome, bool) {
	for _, in := range ins {
		switch in.Kind {
		case InstrMailbox:
			if _, err := j.deliverTo(ctx, in.Value, msg, nil, j.req.Sender, maildir.DeliverOptions{}); err != nil {
				o := j.failure(err)
				return &o, false
			}
		case InstrForward:
			if err := j.forward(ctx, in.Addrs, msg, j.req.Sender, env); err != nil {
				o := j.failure(err)
				return &o, false
			}
			j.done = append(j.done, "!"+strings.Join(in.Addrs, " "))
		case InstrProgram, InstrDynamic:
			keep := 0
			if in.Kind == InstrDynamic {
				keep = maxInstructionFile
			}
			cmd := in.Value
			if in.Kind == InstrDynamic {
				cmd = j.a.builtinCommand(cmd, env["PATH"])
			}
			code, out, err := j.runProgram(ctx, "/bin/sh", cmd, msg, envList(env), keep)
			if err != nil {
				o := j.failure(err)
				return &o, false
			}
			switch st := StatusForExit(code); {
			case code == ExitStopHere && in.Kind == InstrProgram:
				j.done = append(j.done, "|"+in.Value)
				o := j.success()
				return &o, true
			case st == StatusPermanent:
				o := Outcome{Status: StatusPermanent, ExitCode: code, Reason: fmt.Sprintf("program %q failed with exit code %d", in.Value, code), Delivered: j.done}
				return &o, false
			case st == StatusTemporary:
				o := temporary("program %q exited with %d: will retry", in.Value, code)
				o.Delivered = j.done
				return &o, false
			}
			if in.Kind == InstrProgram {
				j.done = append(j.done, "|"+in.Value)
				continue
			}
			if depth >= maxDynamicDepth {
				o := temporary("program %q: \"||\" instructions nested deeper than %d", in.Value, maxDynamicDepth)
				return &o, false
			}
			more, err := ParseInstructions(out)
			if err != nil {
				o := temporary("output of %q: %v", in.Value, err)
				return &o, false
			}
			if o, stop := j.runInstructions(ctx, more, msg, env, depth+1); o != nil {
				return o, stop
			}
			if code == ExitStopHere {
				o := j.success()
				return &o, true
			}
		}
	}
	return nil, false
}

// builtinCommand is the command line a "||" instruction runs. A command
// named "dotforward" that is not installed in the programs' PATH runs
// Postern's own (Options.Dotforward, "postern dotforward"), so that
// Courier's "|| dotforward" line works without installing anything; an
// installed dotforward (Courier's, an admin's wrapper) is left to run.
func (a *Agent) builtinCommand(cmd, path string) string {
	trimmed := strings.TrimLeft(cmd, " \t")
	name, rest := trimmed, ""
	if i := strings.IndexAny(trimmed, " \t;&|<>"); i >= 0 {
		name, rest = trimmed[:i], trimmed[i:]
	}
	if name != "dotforward" || len(a.dotforward) == 0 || onPath(name, path) {
		return cmd
	}
	quoted := make([]string, len(a.dotforward))
	for i, w := range a.dotforward {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ") + rest
}

// onPath says whether an executable file name is in one of path's
// directories.
func onPath(name, path string) bool {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

// FilterMode is how a filter file runs: in delivery mode (the zero value:
// maildroprc then .mailfilter, in the home), maildrop's manual mode (File
// set: that file, in Dir, paths not confined) or embedded mode (-m, -M: no
// deliveries, the answer is EXITCODE and echo output).
type FilterMode struct {
	File     string
	Dir      string
	Embedded bool
	// Vars are set before the run (maildrop -V sets VERBOSE).
	Vars map[string]string
	// Delivery is maildrop's delivery mode (-M with -d USER): of the
	// environment only the locale's variables become variables.
	Delivery bool
	// then, when set, takes the place of the delivery to $DEFAULT when
	// the filters neither delivered nor exited (the user's Sieve script
	// after maildroprc), with the message as the filters left it.
	then func(ctx context.Context, msg []byte) Outcome
}

// Filter runs one filter file in manual or embedded mode (maildrop FILE,
// maildrop -m FILE): no .courier files, no maildroprc.
func (a *Agent) Filter(ctx context.Context, req Request, mode FilterMode) Outcome {
	j, out := a.newJob(req)
	if out != nil {
		return *out
	}
	if mode.Dir != "" {
		j.dir = mode.Dir
	}
	j.conf = Confinement{} // the invoking user's own permissions are the limit
	j.manual = true
	msg, out := j.readMessage()
	if out != nil {
		return *out
	}
	return j.runFilters(ctx, []string{mode.File}, msg, mode)
}

// runFilters runs filter files in one maildrop session and delivers to
// $DEFAULT unless they disposed of the message.
func (j *job) runFilters(ctx context.Context, files []string, raw []byte, mode FilterMode) Outcome {
	m := rules.NewMessage(raw)
	vars := j.importedVars(mode)
	for k, v := range rules.StandardVars(rules.VarOptions{
		Home:     j.home,
		Logname:  j.acct.Name,
		Default:  j.root + "/",
		From:     j.req.Sender,
		Hostname: j.a.hostname,
		Filter:   mode.File,
	}, m) {
		vars[k] = v
	}
	// Without a sender (no -f) FROM came from Return-Path, as maildrop does.
	vars["SENDMAIL"] = j.a.sendmailVar()
	if j.acct.Quota != "" {
		vars["MAILDIRQUOTA"] = j.acct.Quota
	}
	if sh := j.acct.Fields["shell"]; sh != "" {
		// The account's login shell (the password file's, a userdb
		// record's shell= field), as maildrop sets SHELL.
		vars["SHELL"] = sh
	}
	for k, v := range mode.Vars {
		vars[k] = v
	}
	environ := map[string]string{}
	for _, kv := range j.a.opt.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	for k, v := range j.courierEnv("") {
		if _, ok := environ[k]; !ok {
			environ[k] = v
		}
	}
	// What the filter echoes is also the reason of a failing exit (a
	// bounce's text, sqwebmail's "return to the sender with"), as
	// Courier's local delivery puts maildrop's output into the bounce.
	echoed := &CapBuffer{Max: 512}
	var stdout io.Writer = echoed
	if j.a.opt.Stdout != nil {
		stdout = io.MultiWriter(j.a.opt.Stdout, echoed)
	}
	env := rules.Env{
		Vars:              vars,
		Environ:           environ,
		Args:              j.req.Args,
		Dir:               j.dir,
		Embedded:          mode.Embedded,
		TrustedIncludeDir: j.a.trustedDir,
		Run:               rules.ExecCommand,
		Stdout:            stdout,
		Stderr:            j.a.filterStderr(),
		Trace:             j.a.opt.Trace,
		Now:               j.a.opt.Now,
		Limits:            j.a.opt.Limits,
	}
	if !mode.Embedded {
		env.Deliver = func(ctx context.Context, d rules.Delivery) (int, error) {
			return j.deliverTo(ctx, d.Dest, d.Message.Output(), d.Vars, d.Vars["FROM"], deliverOptions(d.Flags, d.Keywords))
		}
	}
	s := rules.NewSession(m, env)
	for _, file := range files {
		p, err := j.loadFilter(file, mode)
		if err != nil {
			s.Finish(ctx, false)
			o := temporary("%v", err)
			o.Delivered = j.done
			return o
		}
		if err := s.Run(ctx, p); err != nil {
			s.Finish(ctx, false)
			return j.filterFailure(err)
		}
		if s.Done() {
			break
		}
	}
	if mode.then != nil && !s.Done() {
		if _, err := s.Finish(ctx, false); err != nil {
			return j.filterFailure(err)
		}
		return mode.then(ctx, s.Message().Output())
	}
	res, err := s.Finish(ctx, !mode.Embedded)
	if err != nil {
		return j.filterFailure(err)
	}
	o := j.success()
	o.ExitCode = res.ExitCode
	if st := StatusForExit(res.ExitCode); st != StatusOK || res.ExitCode == ExitStopHere {
		o.Status = st
		if res.ExitCode == ExitStopHere {
			o.Status = StatusTemporary
		}
		o.Reason = fmt.Sprintf("filter exit code %d", res.ExitCode)
		if text := oneLine(echoed.String()); text != "" {
			o.Reason += ": " + text
		}
	}
	if len(j.done) == 0 && o.Status == StatusOK && !mode.Embedded {
		j.a.log.Info("deliver: discarded by filter", "account", j.acct.Name)
	}
	return o
}

// importedVars are the variables a run starts with before maildrop's
// fixed defaults are applied: in manual and embedded mode (a filter file
// named on the command line) every environment variable, in delivery mode
// only the locale's (LANG, LANGUAGE, LC_*), as maildropfilter(7) says and
// maildrop 2.9.3 does.
func (j *job) importedVars(mode FilterMode) map[string]string {
	vars := map[string]string{}
	for _, kv := range j.a.opt.Environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if mode.File != "" && !mode.Delivery || k == "LANG" || k == "LANGUAGE" || strings.HasPrefix(k, "LC_") {
			vars[k] = v
		}
	}
	return vars
}

// filterStderr is where filters' warnings go: Options.Stderr, else the log.
func (a *Agent) filterStderr() io.Writer {
	if a.opt.Stderr != nil {
		return a.opt.Stderr
	}
	return logWriter{a.log}
}

// logWriter logs each write as one warning.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn("filter: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// filterFailure maps a filter's runtime error: a delivery over quota is
// 77 as it would be without the filter; anything else defers (75).
func (j *job) filterFailure(err error) Outcome {
	if errors.Is(err, maildir.ErrOverQuota) {
		return j.failure(err)
	}
	o := temporary("%v", err)
	o.Delivered = j.done
	return o
}

// loadFilter reads and parses a filter file. In delivery mode a user's
// .mailfilter must belong to the account and have no group or world
// permissions (maildrop(1), SECURITY): anything else defers the mail rather
// than run a file someone else could have written.
func (j *job) loadFilter(file string, mode FilterMode) (*rules.Program, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", file, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("filter %s: not a regular file", file)
	}
	userFile := file != j.a.systemRules
	if userFile && (mode.File == "" || mode.Embedded) {
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("filter %s: must not have group or world permissions (mode %04o)", file, st.Mode().Perm())
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != j.acct.UID {
			return nil, fmt.Errorf("filter %s: owned by uid %d, not by the account's uid %d", file, sys.Uid, j.acct.UID)
		}
	}
	return j.a.programs.load(file, st)
}

// programCache keeps parsed filter files, keyed by path and checked
// against the file's identity (device, inode, size, mtime), so that an
// edited file is parsed again and an unchanged one is not parsed for every
// message. Programs are immutable and safe to share.
type programCache struct {
	mu sync.Mutex
	m  map[string]cachedProgram
}

type cachedProgram struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	prog     *rules.Program
}

const maxCachedPrograms = 4096

func (c *programCache) load(file string, st os.FileInfo) (*rules.Program, error) {
	key := cachedProgram{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		key.dev, key.ino = uint64(sys.Dev), sys.Ino
	}
	c.mu.Lock()
	hit, ok := c.m[file]
	c.mu.Unlock()
	// A file changed within the clock's granularity could keep its mtime:
	// only trust entries whose mtime is comfortably in the past.
	if ok && hit.dev == key.dev && hit.ino == key.ino && hit.size == key.size && hit.mtime.Equal(key.mtime) && time.Since(key.mtime) > 2*time.Second {
		return hit.prog, nil
	}
	src, err := readBounded(file, 4<<20)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", file, err)
	}
	prog, err := rules.Parse(file, src)
	if err != nil {
		return nil, err
	}
	key.prog = prog
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedPrograms {
		c.m = map[string]cachedProgram{}
	}
	c.m[file] = key
	c.mu.Unlock()
	return prog, nil
}

// deliverOptions turns $FLAGS and $KEYWORDS into maildir options, dropping
// what a maildir cannot store.
func deliverOptions(flags, keywords string) maildir.DeliverOptions {
	var opt maildir.DeliverOptions
	seen := map[rune]bool{}
	var fl []string
	for _, r := range strings.ToUpper(flags) {
		if strings.ContainsRune("DFRST", r) && !seen[r] {
			seen[r] = true
			fl = append(fl, string(r))
		}
	}
	sort.Strings(fl)
	opt.Flags = strings.Join(fl, "")
	for _, k := range strings.Split(keywords, ",") {
		k = strings.TrimSpace(k)
		if k != "" && maildir.ValidKeyword(k) == nil {
			opt.Keywords = append(opt.Keywords, k)
		}
	}
	return opt
}

// deliverAsUser runs the whole delivery in a child process that switches
// to the account's uid and gid before it reads any of the user's files:
// "postern maildrop --config DIR --instructions -d NAME ...", the message
// (with the trace fields already on top) on its stdin. Its exit code is the
// outcome.
func (a *Agent) deliverAsUser(ctx context.Context, j *job) Outcome {
	if len(a.reexec) == 0 {
		return temporary("cannot deliver as uid %d: no command to re-execute", j.acct.UID)
	}
	msg, out := j.readMessage()
	if out != nil {
		return *out
	}
	args := append([]string(nil), a.reexec[1:]...)
	if a.opt.Config != nil {
		args = append(args, "--config", a.opt.Config.Dir)
	}
	if !j.req.NoInstructions {
		args = append(args, "--instructions")
	}
	args = append(args, "--extension", j.req.Extension, "--recipient", j.req.Recipient, "-f", j.req.Sender)
	if a.opt.QuotaWarnPercent > 0 {
		args = append(args, "-w", fmt.Sprint(a.opt.QuotaWarnPercent))
	}
	args = append(args, "-d", j.acct.Name)
	args = append(args, j.req.Args...)
	ctx, cancel := context.WithTimeout(ctx, a.opt.ProgramTimeout+time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, a.reexec[0], args...)
	c.Stdin = bytes.NewReader(msg)
	c.Env = append([]string{"PATH=/bin:/usr/bin:/usr/local/bin"}, a.opt.ReexecEnv...)
	errOut := &CapBuffer{Max: 8192}
	c.Stdout, c.Stderr = io.Discard, errOut
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	err := c.Run()
	var exitErr *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		code = exitErr.ExitCode()
	case err != nil:
		return temporary("delivery as %s: %s: %v", j.acct.Name, filepath.Base(a.reexec[0]), err)
	}
	o := Outcome{Status: StatusForExit(code), ExitCode: code, Delivered: []string{"uid " + fmt.Sprint(j.acct.UID) + " delivery agent"}}
	if code != 0 {
		o.Delivered = nil
		o.Reason = strings.TrimPrefix(tail(errOut.Bytes()), "maildrop: ")
		if o.Reason == "" {
			o.Reason = fmt.Sprintf("delivery agent exit code %d", code)
		}
	}
	return o
}

// oneLine makes a filter's output fit a reason: its lines joined with
// "; ", control characters and invalid UTF-8 dropped.
func oneLine(s string) string {
	var parts []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return -1
			}
			return r
		}, strings.ToValidUTF8(line, ""))
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}
