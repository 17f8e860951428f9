package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// POP3Login is a backend logged in over POP3 and what it answered.
type POP3Login struct {
	*Backend
	// Reply is the backend's "+OK ..." answer to PASS, which the client is
	// sent as the answer to its own PASS or AUTH (without the CRLF).
	Reply string
}

// LoginPOP3 connects to the first of hosts that answers and logs in there
// with USER and PASS (RFC 1939 section 7), which every POP3 server
// takes, whichever way the client logged in at the front. Errors wrap
// ErrUnavailable or ErrRefused (a *Refusal).
func (c *Config) LoginPOP3(ctx context.Context, hosts []string, user, password string) (*POP3Login, error) {
	c = c.current()
	if strings.ContainsAny(user, "\r\n\x00") || strings.ContainsAny(password, "\r\n\x00") {
		// Possible through AUTH PLAIN at the front; USER/PASS cannot carry it.
		return nil, fmt.Errorf("%w: name or password has a line break or NUL, which POP3's USER and PASS cannot carry", ErrUnavailable)
	}
	var reply string
	b, err := c.login(ctx, hosts, func(ctx context.Context, host string, conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		greeting, err := readLine(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: greeting: %w", host, err)
		}
		if !strings.HasPrefix(greeting, "+OK") {
			return nil, nil, fmt.Errorf("%s: greeting %q", host, truncate(greeting, 200))
		}
		if c.TLS == TLSStartTLS {
			ans, err := pop3Command(conn, r, "STLS")
			if err != nil {
				return nil, nil, fmt.Errorf("%s: STLS: %w", host, err)
			}
			if !strings.HasPrefix(ans, "+OK") {
				return nil, nil, fmt.Errorf("%s: STLS refused: %q", host, truncate(ans, 200))
			}
			if r.Buffered() > 0 {
				return nil, nil, fmt.Errorf("%s: data after STLS's answer", host)
			}
			tc, err := c.startTLS(ctx, host, conn)
			if err != nil {
				return nil, nil, err
			}
			conn, r = tc, bufio.NewReaderSize(tc, 4<<10)
		}
		for _, step := range []string{"USER " + user, "PASS " + password} {
			ans, err := pop3Command(conn, r, step)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", host, step[:4], err)
			}
			switch {
			case strings.HasPrefix(ans, "-ERR"):
				return nil, nil, &Refusal{Host: host, Reply: ans}
			case !strings.HasPrefix(ans, "+OK"):
				return nil, nil, fmt.Errorf("%s: %s answered %q", host, step[:4], truncate(ans, 200))
			}
			reply = ans
		}
		return conn, r, nil
	})
	if err != nil {
		return nil, err
	}
	return &POP3Login{Backend: b, Reply: reply}, nil
}

// pop3Command sends one command line and reads its one-line answer.
func pop3Command(conn net.Conn, r *bufio.Reader, line string) (string, error) {
	if err := writeAll(conn, line+"\r\n"); err != nil {
		return "", err
	}
	ans, err := readLine(r)
	if err != nil {
		return "", err
	}
	if ans == "" {
		return "", errors.New("empty answer")
	}
	return ans, nil
}
