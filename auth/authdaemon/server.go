package authdaemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"postern/auth"
)

// Defaults for ServerOptions.
const (
	// DefaultTimeout bounds one connection, request and answer: Courier's
	// daemon waits 10 s for each read, its clients 30 s for the answer.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxConns is how many connections are served at once; more
	// wait in the listen queue (Courier runs a fixed number of daemons,
	// five by default, one connection each).
	DefaultMaxConns = 64
	// EnumerateTimeout bounds one ENUMERATE answer: a large table or
	// directory takes longer to list than the Timeout of other requests.
	EnumerateTimeout = 10 * time.Minute
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// Auth answers the requests: its modules in order, its caches, and
	// its failed-login guard for AUTH and PASSWD.
	Auth *auth.Service
	// ChangePassword changes the password of an account whose module is
	// not an auth.PasswordSetter (the userdb: its source is edited and
	// recompiled). Nil: such a PASSWD is refused.
	ChangePassword func(ctx context.Context, a *auth.Account, service, newPassword string) error
	Logger         *slog.Logger
	Timeout        time.Duration // per connection; DefaultTimeout when 0
	MaxConns       int           // DefaultMaxConns when 0
}

// Server answers authdaemond's protocol on listeners (normally one Unix
// socket, see Listen).
type Server struct {
	opts  ServerOptions
	log   *slog.Logger
	slots chan struct{} // one per connection being served

	mu        sync.Mutex
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("authdaemon: server closed")

// NewServer returns a server answering from opts.Auth.
func NewServer(opts ServerOptions) *Server {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: opts, log: log, slots: make(chan struct{}, opts.MaxConns),
		listeners: map[net.Listener]bool{}, conns: map[net.Conn]bool{}}
}

// Listen creates the socket at path as Courier's authdaemond does: mode
// 0777, with access decided by the directory holding it. A directory that
// does not exist is made with mode 0750; one that exists keeps the mode
// the admin gave it, but one that anybody may enter is refused, since any
// local user could then ask for any account. A stale socket left by a
// server that died is replaced; a live one (another authdaemond) is not.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
	}
	if st.Mode().Perm()&0o001 != 0 {
		return nil, fmt.Errorf("authdaemon socket %s: directory %s may be entered by every user (mode %04o); make it 0750 so that only its group reaches the accounts", path, dir, st.Mode().Perm())
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("authdaemon socket %s: another server answers there (a running authdaemond?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
		}
	}
	// Bind a temporary name, open it up, and rename it into place, so no
	// client ever sees a socket with the wrong mode.
	tmp := path + ".tmp"
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o777); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("authdaemon socket %s: %w", path, err)
	}
	return &socketListener{UnixListener: ln, path: path}, nil
}

// socketListener removes its socket file when closed (shutdown), unless
// another server has replaced it since.
type socketListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if c, err := net.DialTimeout("unix", l.path, 100*time.Millisecond); err == nil {
			c.Close() // someone else's now
			return
		}
		os.Remove(l.path)
	})
	return err
}

// Serve accepts connections on ln until Shutdown or ln fails.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	for {
		// Take a slot before accepting: when all are busy, clients wait
		// in the kernel's queue instead of costing a goroutine each.
		s.slots <- struct{}{}
		c, err := ln.Accept()
		if err != nil {
			<-s.slots
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.slots
			return ErrServerClosed
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				<-s.slots
				s.wg.Done()
			}()
			s.ServeConn(c)
		}()
	}
}

// Shutdown stops accepting, lets the requests being answered finish until
// ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// ServeConn answers the one request of c. It does not close c.
func (s *Server) ServeConn(c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(s.opts.Timeout))
	r := bufio.NewReaderSize(c, 4096)
	req, err := ReadRequest(r)
	if err != nil {
		if errors.Is(err, ErrBadRequest) {
			s.log.Warn("authdaemon: bad request", "err", err)
			c.Write([]byte(replyFail))
		}
		return
	}
	if req.Kind == KindEnumerate {
		// The listing is bounded by EnumerateTimeout, and the client by
		// Timeout for each write: one that keeps reading gets the whole
		// list, one that stops is let go.
		ectx, ecancel := context.WithTimeout(context.Background(), EnumerateTimeout)
		defer ecancel()
		w := bufio.NewWriter(deadlineWriter{c, s.opts.Timeout})
		s.enumerate(ectx, w)
		w.Flush()
		return
	}
	if reply := s.answer(ctx, req); reply != "" {
		c.Write([]byte(reply))
	}
}

