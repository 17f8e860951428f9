package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

func (s *Session) call(fr *frame, c *callExpr) (string, error) {
	// gdbmfetch evaluates its default only when the key is missing.
	if c.name == "gdbmfetch" {
		return s.gdbmFetch(fr, c)
	}
	args := make([]string, len(c.args))
	for i, a := range c.args {
		v, err := s.eval(fr, a)
		if err != nil {
			return "", err
		}
		args[i] = v
	}
	switch c.name {
	case "escape":
		return escapeText(args[0]), nil
	case "getaddr":
		var b strings.Builder
		for _, a := range addresses(args[0]) {
			b.WriteString(a + "\n")
		}
		return b.String(), nil
	case "hasaddr":
		return boolStr(s.hasAddr(strings.TrimSpace(args[0]))), nil
	case "length":
		// Bytes, as Courier's maildrop counts.
		return strconv.Itoa(len(args[0])), nil
	case "substr":
		return substr(args), nil
	case "time":
		return strconv.FormatInt(s.now().Unix(), 10), nil
	case "tolower":
		return asciiMap(args[0], 'A', 'Z', 'a'-'A'), nil
	case "toupper":
		return asciiMap(args[0], 'a', 'z', 'A'-'a'), nil
	case "lookup":
		return s.lookup(fr, c.pos, args)
	case "gdbmopen":
		return s.gdbmOpen(fr, c.pos, args)
	case "gdbmclose":
		s.closeFrame(fr)
		return "0", nil
	case "gdbmstore":
		return s.gdbmStore(fr, c.pos, args[0], args[1])
	}
	return "", s.rtErr(fr, c.pos, fmt.Errorf("unknown function %s", c.name))
}

// asciiMap changes the case of ASCII letters only, as maildrop does.
func asciiMap(v string, lo, hi byte, delta int) string {
	b := []byte(v)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}

// substr(string, start [, count]): start counts from 0 in bytes; a start
// outside the string gives empty text.
func substr(args []string) string {
	v := args[0]
	start := int(toNum(args[1]))
	if start < 0 || start >= len(v) {
		return ""
	}
	v = v[start:]
	if len(args) > 2 {
		n := int(toNum(args[2]))
		if n < 0 {
			n = 0
		}
		if n < len(v) {
			v = v[:n]
		}
	}
	return v
}

// lookup(expr, file [, options]): each non-blank, non-comment line of the
// file, leading blanks removed, is a pattern tried against expr.
func (s *Session) lookup(fr *frame, pos Pos, args []string) (string, error) {
	data, err := s.readFile(args[1])
	if err != nil {
		return "", s.rtErr(fr, pos, fmt.Errorf("lookup: %w", err))
	}
	cs := len(args) > 2 && strings.Contains(args[2], "D")
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		re, err := s.patterns.get(line, cs, s.lim.MaxRegexSize)
		if err != nil {
			return "", s.rtErr(fr, pos, fmt.Errorf("lookup %s: %w", args[1], err))
		}
		if re.MatchString(args[0]) {
			return "1", nil
		}
	}
	return "0", nil
}

// The gdbm functions keep maildrop's interface on a bbolt file, one file
// per database name (not GDBM's on-disk format; see docs/rules.md).

const gdbmBucket = "maildrop"

type gdbmHandle struct {
	db       *bolt.DB
	writable bool
}

func (h *gdbmHandle) close() {
	if h.db != nil {
		h.db.Close()
		h.db = nil
	}
}

func (s *Session) gdbmOpen(fr *frame, pos Pos, args []string) (string, error) {
	mode := "R"
	if len(args) > 1 && args[1] != "" {
		mode = strings.ToUpper(args[1][:1])
	}
	if mode != "R" && s.env.Embedded && s.trusted == 0 {
		return "", s.rtErr(fr, pos, fmt.Errorf("gdbmopen mode %q is %w in embedded mode (read-only)", mode, ErrNotAllowed))
	}
	s.closeFrame(fr)
	path := s.path(args[0])
	opts := &bolt.Options{Timeout: 5 * time.Second}
	switch mode {
	case "R":
		if _, err := os.Stat(path); err != nil {
			return "-1", nil
		}
		opts.ReadOnly = true
	case "W":
		if _, err := os.Stat(path); err != nil {
			return "-1", nil
		}
	case "C":
	case "N":
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "-1", nil
		}
	default:
		return "", s.rtErr(fr, pos, fmt.Errorf("gdbmopen: unknown mode %q (R, W, C or N)", args[1]))
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		s.trace(Step{File: fr.file, Line: pos.Line, What: "gdbmopen", Text: err.Error()})
		return "-1", nil
	}
	h := &gdbmHandle{db: db, writable: mode != "R"}
	if h.writable {
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte(gdbmBucket))
			return err
		}); err != nil {
			db.Close()
			return "-1", nil
		}
	}
	fr.gdbm = h
	s.gdbms = append(s.gdbms, h)
	return "0", nil
}

func (s *Session) gdbmGet(fr *frame, key string) (string, bool) {
	if fr.gdbm == nil || fr.gdbm.db == nil {
		return "", false
	}
	var val []byte
	found := false
	fr.gdbm.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(gdbmBucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			val, found = append([]byte(nil), v...), true
		}
		return nil
	})
	return string(val), found
}

