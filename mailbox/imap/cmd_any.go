package imap

import (
	"strings"
)

// Commands valid in every state (RFC 3501 6.1), plus ID (RFC 2971) and
// ENABLE (RFC 5161).
func anyStateCommands() []*commandSpec {
	return []*commandSpec{
		{name: "CAPABILITY", states: anyState, exec: execCapability, expungeOK: true},
		{name: "NOOP", states: anyState, exec: execNoop, expungeOK: true, noUpdates: true},
		{name: "LOGOUT", states: anyState, exec: execLogout, noUpdates: true},
		{name: "ID", states: anyState, caps: []string{"ID"}, parse: parseID, exec: execID, expungeOK: true},
		{name: "ENABLE", states: stateAuth, caps: []string{"ENABLE", "UTF8=ACCEPT"}, parse: parseEnable, exec: execEnable},
	}
}

func execCapability(s *session, c *command) result {
	s.w.line("* CAPABILITY ")
	s.appendCapabilities()
	s.w.end()
	return ok("CAPABILITY completed")
}

// execNoop rescans the selected folder: NOOP is how clients poll
// (RFC 3501 6.1.2).
func execNoop(s *session, c *command) result {
	if s.sel != nil {
		if r, failed := s.syncResult(s.sendUpdates(true, true)); failed {
			return r
		}
	}
	return ok("NOOP completed")
}

func execLogout(s *session, c *command) result {
	s.w.line("* BYE Postern IMAP server logging out").end()
	s.logout = true
	return ok("LOGOUT completed")
}

// parseID reads "SP (field value ...)" or "SP NIL" (RFC 2971).
func parseID(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b != '(' {
		a, err := d.atom()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(a, "NIL") {
			return nil, syntaxErr("expected ID parameter list or NIL")
		}
		return map[string]string(nil), nil
	}
	d.readByte()
	params := map[string]string{}
	for i := 0; ; i++ {
		if b, err := d.peek(); err != nil {
			return nil, err
		} else if b == ')' {
			d.readByte()
			return params, nil
		}
		if i > 0 {
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		if i >= 30 { // RFC 2971: at most 30 field-value pairs
			return nil, syntaxErr("too many ID fields")
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		v, err := d.nstring()
		if err != nil {
			return nil, err
		}
		params[k] = v
	}
}

func execID(s *session, c *command) result {
	if p, _ := c.args.(map[string]string); len(p) > 0 {
		s.log.Debug("imap: client id", "id", p)
	}
	s.w.line(`* ID ("name" "Postern" "vendor" "Postern")`).end()
	return ok("ID completed")
}

// parseEnable reads "SP capability *(SP capability)".
func parseEnable(d *decoder) (any, error) {
	var caps []string
	for {
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b != ' ' {
			break
		}
		d.readByte()
		a, err := d.atom()
		if err != nil {
			return nil, err
		}
		if len(caps) < 32 {
			caps = append(caps, strings.ToUpper(a))
		}
	}
	if len(caps) == 0 {
		return nil, syntaxErr("ENABLE needs a capability")
	}
	return caps, nil
}

// execEnable turns on CONDSTORE, QRESYNC (RFC 7162 3.2.3: QRESYNC
// implies CONDSTORE), IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855); the ENABLED response lists what this command newly
// enabled, and nothing for extensions this server does not know
// (RFC 5161 3.1).
func execEnable(s *session, c *command) result {
	if s.enabled == nil {
		s.enabled = map[string]bool{}
	}
	w := s.w.line("* ENABLED")
	for _, name := range c.args.([]string) {
		switch name {
		case "CONDSTORE", "QRESYNC":
			if !s.enabled[name] {
				s.enabled[name] = true
				w.byte(' ').raw(name)
			}
			if name == "QRESYNC" {
				s.enabled["CONDSTORE"] = true
			}
		case "IMAP4REV2":
			// RFC 9051 6.3.1 (rev2.go).
			if !s.enabled[name] {
				s.enabled[name] = true
				w.raw(" IMAP4rev2")
			}
		case "UTF8=ACCEPT":
			// RFC 6855 3: UTF-8 mailbox names (names.go), APPEND's UTF8
			// data item (cmd_append.go), no SEARCH CHARSET (cmd_search.go).
			if !s.enabled[name] {
				s.enabled[name] = true
				w.raw(" UTF8=ACCEPT")
			}
		}
	}
	w.end()
	return ok("ENABLE completed")
}

// nstring reads a string or NIL (as "").
func (d *decoder) nstring() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if b == '"' || b == '{' {
		return d.str()
	}
	a, err := d.atom()
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(a, "NIL") {
		return "", syntaxErr("expected string or NIL")
	}
	return "", nil
}
