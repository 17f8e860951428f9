package authdaemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"postern/auth"
)

// ModuleName is the client module's name in authmodulelist and in
// Account.Module.
const ModuleName = "authdaemon"

// DefaultSocket is where Debian's Courier authlib puts authdaemond's socket
// (authdaemonrc's authdaemonvar, plus "/socket"); its programs are
// compiled to use this path.
const DefaultSocket = "/run/courier/authdaemon/socket"

// Client is an auth.Module that asks a Courier authdaemond (or another
// Postern) over its socket: Lookup is PRE, Authenticate is AUTH login,
// SetPassword is PASSWD. A daemon that cannot be reached, or that closes
// the connection without an answer, gives auth.ErrTemporary.
type Client struct {
	Path    string        // the socket
	Timeout time.Duration // per request; DefaultTimeout when 0
}

var (
	_ auth.Module         = (*Client)(nil)
	_ auth.PasswordSetter = (*Client)(nil)
	_ auth.Enumerator     = (*Client)(nil)
)

// NewClient returns a client of the daemon listening at path.
func NewClient(path string) *Client { return &Client{Path: path} }

// Name returns "authdaemon".
func (c *Client) Name() string { return ModuleName }

// roundTrip sends req and hands the connection's reader to read, all
// within the client's Timeout.
func (c *Client) roundTrip(ctx context.Context, req *Request, read func(*bufio.Reader) error) error {
	return c.exchange(ctx, req, c.timeout(), 0, read)
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// exchange is roundTrip within total; idle, when not 0, bounds each read
// instead of the whole answer (a long ENUMERATE answer, which keeps
// coming).
func (c *Client) exchange(ctx context.Context, req *Request, total, idle time.Duration, read func(*bufio.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return fmt.Errorf("authdaemon %s: %w: %w", c.Path, auth.ErrTemporary, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return fmt.Errorf("authdaemon %s: %w: %w", c.Path, auth.ErrTemporary, err)
	}
	var r io.Reader = conn
	if idle > 0 {
		dl, _ := ctx.Deadline()
		r = idleReader{conn, idle, dl}
	}
	if err := read(bufio.NewReaderSize(r, 4096)); err != nil {
		if errors.Is(err, auth.ErrNoSuchUser) || errors.Is(err, auth.ErrBadPassword) {
			return err
		}
		return fmt.Errorf("authdaemon %s: %w: %w", c.Path, auth.ErrTemporary, err)
	}
	return nil
}

// Ping checks that a daemon accepts connections at the socket (for
// postern config).
func (c *Client) Ping(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return err
	}
	return conn.Close()
}

// validName refuses what cannot travel in a request line.
func validName(name string) bool {
	return name != "" && !hasControl(name, "") && !strings.HasPrefix(name, " ")
}

// account asks for one account; no is the error a FAIL stands for.
func (c *Client) account(ctx context.Context, req *Request, no error) (*auth.Account, error) {
	var a *auth.Account
	err := c.roundTrip(ctx, req, func(r *bufio.Reader) error {
		acct, clear, fail, err := ParseAccount(r)
		if err != nil {
			return err
		}
		if fail {
			return fmt.Errorf("authdaemon: %q: %w", req.Name, no)
		}
		if req.Kind == KindAuth {
			if clear == "" {
				clear = req.Password
			}
			// What SetPassword will need as the old password.
			acct.Fields["clearpw"] = clear
		}
		a = acct
		return nil
	})
	if err != nil {
		return nil, err
	}
	if a.Name == "" {
		a.Name = req.Name
	}
	a.Module = ModuleName
	return a, nil
}

// Lookup sends PRE.
func (c *Client) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	if !validName(name) {
		return nil, fmt.Errorf("authdaemon: %q: %w", name, auth.ErrNoSuchUser)
	}
	// Courier's PRE names a service; delivery and lookups without one use
	// "courier", as Courier's own local delivery does.
	return c.account(ctx, &Request{Kind: KindPre, Module: ".", Service: "courier", Name: name}, auth.ErrNoSuchUser)
}

// Authenticate sends AUTH login. authdaemond's FAIL does not say whether
// the name is unknown or the password wrong; it is taken as a wrong
// password, so that no later module is asked (a second module must not
// be a way around a wrong password).
func (c *Client) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	if !validName(name) || password == "" || strings.ContainsAny(password, "\n\x00") {
		return nil, fmt.Errorf("authdaemon: %q: %w", name, auth.ErrBadPassword)
	}
	if service == "" || hasControl(service, "") {
		service = "login"
	}
	return c.account(ctx, &Request{Kind: KindAuth, Service: service, AuthType: AuthTypeLogin, Name: name, Password: password}, auth.ErrBadPassword)
}

// SetPassword sends PASSWD. The protocol wants the old password, which
// only an Account returned by Authenticate carries (as PASSWD2, kept in
// Fields["clearpw"]).
func (c *Client) SetPassword(ctx context.Context, a *auth.Account, service, newPassword string) error {
	old := a.Fields["clearpw"]
	if old == "" {
		return errors.New("authdaemon: changing a password needs the old one (log in first)")
	}
	if hasControl(newPassword, "") || newPassword == "" {
		return errors.New("authdaemon: the new password may not be empty or hold control characters")
	}
	if service == "" || hasControl(service, "") {
		service = "login"
	}
	req := &Request{Kind: KindPasswd, Service: service, Name: a.Name, Password: old, NewPassword: newPassword}
	return c.roundTrip(ctx, req, func(r *bufio.Reader) error {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if line != "OK" {
			return fmt.Errorf("authdaemon: %q: password not changed: %w", a.Name, auth.ErrBadPassword)
		}
		return nil
	})
}

// idleReader gives each read from its connection timeout to return, and
// none past until.
type idleReader struct {
	c       net.Conn
	timeout time.Duration
	until   time.Time
}

func (r idleReader) Read(p []byte) (int, error) {
	dl := time.Now().Add(r.timeout)
	if dl.After(r.until) {
		dl = r.until
	}
	r.c.SetReadDeadline(dl)
	return r.c.Read(p)
}

// Enumerate sends ENUMERATE. The answer may take as long as the server
// gives a listing (EnumerateTimeout), as long as it keeps coming: each
// read has the client's Timeout.
func (c *Client) Enumerate(ctx context.Context, each func(*auth.Account) error) error {
	return c.exchange(ctx, &Request{Kind: KindEnumerate}, EnumerateTimeout, c.timeout(), func(r *bufio.Reader) error {
		for {
			line, err := readLine(r)
			if err != nil {
				return err
			}
			if line == "." {
				return nil
			}
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			a, ok := parseEnumerated(line)
			if !ok {
				continue
			}
			if err := each(a); err != nil {
				return err
			}
		}
	})
}

// parseEnumerated reads one ENUMERATE line.
func parseEnumerated(line string) (*auth.Account, bool) {
	f := strings.SplitN(line, "\t", 7)
	if len(f) < 4 {
		return nil, false
	}
	a := &auth.Account{Name: f[0], Home: f[3], Module: ModuleName, Fields: map[string]string{}, Options: map[string]string{}}
	var err1, err2 error
	_, err1 = fmt.Sscanf(f[1], "%d", &a.UID)
	_, err2 = fmt.Sscanf(f[2], "%d", &a.GID)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	if len(f) > 4 {
		a.Maildir = f[4]
	}
	if len(f) > 5 && f[5] != "" {
		a.Fields["options"] = f[5]
		for opt := range strings.SplitSeq(f[5], ",") {
			name, value, _ := strings.Cut(opt, "=")
			if name != "" {
				a.Options[name] = value
			}
		}
	}
	return a, true
}
