package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"postern/filters/reputation"
	"postern/internal/unixpeer"
)

// The control socket lets an admin command that needs the running
// server's own state ask the server to do the work, as Postfix's
// postqueue talks to its running qmgr and doveadm to a running Dovecot.
// That is `postern reputation` and `postern bayes` (the embedded state store, bbolt, is
// locked by the process that has it open, so without the socket the
// command could only run with the server stopped) and `postern dmarc
// report` (the rows the running server records and sends), and `postern
// who` and `postern kick` (the sessions only the server knows).
//
// Protocol, one request per connection: the client sends one line of JSON
// (ControlRequest); the server answers one line of JSON (ControlReply) and
// closes. Only root and the server's own user may ask: the socket is
// mode 0600 and the server checks the caller's uid from the kernel.

// ControlSocketName is the socket's name in the data directory.
const ControlSocketName = "control.sock"

const (
	maxControlRequest = 64 << 10
	controlTimeout    = time.Minute
)

// ControlRequest is one admin command for the running server.
type ControlRequest struct {
	Command string   `json:"command"` // "reputation", "bayes", "dmarcreport", "who", "kick"
	Args    []string `json:"args"`
}

// ControlReply is what the command printed and its exit status.
type ControlReply struct {
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	Status int    `json:"status"`
}

// ErrNoServer is returned by Control when no server answers on the
// control socket (not running, or an older server without one).
var ErrNoServer = errors.New("no running server on the control socket")

// Control sends req to the server whose data directory is dataDir.
func Control(ctx context.Context, dataDir string, req ControlRequest) (*ControlReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(dataDir, ControlSocketName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoServer
		}
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var reply ControlReply
	if err := json.NewDecoder(io.LimitReader(c, 16<<20)).Decode(&reply); err != nil {
		return nil, fmt.Errorf("control socket: no answer: %w", err)
	}
	return &reply, nil
}

// listenControl makes the control socket, replacing one left by a server
// that died. Mode 0600: only its owner (and root) may connect.
func listenControl(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, ControlSocketName)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveControl answers the control socket until it is closed.
func (s *Server) serveControl(ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !closedErr(err) {
					s.log.Error("control socket stopped", "err", err)
				}
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handleControl(c)
			}()
		}
	}()
}

func (s *Server) handleControl(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	reply := func(r ControlReply) {
		b, _ := json.Marshal(r)
		c.Write(append(b, '\n'))
	}
	uid, err := unixpeer.UID(c)
	if err != nil || uid != 0 && uid != os.Geteuid() {
		s.log.Warn("control socket: refused", "uid", uid, "err", err)
		reply(ControlReply{Stderr: "permission denied: only root and the server's user may use the control socket\n", Status: 77})
		return
	}
	br := bufio.NewReaderSize(io.LimitReader(c, maxControlRequest+1), 4096)
	line, err := br.ReadBytes('\n')
	if err != nil {
		reply(ControlReply{Stderr: "bad request: no complete line\n", Status: 64})
		return
	}
	var req ControlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		reply(ControlReply{Stderr: "bad request: " + err.Error() + "\n", Status: 64})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	var status int
	switch req.Command {
	case "reputation":
		status = s.controlReputation(ctx, req.Args, &out, &errb)
	case "bayes":
		status = s.controlBayes(ctx, req.Args, &out, &errb)
	case "dmarcreport":
		status = s.controlDMARCReport(ctx, req.Args, &out, &errb)
	case "who", "kick":
		status = s.controlWho(ctx, req.Command == "kick", req.Args, &out, &errb)
	default:
		fmt.Fprintf(&errb, "unknown command %q\n", req.Command)
		status = 64
	}
	logArgs := req.Args
	if req.Command == "bayes" && len(logArgs) > 0 {
		// A learned message's tokens are its words: not for the log.
		verb, user := logArgs[0], 0
		if verb == "--user" && len(logArgs) > 2 {
			verb, user = logArgs[2], 2 // --user LOGIN before the verb
		}
		keep := user + 2 // forget DIGEST
		if verb == "learn" {
			keep = user + 3 // learn CLASS DIGEST
		}
		if verb != "learn" && verb != "forget" {
			keep = len(logArgs) // stats, expire: no tokens
		}
		if len(logArgs) > keep {
			logArgs = append(logArgs[:keep:keep], fmt.Sprintf("(%d tokens)", len(req.Args)-keep))
		}
	}
	s.log.Info("control socket", "uid", uid, "command", req.Command, "args", logArgs, "status", status)
	reply(ControlReply{Stdout: out.String(), Stderr: errb.String(), Status: status})
}

// controlReputation runs `postern reputation ARGS` on the server's own
// state store, with the reputation settings as they are now.
func (s *Server) controlReputation(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "reputation: want show|reset and at least one target")
		return 64
	}
	cfg := s.Config()
	th, err := parseThresholds(cfg.Dir)
	if err != nil {
		fmt.Fprintf(stderr, "configuration:\n%v\n", err)
		return 78
	}
	rc, err := loadReputation(cfg.Dir, th)
	if err != nil {
		fmt.Fprintf(stderr, "configuration:\n%v\n", err)
		return 78
	}
	rep, err := reputation.New(reputation.Options{Config: rc, Store: s.store, Logger: s.log.With("module", "reputation")})
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 78
	}
	return RunReputation(ctx, rep, args[0], args[1:], stdout, stderr)
}
