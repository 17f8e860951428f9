package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// maxLoginResponses bounds the untagged lines a backend may send before
// the answer to LOGIN.
const maxLoginResponses = 100

// startTLSTag tags the STARTTLS the front sends before the client's LOGIN;
// the client never sees it.
const startTLSTag = "PX0"

// IMAPLogin is a backend logged in over IMAP and what it answered.
type IMAPLogin struct {
	*Backend
	// Reply is what the client is to be sent for its LOGIN or
	// AUTHENTICATE: the backend's untagged responses, then its tagged OK
	// (the front logs in with the client's own tag, so the line is the
	// client's answer as it stands, capabilities included when the backend
	// gave them). Each line is without its CRLF.
	Reply []string
}

// LoginIMAP connects to the first of hosts that answers and logs in there
// as user with password, using tag (the client's tag for its LOGIN or
// AUTHENTICATE) for the LOGIN command (RFC 9051 6.2.3). Errors wrap
// ErrUnavailable or ErrRefused (a *Refusal).
func (c *Config) LoginIMAP(ctx context.Context, hosts []string, tag, user, password string) (*IMAPLogin, error) {
	c = c.current()
	var reply []string
	b, err := c.login(ctx, hosts, func(ctx context.Context, host string, conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		conn, r, err := c.imapGreeting(ctx, host, conn, r)
		if err != nil {
			return nil, nil, err
		}
		untagged, status, err := sendLogin(conn, r, tag, user, password)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: LOGIN: %w", host, err)
		}
		switch {
		case hasPrefixFold(status, "OK"):
			reply = append(untagged, tag+" "+status)
			return conn, r, nil
		case hasPrefixFold(status, "NO"):
			return nil, nil, &Refusal{Host: host, Reply: status}
		}
		return nil, nil, fmt.Errorf("%s: LOGIN answered %q", host, truncate(status, 200))
	})
	if err != nil {
		return nil, err
	}
	return &IMAPLogin{Backend: b, Reply: reply}, nil
}

// imapGreeting reads an IMAP server's greeting and, when the
// configuration asks for it, runs STARTTLS (RFC 9051 6.2.1); it returns
// the connection and reader to go on with.
func (c *Config) imapGreeting(ctx context.Context, host string, conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	greeting, err := readLine(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: greeting: %w", host, err)
	}
	if !hasPrefixFold(greeting, "* OK") {
		return nil, nil, fmt.Errorf("%s: greeting %q", host, truncate(greeting, 200))
	}
	if c.TLS != TLSStartTLS {
		return conn, r, nil
	}
	if err := writeAll(conn, startTLSTag+" STARTTLS\r\n"); err != nil {
		return nil, nil, fmt.Errorf("%s: STARTTLS: %w", host, err)
	}
	_, status, err := readTagged(r, startTLSTag)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: STARTTLS: %w", host, err)
	}
	if !hasPrefixFold(status, "OK") {
		return nil, nil, fmt.Errorf("%s: STARTTLS refused: %q", host, truncate(status, 200))
	}
	if r.Buffered() > 0 {
		return nil, nil, fmt.Errorf("%s: data after STARTTLS's answer", host)
	}
	tc, err := c.startTLS(ctx, host, conn)
	if err != nil {
		return nil, nil, err
	}
	return tc, bufio.NewReaderSize(tc, 4<<10), nil
}

// sendLogin sends "tag LOGIN user password" and reads to its tagged
// answer. Each argument is a quoted string when it can be one, else a
// synchronizing literal, sent once the backend asks for it.
func sendLogin(conn net.Conn, r *bufio.Reader, tag, user, password string) (untagged []string, status string, err error) {
	args := []string{user, password}
	line := tag + " LOGIN"
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, "", errors.New("a NUL cannot be sent in LOGIN")
		}
		if q, ok := quoted(a); ok {
			line += " " + q
			continue
		}
		// A literal (RFC 9051 4.3): send the line up to "{n}", wait for
		// the continuation, then the octets.
		if err := writeAll(conn, line+" {"+strconv.Itoa(len(a))+"}\r\n"); err != nil {
			return nil, "", err
		}
		cont, err := readLine(r)
		if err != nil {
			return nil, "", err
		}
		if !strings.HasPrefix(cont, "+") {
			// The backend ended the command instead (NO or BAD).
			if st, ok := strings.CutPrefix(cont, tag+" "); ok {
				return nil, st, nil
			}
			return nil, "", fmt.Errorf("no continuation for argument %d: %q", i+1, truncate(cont, 200))
		}
		line = a
	}
	if err := writeAll(conn, line+"\r\n"); err != nil {
		return nil, "", err
	}
	return readTagged(r, tag)
}

// readTagged reads responses until the one tagged tag; it returns the
// untagged ones before it and the tagged one's "STATUS ..." part.
func readTagged(r *bufio.Reader, tag string) (untagged []string, status string, err error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, "", err
		}
		if st, ok := strings.CutPrefix(line, tag+" "); ok {
			return untagged, st, nil
		}
		if !strings.HasPrefix(line, "* ") {
			return nil, "", fmt.Errorf("unexpected response %q", truncate(line, 200))
		}
		if len(untagged) >= maxLoginResponses {
			return nil, "", errors.New("too many responses before the tagged answer")
		}
		untagged = append(untagged, line)
	}
}

// quoted returns s as an IMAP quoted string (RFC 9051 4.3: 7-bit, no CR
// or LF), or false when s needs a literal.
func quoted(s string) (string, bool) {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0 || c == '\r' || c == '\n' || c >= 0x80:
			return "", false
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