// maxGdbmFallbacks bounds the D/I retries maildropgdbm(7) warns about.
const maxGdbmFallbacks = 64

func (s *Session) gdbmFetch(fr *frame, c *callExpr) (string, error) {
	key, err := s.eval(fr, c.args[0])
	if err != nil {
		return "", err
	}
	opts := ""
	if len(c.args) > 1 {
		if opts, err = s.eval(fr, c.args[1]); err != nil {
			return "", err
		}
	}
	for _, k := range gdbmKeys(key, opts) {
		if v, ok := s.gdbmGet(fr, k); ok {
			return v, nil
		}
	}
	if len(c.args) > 2 {
		return s.eval(fr, c.args[2])
	}
	return "", nil
}

// gdbmKeys lists the keys gdbmfetch tries: the key, then with "D"
// user@domain → user@ → domain → parent domains, with "I" a.b.c.d → a.b.c
// → a.b → a (maildropgdbm(7)).
func gdbmKeys(key, opts string) []string {
	keys := []string{key}
	add := func(k string) {
		if k != "" && len(keys) < maxGdbmFallbacks {
			keys = append(keys, k)
		}
	}
	if strings.Contains(opts, "D") {
		domain := key
		if at := strings.LastIndexByte(key, '@'); at >= 0 {
			add(key[:at+1])
			domain = key[at+1:]
			add(domain)
		}
		for {
			dot := strings.IndexByte(domain, '.')
			if dot < 0 {
				break
			}
			domain = domain[dot+1:]
			add(domain)
		}
	}
	if strings.Contains(opts, "I") {
		k := key
		for {
			dot := strings.LastIndexByte(k, '.')
			if dot < 0 {
				break
			}
			k = k[:dot]
			add(k)
		}
	}
	return keys
}

func (s *Session) gdbmStore(fr *frame, pos Pos, key, value string) (string, error) {
	if fr.gdbm == nil || fr.gdbm.db == nil || !fr.gdbm.writable {
		return "-1", nil
	}
	err := fr.gdbm.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(gdbmBucket)).Put([]byte(key), []byte(value))
	})
	if err != nil {
		return "", s.rtErr(fr, pos, fmt.Errorf("gdbmstore: %w", err))
	}
	return "0", nil
}

// lock takes a dot-lock (O_EXCL file, stale after LOCKTIMEOUT) or an
// flock(2) lock on path, waiting at most until the run's deadline.
func (s *Session) lock(verb, path string) (unlock func(), err error) {
	sleep := time.Duration(toNum(s.vars["LOCKSLEEP"])) * time.Second
	if sleep <= 0 {
		sleep = 5 * time.Second
	}
	if verb == "flock" {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				f.Close()
				return nil, fmt.Errorf("flock %s: %w", path, err)
			}
			if err := s.wait(200 * time.Millisecond); err != nil {
				f.Close()
				return nil, fmt.Errorf("flock %s: %w", path, err)
			}
		}
	}
	timeout := time.Duration(toNum(s.vars["LOCKTIMEOUT"])) * time.Second
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("dotlock %s: %w", path, err)
		}
		if st, serr := os.Stat(path); serr == nil && s.now().Sub(st.ModTime()) > timeout {
			os.Remove(path) // stale: its holder is gone
		}
		if err := s.wait(sleep); err != nil {
			return nil, fmt.Errorf("dotlock %s: %w", path, err)
		}
	}
}

func (s *Session) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return fmt.Errorf("%w: waiting for a lock: %w", ErrLimit, s.ctx.Err())
	case <-t.C:
		return nil
	}
}

// ExecCommand is the standard Env.Run: it runs c.Cmd with "$SHELL -c" in
// c.Dir with c.Env, feeds c.Stdin, keeps at most c.MaxOutput bytes of
// stdout, and kills the command's process group when ctx ends. Stderr is
// discarded. A non-zero exit is a result, not an error.
func ExecCommand(ctx context.Context, c Command) (CommandResult, error) {
	cmd := exec.CommandContext(ctx, c.Shell, "-c", c.Cmd)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	max := c.MaxOutput
	if max <= 0 {
		max = 64 << 20
	}
	out := &limitedBuffer{max: max}
	cmd.Stdout = out
	err := cmd.Run()
	if ctx.Err() != nil {
		return CommandResult{}, fmt.Errorf("command killed: %w", ctx.Err())
	}
	if out.over {
		return CommandResult{}, fmt.Errorf("%w: command output over %d bytes", ErrLimit, max)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return CommandResult{Stdout: out.Bytes(), Code: exitErr.ExitCode()}, nil
	}
	if err != nil && !errors.Is(err, io.ErrClosedPipe) && !isBrokenPipe(err) {
		return CommandResult{}, err
	}
	return CommandResult{Stdout: out.Bytes()}, nil
}

func isBrokenPipe(err error) bool { return errors.Is(err, syscall.EPIPE) }

type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.Len()+len(p) > l.max {
		l.over = true
		return 0, errors.New("output limit")
	}
	return l.Buffer.Write(p)
}
