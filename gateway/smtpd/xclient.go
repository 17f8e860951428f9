package smtpd

import (
	"net/netip"
	"strconv"
	"strings"
)

// xclientAttributes are the XCLIENT attributes we accept (Postfix's
// XCLIENT_README), in the order they are advertised.
var xclientAttributes = []string{"ADDR", "PORT", "NAME", "REVERSE_NAME", "HELO", "PROTO", "LOGIN", "DESTADDR", "DESTPORT"}

// cmdXCLIENT runs Postfix's XCLIENT: a trusted front end (XCLIENTFrom)
// tells us who its client is. The old session is closed, a new one is made
// with the new client data (so connect-time policy runs on the real
// client), and a fresh 220 greeting is sent; the client then says EHLO again.
func (c *conn) cmdXCLIENT(arg string) bool {
	switch {
	case !c.xclientOK:
		c.reply(550, "5.7.0", "Error: insufficient authorization")
		return true
	case c.inTx:
		c.reply(503, "5.5.1", "Error: MAIL transaction in progress")
		return true
	case arg == "":
		c.reply(501, "5.5.4", "Syntax: XCLIENT attribute=value ...")
		return true
	}
	info := c.info
	info.Values = map[string]string{}
	addr, port := info.RemoteAddr.Addr(), info.RemoteAddr.Port()
	daddr, dport := info.LocalAddr.Addr(), info.LocalAddr.Port()
	for _, f := range strings.Fields(arg) {
		name, raw, ok := strings.Cut(f, "=")
		name = strings.ToUpper(name)
		if !ok {
			c.reply(501, "5.5.4", "Error: bad XCLIENT attribute %q", name)
			return true
		}
		v, err := decodeXtext(raw)
		if err != nil && raw != "" {
			c.reply(501, "5.5.4", "Error: bad XCLIENT value for %s", name)
			return true
		}
		// [UNAVAILABLE] and [TEMPUNAVAIL] mean "not known"; a name lookup
		// that failed temporarily is kept visible to the policy.
		unknown := strings.EqualFold(v, "[UNAVAILABLE]") || strings.EqualFold(v, "[TEMPUNAVAIL]")
		bad := false
		switch name {
		case "ADDR":
			if unknown {
				addr = netip.Addr{}
				break
			}
			s := v
			if len(s) > 5 && strings.EqualFold(s[:5], "IPV6:") {
				s = s[5:]
			}
			a, err := netip.ParseAddr(s)
			addr, bad = a.Unmap(), err != nil || a.Zone() != ""
		case "PORT":
			if unknown {
				port = 0
				break
			}
			p, err := strconv.ParseUint(v, 10, 16)
			port, bad = uint16(p), err != nil
		case "DESTADDR":
			if unknown {
				daddr = netip.Addr{}
				break
			}
			s := v
			if len(s) > 5 && strings.EqualFold(s[:5], "IPV6:") {
				s = s[5:]
			}
			a, err := netip.ParseAddr(s)
			daddr, bad = a.Unmap(), err != nil || a.Zone() != ""
		case "DESTPORT":
			if unknown {
				dport = 0
				break
			}
			p, err := strconv.ParseUint(v, 10, 16)
			dport, bad = uint16(p), err != nil
		case "NAME":
			info.RemoteName = v
			if unknown {
				info.RemoteName = ""
			}
			if strings.EqualFold(v, "[TEMPUNAVAIL]") {
				info.Values["xclient_name"] = "TEMPUNAVAIL"
			}
		case "REVERSE_NAME":
			if !unknown {
				info.Values["xclient_reverse_name"] = v
			}
		case "HELO":
			info.HELO = v
			if unknown {
				info.HELO = ""
			}
			bad = len(v) > maxDomain
		case "PROTO":
			switch strings.ToUpper(v) {
			case "SMTP":
				info.ESMTP = false
			case "ESMTP":
				info.ESMTP = true
			default:
				bad = !unknown
			}
		case "LOGIN":
			info.AuthUser = v
			if unknown {
				info.AuthUser = ""
			}
		default:
			c.reply(501, "5.5.4", "Error: bad XCLIENT attribute name %s", name)
			return true
		}
		if bad {
			c.reply(501, "5.5.4", "Error: bad XCLIENT value for %s", name)
			return true
		}
	}
	if addr.IsValid() {
		info.RemoteAddr = netip.AddrPortFrom(addr, port)
	} else {
		info.RemoteAddr = netip.AddrPort{}
	}
	if daddr.IsValid() {
		info.LocalAddr = netip.AddrPortFrom(daddr, dport)
	}
	if !info.ProxiedBy.IsValid() {
		info.ProxiedBy = c.info.RemoteAddr
	}

	c.resetTx()
	c.closeSession()
	c.info = info
	c.greeted = false
	c.log = c.log.With("xclient", info.RemoteAddr.String())
	return c.connect()
}
