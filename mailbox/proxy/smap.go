package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
)

// SMAPLogin is a backend logged in over SMAP and what it answered.
type SMAPLogin struct {
	*Backend
	// Reply is the backend's "+OK ..." answer to LOGIN (without its line
	// ending), the client's answer to its own LOGIN.
	Reply string
}

// LoginSMAP connects to the first of hosts that answers on its IMAP port
// (Config.Port), switches the connection to Courier's SMAP with a command
// tagged "\SMAP1", as Courier's proxy does, and logs in as user with
// password. The backend must offer SMAP inside IMAP (Postern's
// "smapcapability", Courier's SMAP_CAPABILITY). Errors wrap
// ErrUnavailable or ErrRefused (a *Refusal).
func (c *Config) LoginSMAP(ctx context.Context, hosts []string, user, password string) (*SMAPLogin, error) {
	c = c.current()
	if strings.ContainsAny(user, "\r\n\x00") || strings.ContainsAny(password, "\r\n\x00") {
		return nil, fmt.Errorf("%w: name or password has a line break or NUL, which SMAP's LOGIN cannot carry", ErrUnavailable)
	}
	var reply string
	b, err := c.login(ctx, hosts, func(ctx context.Context, host string, conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		conn, r, err := c.imapGreeting(ctx, host, conn, r)
		if err != nil {
			return nil, nil, err
		}
		if err := writeAll(conn, `\SMAP1 LOGIN `+smapWord(user)+" "+smapWord(password)+"\r\n"); err != nil {
			return nil, nil, fmt.Errorf("%s: LOGIN: %w", host, err)
		}
		for n := 0; ; n++ {
			line, err := readLine(r)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: LOGIN: %w", host, err)
			}
			switch {
			case strings.HasPrefix(line, "+"):
				reply = line
				return conn, r, nil
			case strings.HasPrefix(line, "-"):
				return nil, nil, &Refusal{Host: host, Reply: line}
			case n >= maxLoginResponses:
				return nil, nil, fmt.Errorf("%s: LOGIN: no answer after %d lines", host, n)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return &SMAPLogin{Backend: b, Reply: reply}, nil
}

// smapWord quotes s as an SMAP word: in double quotes, a quote doubled.
func smapWord(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