// answer returns the reply to req; "" means close without one (Courier's
// way of saying "temporary failure").
func (s *Server) answer(ctx context.Context, req *Request) string {
	switch req.Kind {
	case KindPre:
		a, err := s.lookup(ctx, req.Module, req.Name)
		return s.accountReply("lookup", req, a, "", err)
	case KindAuth:
		if !strings.EqualFold(req.AuthType, AuthTypeLogin) {
			// CRAM-MD5 and CRAM-SHA1 need the clear password or
			// Courier's precomputed HMAC fields; no module here keeps
			// them. Courier answers a type no module takes with FAIL.
			s.log.Info("authdaemon: unsupported authentication type", "type", req.AuthType, "service", req.Service)
			return replyFail
		}
		a, err := s.opts.Auth.AuthenticateFrom(ctx, req.Service, clientOf(req), req.Name, req.Password)
		return s.accountReply("login", req, a, req.Password, err)
	case KindPasswd:
		return s.passwd(ctx, req)
	}
	return replyFail
}

// clientOf is the address of the client being logged in (TCPREMOTEIP),
// for the failed-login guard; the zero Addr when not given.
func clientOf(req *Request) netip.Addr {
	ip, err := netip.ParseAddr(req.Meta["TCPREMOTEIP"])
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// lookup is PRE: every module in order for ".", else only the one named
// (with or without Courier's "auth" prefix).
func (s *Server) lookup(ctx context.Context, module, name string) (*auth.Account, error) {
	if module == "." {
		return s.opts.Auth.Lookup(ctx, name)
	}
	want := strings.TrimPrefix(module, "auth")
	for _, m := range s.opts.Auth.Modules() {
		if strings.TrimPrefix(m.Name(), "auth") == want {
			return auth.NewService(m).Lookup(ctx, name)
		}
	}
	return nil, auth.ErrNoSuchUser
}

// accountReply turns an answer into the reply: the account, FAIL for a
// "no", nothing for "try again".
func (s *Server) accountReply(what string, req *Request, a *auth.Account, clear string, err error) string {
	switch {
	case err == nil:
		s.log.Debug("authdaemon: "+what, "user", req.Name, "service", req.Service, "module", a.Module)
		return FormatAccount(a, clear)
	case errors.Is(err, auth.ErrTemporary), errors.Is(err, auth.ErrBlocked), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("authdaemon: "+what+": temporary failure", "user", req.Name, "service", req.Service, "err", err)
		return ""
	case errors.Is(err, auth.ErrNoSuchUser), errors.Is(err, auth.ErrBadPassword), errors.Is(err, auth.ErrDisabled):
		s.log.Info("authdaemon: "+what+" failed", "user", req.Name, "service", req.Service, "err", err)
		return replyFail
	default:
		// A module's own error (a broken row): not the user's fault,
		// so "try again", as Courier's modules answer their errors.
		s.log.Error("authdaemon: "+what, "user", req.Name, "service", req.Service, "err", err)
		return ""
	}
}

// passwd is PASSWD: the old password is checked as a login (and counted by
// the guard), then the module that answered changes it.
func (s *Server) passwd(ctx context.Context, req *Request) string {
	if req.NewPassword == "" {
		return replyFail
	}
	a, err := s.opts.Auth.AuthenticateFrom(ctx, req.Service, clientOf(req), req.Name, req.Password)
	if err != nil {
		if reply := s.accountReply("passwd", req, nil, "", err); reply == "" {
			return "" // temporary
		}
		return replyFail
	}
	var setter auth.PasswordSetter
	for _, m := range s.opts.Auth.Modules() {
		if m.Name() == a.Module {
			setter = auth.SetterOf(m)
			break
		}
	}
	switch {
	case setter != nil:
		err = setter.SetPassword(ctx, a, req.Service, req.NewPassword)
	case s.opts.ChangePassword != nil:
		err = s.opts.ChangePassword(ctx, a, req.Service, req.NewPassword)
	default:
		err = fmt.Errorf("module %s cannot change passwords", a.Module)
	}
	if err != nil {
		s.log.Warn("authdaemon: password change failed", "user", req.Name, "service", req.Service, "err", err)
		return replyFail
	}
	s.log.Info("authdaemon: password changed", "user", req.Name, "service", req.Service, "module", a.Module)
	return replyOK
}

// enumerate is ENUMERATE: the accounts of each module that can list its
// own, in authmodulelist order, each module's under a "# module" comment
// line as Courier writes it; a name an earlier module listed is left out
// (auth.Service.EnumerateByModule). A module that fails ends the answer
// without its "." line, which clients read as a failure.
func (s *Server) enumerate(ctx context.Context, b *bufio.Writer) {
	err := s.opts.Auth.EnumerateByModule(ctx,
		func(m auth.Module) error {
			// What the modules before listed goes out now, not after
			// this one's query: a client timing each read sees the
			// answer come.
			if err := b.Flush(); err != nil {
				return err
			}
			_, err := b.WriteString("# " + m.Name() + "\n\n")
			return err
		},
		func(a *auth.Account) error {
			_, err := b.WriteString(FormatEnumerated(a)) // fails once the client is gone
			return err
		})
	if err != nil {
		s.log.Error("authdaemon: enumerate", "err", err)
		return
	}
	b.WriteString(replyEnd)
}

// deadlineWriter gives each write to its connection timeout to go through.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}
