package smtpd

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
)

// supportedMechanisms are the SASL mechanisms the engine runs itself.
func supportedMechanism(m string) bool { return m == "PLAIN" || m == "LOGIN" }

// authMechanisms is the configured list, upper-cased, limited to what the
// engine implements.
func (c *conn) authMechanisms() []string {
	var out []string
	for _, m := range c.opt.AuthMechanisms {
		if m = strings.ToUpper(m); supportedMechanism(m) {
			out = append(out, m)
		}
	}
	return out
}

// authOffered: AUTH is advertised and accepted only when the session can
// check credentials and the channel is private (or the admin allows
// otherwise).
func (c *conn) authOffered() bool {
	if _, ok := c.sess.(AuthSession); !ok {
		return false
	}
	return (c.info.TLS != nil || c.opt.AllowInsecureAuth) && len(c.authMechanisms()) > 0
}

var (
	errAuthCancelled = errors.New("smtpd: AUTH cancelled")
	errAuthBase64    = errors.New("smtpd: AUTH response is not base64")
)

// cmdAuth runs AUTH (RFC 4954).
func (c *conn) cmdAuth(arg string) bool {
	as, isAuth := c.sess.(AuthSession)
	switch {
	case !isAuth || len(c.authMechanisms()) == 0:
		c.reply(502, "5.5.1", "Error: command not implemented")
		return true
	case !c.authOffered():
		c.reply(538, "5.7.11", "Error: encryption required for authentication") // RFC 4954 6
		return true
	case !c.greeted || !c.info.ESMTP:
		c.reply(503, "5.5.1", "Error: send EHLO first")
		return true
	case c.info.AuthUser != "":
		c.reply(503, "5.5.1", "Error: already authenticated") // RFC 4954 4
		return true
	case c.inTx:
		c.reply(503, "5.5.1", "Error: MAIL transaction in progress")
		return true
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range c.authMechanisms() {
		offered = offered || m == mech
	}
	if mech == "" {
		c.reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
		return true
	}
	if !offered {
		c.reply(504, "5.5.4", "Error: unsupported authentication mechanism")
		return true
	}

	var identity, username, password string
	var err error
	switch mech {
	case "PLAIN": // RFC 4616
		var resp []byte
		if hasInitial {
			resp, err = decodeSASL(initial)
		} else {
			resp, err = c.authExchange("")
		}
		if err == nil {
			parts := bytes.Split(resp, []byte{0})
			if len(parts) != 3 || len(parts[1]) == 0 {
				c.reply(501, "5.5.2", "Error: malformed PLAIN response")
				return c.writeErr == nil
			}
			identity, username, password = string(parts[0]), string(parts[1]), string(parts[2])
		}
	case "LOGIN": // draft-murchison-sasl-login
		var u, p []byte
		if hasInitial {
			u, err = decodeSASL(initial)
		} else {
			u, err = c.authExchange("Username:")
		}
		if err == nil {
			p, err = c.authExchange("Password:")
		}
		username, password = string(u), string(p)
	}
	switch {
	case errors.Is(err, errAuthCancelled):
		c.reply(501, "5.0.0", "Error: authentication cancelled") // RFC 4954 4
		return true
	case errors.Is(err, errAuthBase64):
		c.reply(501, "5.5.2", "Error: cannot decode response")
		return true
	case errors.Is(err, errLineTooLong):
		c.reply(500, "5.5.6", "Error: authentication exchange line too long") // RFC 4954 4
		return true
	case err != nil:
		c.readFailed(err)
		return false
	}
	if c.sessionReply(as.Auth(c.ctx, &c.info, mech, identity, username, password)) {
		return true
	}
	// The session accepted acting as identity when one was asked for.
	c.info.AuthUser, c.info.AuthMech = username, mech
	if identity != "" {
		c.info.AuthUser = identity
	}
	c.reply(235, "2.7.0", "Authentication successful")
	return true
}

// authExchange sends a 334 challenge and reads one response line.
func (c *conn) authExchange(challenge string) ([]byte, error) {
	c.writeLines(334, "", base64.StdEncoding.EncodeToString([]byte(challenge)))
	if err := c.flush(); err != nil {
		return nil, err
	}
	c.timeout = c.opt.ReadTimeout
	line, err := c.readLine(c.opt.MaxAuthLineLength)
	if err != nil {
		return nil, err
	}
	if line == "*" {
		return nil, errAuthCancelled
	}
	return decodeSASL(line)
}

// decodeSASL decodes a base64 response; "=" (as an initial response) and
// an empty line are the empty response (RFC 4954 4).
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errAuthBase64
	}
	return b, nil
}
