package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/internal/unixpeer"
)

// The submission socket lets a local user who may not write the queue and
// the mailboxes (a user's cron job, PHP running as www-data) hand a
// message to the running server, as Postfix's postdrop and Courier's
// setuid submit do. The server learns who is submitting from the kernel
// (SO_PEERCRED), never from the request, and applies the same policy as
// to root's sendmail (Submitter).
//
// Protocol, one request per connection: the client sends one line of
// JSON (submitRequest) and then exactly Size bytes of message; the server
// answers one line of JSON (submitReply) and closes.

// SubmitSocketName is the socket's name in the data directory.
const SubmitSocketName = "submit.sock"

const (
	maxSubmitHeader  = 64 << 10
	submitIOTimeout  = 2 * time.Minute
	maxSubmitRcpts   = 1000
	submitSocketPerm = 0o666
	// maxSubmitConns bounds the submissions handled at once; more wait
	// in the socket's backlog.
	maxSubmitConns = 32
)

type submitRequest struct {
	From     string   `json:"from,omitempty"`
	FullName string   `json:"fullname,omitempty"`
	Rcpts    []string `json:"rcpts"`
	Notify   string   `json:"notify,omitempty"`
	Ret      string   `json:"ret,omitempty"`
	EnvID    string   `json:"envid,omitempty"`
	Size     int64    `json:"size"`
}

type submitReply struct {
	ID       string `json:"id,omitempty"`
	Code     int    `json:"code,omitempty"` // a refusal: SMTP-style code
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text,omitempty"`
	Error    string `json:"error,omitempty"` // a temporary failure
}

// parseSubmitRequest reads and checks the request line.
func parseSubmitRequest(line []byte, maxSize int64) (*submitRequest, error) {
	var req submitRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	if len(req.Rcpts) == 0 || len(req.Rcpts) > maxSubmitRcpts {
		return nil, fmt.Errorf("bad request: %d recipients", len(req.Rcpts))
	}
	for _, f := range append([]string{req.From, req.FullName, req.Notify, req.Ret, req.EnvID}, req.Rcpts...) {
		if len(f) > 1000 || strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("bad request: a field holds a control character or is over 1000 bytes")
		}
	}
	if req.Size < 0 || maxSize > 0 && req.Size > maxSize {
		return nil, fmt.Errorf("message of %d bytes is over the %d-byte limit", req.Size, maxSize)
	}
	return &req, nil
}

// SubmitServer serves the submission socket.
type SubmitServer struct {
	Submitter func() *Submitter // current policy (reloads replace it)
	MaxSize   func() int64      // sizelimit
	Log       *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	wg     sync.WaitGroup
}

// ListenSubmitSocket creates the socket at path (replacing a stale one)
// with permissions that let every local user connect.
func ListenSubmitSocket(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, submitSocketPerm); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve accepts connections until Shutdown.
func (s *SubmitServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	slots := make(chan struct{}, maxSubmitConns)
	for {
		slots <- struct{}{}
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			<-slots
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-slots; s.wg.Done() }()
			s.handle(c)
		}()
	}
}

// Shutdown stops accepting and waits for submissions in progress.
func (s *SubmitServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *SubmitServer) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(submitIOTimeout))
	reply := func(r submitReply) {
		b, _ := json.Marshal(r)
		c.Write(append(b, '\n'))
	}
	uid, err := unixpeer.UID(c)
	if err != nil {
		s.Log.Warn("submit socket: no peer credentials", "err", err)
		reply(submitReply{Error: "no peer credentials"})
		return
	}
	login := strconv.Itoa(uid)
	if u, err := user.LookupId(login); err == nil {
		login = u.Username
	} else {
		login = "uid" + login
	}
	br := bufio.NewReaderSize(c, 4096)
	line, err := readLimitedLine(br, maxSubmitHeader)
	if err != nil {
		reply(submitReply{Code: 500, Enhanced: "5.5.2", Text: "bad request: " + err.Error()})
		return
	}
	var maxSize int64
	if s.MaxSize != nil {
		maxSize = s.MaxSize()
	}
	req, err := parseSubmitRequest(line, maxSize)
	if err != nil {
		reply(submitReply{Code: 552, Enhanced: "5.3.4", Text: err.Error()})
		return
	}
	msg := make([]byte, req.Size)
	if _, err := io.ReadFull(br, msg); err != nil {
		reply(submitReply{Error: "message cut short: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), submitIOTimeout)
	defer cancel()
	sub := Submission{Login: login, UID: uid, From: req.From, FullName: req.FullName, Rcpts: req.Rcpts,
		Notify: req.Notify, Ret: req.Ret, EnvID: req.EnvID, Msg: msg}
	id, ref, err := s.Submitter().Submit(ctx, sub)
	switch {
	case err != nil:
		s.Log.Warn("submit socket: not accepted", "login", login, "uid", uid, "err", err)
		reply(submitReply{Error: err.Error()})
	case ref != nil:
		s.Log.Info("submit socket: refused", "login", login, "uid", uid, "code", ref.Code, "text", ref.Text)
		reply(submitReply{Code: ref.Code, Enhanced: ref.Enhanced, Text: ref.Text})
	default:
		s.Log.Info("submit socket: accepted", "login", login, "uid", uid, "id", id, "rcpts", len(req.Rcpts), "size", len(msg))
		reply(submitReply{ID: id})
	}
}

// readLimitedLine reads one LF-terminated line of at most max bytes.
func readLimitedLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("request line over %d bytes", max)
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// SubmitToServer hands s to the server listening on the socket at path
// and returns its answer: a queue ID, a refusal, or an error when the
// server could not take the message (not running, temporary failure).
// s.Login and s.UID are not sent: the server asks the kernel.
func SubmitToServer(ctx context.Context, path string, s Submission) (string, *Refusal, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", nil, fmt.Errorf("the Postern server is not reachable on %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	head, err := json.Marshal(submitRequest{From: s.From, FullName: s.FullName, Rcpts: s.Rcpts,
		Notify: s.Notify, Ret: s.Ret, EnvID: s.EnvID, Size: int64(len(s.Msg))})
	if err != nil {
		return "", nil, err
	}
	bw := bufio.NewWriter(c)
	bw.Write(append(head, '\n'))
	bw.Write(s.Msg)
	if err := bw.Flush(); err != nil {
		return "", nil, fmt.Errorf("sending to %s: %w", path, err)
	}
	line, err := readLimitedLine(bufio.NewReader(c), maxSubmitHeader)
	if err != nil {
		return "", nil, fmt.Errorf("no answer from %s: %w", path, err)
	}
	var r submitReply
	if err := json.Unmarshal(line, &r); err != nil {
		return "", nil, fmt.Errorf("bad answer from %s: %w", path, err)
	}
	switch {
	case r.Error != "":
		return "", nil, errors.New(r.Error)
	case r.Code != 0:
		return "", &Refusal{Code: r.Code, Enhanced: r.Enhanced, Text: r.Text}, nil
	case r.ID == "":
		return "", nil, fmt.Errorf("bad answer from %s: no queue ID", path)
	}
	return r.ID, nil, nil
}
