package sieve

import (
	"strings"
	"unicode/utf8"
)

// checkCommand applies the rules of each command that the generic
// argument check cannot express, on constant arguments (arguments with
// variables are checked again when the script runs).
func (v *validator) checkCommand(n *node) error {
	switch n.name {
	case "fileinto":
		if name, ok := n.args[0].constant(); ok {
			if err := checkMailboxName(name); err != nil {
				return parseErrorf(n.args[0].pos, "fileinto: %v", err)
			}
		}
		if p := n.tags["specialuse"]; p != nil {
			if attr, ok := p.constant(); ok && !validSpecialUse(attr) {
				return parseErrorf(p.pos, "fileinto: :specialuse %q is not a special-use attribute like \\Junk (RFC 8579)", attr)
			}
		}
		if p := n.tags["mailboxid"]; p != nil {
			if id, ok := p.constant(); ok && !validObjectID(id) {
				return parseErrorf(p.pos, "fileinto: :mailboxid %q is not a mailbox id (RFC 8474: letters, digits, '-', '_')", id)
			}
		}
	case "break":
		if len(v.loops) == 0 {
			return parseErrorf(n.pos, "break outside a foreverypart loop (RFC 5703 3)")
		}
		if p := n.tags["name"]; p != nil {
			name, ok := p.constant()
			if !ok {
				return parseErrorf(p.pos, "break: the :name must be a constant string")
			}
			for _, l := range v.loops {
				if l == name {
					return nil
				}
			}
			return parseErrorf(p.pos, "break: no enclosing foreverypart loop is named %q", name)
		}
	case "extracttext":
		if len(v.loops) == 0 {
			return parseErrorf(n.pos, "extracttext outside a foreverypart loop (RFC 5703 7)")
		}
		if !v.has("variables") {
			return parseErrorf(n.pos, "extracttext: missing require %q (RFC 5703 7)", "variables")
		}
		if p := n.tags["first"]; p != nil && p.num < 0 {
			return parseErrorf(p.pos, "extracttext: :first cannot be negative")
		}
		return v.checkVariableName("extracttext", n.args[0], true)
	case "notify":
		return checkNotify(n)
	case "redirect":
		if addr, ok := n.args[0].constant(); ok && !validAddress(addr) {
			return parseErrorf(n.args[0].pos, "redirect: %q is not a valid mail address", addr)
		}
	case "vacation":
		if p := n.tags["from"]; p != nil {
			if addr, ok := p.constant(); ok && !validAddress(addr) {
				return parseErrorf(p.pos, "vacation: :from %q is not a valid mail address", addr)
			}
		}
		if p := n.tags["addresses"]; p != nil {
			for _, t := range p.strs {
				if t.parts == nil && !validAddress(t.s) {
					return parseErrorf(p.pos, "vacation: :addresses %q is not a valid mail address", t.s)
				}
			}
		}
	case "setflag", "addflag", "removeflag":
		if n.args[0] != nil {
			return v.checkVariableName(n.name, n.args[0], false)
		}
	case "set":
		return v.checkVariableName("set", n.args[0], true)
	case "global":
		if !v.has("variables") {
			return parseErrorf(n.pos, "global: missing require %q (RFC 6609 3.3)", "variables")
		}
		for _, t := range n.args[0].strs {
			if t.parts != nil || !isVariableName(t.s, false) {
				return parseErrorf(n.args[0].pos, "global: %q is not a variable name", t.s)
			}
		}
	case "include":
		name, ok := n.args[0].constant()
		if !ok {
			return parseErrorf(n.args[0].pos, "include: the script name must be a constant string")
		}
		if err := checkScriptName(name); err != nil {
			return parseErrorf(n.args[0].pos, "include: %v", err)
		}
	case "addheader":
		return checkFieldNames(n.name, n.args[0])
	case "deleteheader":
		if err := checkIndex(n); err != nil {
			return err
		}
		return checkFieldNames(n.name, n.args[0])
	}
	return nil
}

func (v *validator) checkTest(n *node) error {
	switch n.name {
	case "header", "address", "exists":
		if err := checkIndex(n); err != nil {
			return err
		}
		if !n.has("mime") {
			for _, tag := range []string{"anychild", "type", "subtype", "contenttype", "param"} {
				if n.has(tag) {
					return parseErrorf(n.pos, "%s: :%s needs :mime (RFC 5703 4)", n.name, tag)
				}
			}
		}
		return checkFieldNames(n.name, n.args[0])
	case "ihave":
		n.ihave = v.ihave(n.args[0])
	case "specialuse_exists":
		if n.args[0] != nil {
			if name, ok := n.args[0].constant(); ok {
				if err := checkMailboxName(name); err != nil {
					return parseErrorf(n.args[0].pos, "specialuse_exists: %v", err)
				}
			}
		}
		for _, t := range n.args[1].strs {
			if t.parts == nil && !validSpecialUse(t.s) {
				return parseErrorf(n.args[1].pos, "specialuse_exists: %q is not a special-use attribute like \\Junk (RFC 8579)", t.s)
			}
		}
	case "date":
		if err := checkIndex(n); err != nil {
			return err
		}
		if err := checkFieldNames(n.name, n.args[0]); err != nil {
			return err
		}
		return checkDateArgs(n, n.args[1])
	case "currentdate":
		return checkDateArgs(n, n.args[0])
	case "envelope":
		for _, t := range n.args[0].strs {
			if t.parts != nil {
				continue
			}
			switch strings.ToLower(t.s) {
			case "from", "to", "auth":
			default:
				return parseErrorf(n.args[0].pos, "envelope: unknown envelope part %q (from, to, auth)", t.s)
			}
		}
	case "size":
		if !n.has("over") && !n.has("under") {
			return parseErrorf(n.pos, "size needs :over or :under")
		}
	case "duplicate":
		if p := n.tags["header"]; p != nil {
			return checkFieldNames(n.name, p)
		}
	case "hasflag":
		if n.args[0] != nil {
			if !v.has("variables") {
				return parseErrorf(n.args[0].pos, "hasflag: a variable list needs require %q", "variables")
			}
			for _, t := range n.args[0].strs {
				if t.parts == nil && !isVariableName(t.s, true) {
					return parseErrorf(n.args[0].pos, "hasflag: %q is not a variable name", t.s)
				}
			}
		}
	case "body":
		if p := n.tags["content"]; p != nil {
			for _, t := range p.strs {
				n.extra = append(n.extra, strings.ToLower(strings.TrimSpace(t.s)))
			}
		}
		if n.match.kind == matchCount {
			return parseErrorf(n.pos, "body: :count is not supported with body")
		}
	}
	return nil
}

// checkVariableName checks the variable a command assigns: a constant
// identifier, or "global.NAME" with include (RFC 5229 3, RFC 6609 3.5).
func (v *validator) checkVariableName(cmd string, p *param, isSet bool) error {
	if !v.has("variables") {
		return parseErrorf(p.pos, "%s: a variable name needs require %q", cmd, "variables")
	}
	name, ok := p.constant()
	if !ok {
		return parseErrorf(p.pos, "%s: the variable name must be a constant string", cmd)
	}
	if isDigits(name) {
		return parseErrorf(p.pos, "%s: cannot assign the match variable ${%s}", cmd, name)
	}
	if !isVariableName(name, true) {
		return parseErrorf(p.pos, "%s: %q is not a variable name", cmd, name)
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		if !strings.EqualFold(name[:i], "global") || !v.has("include") || strings.Count(name, ".") > 1 {
			return parseErrorf(p.pos, "%s: unknown variable namespace in %q", cmd, name)
		}
	}
	return nil
}

// checkIndex: :last needs :index, and the index counts from 1 (RFC 5260
// section 6).
func checkIndex(n *node) error {
	p, hasIndex := n.tags["index"]
	if n.name != "duplicate" && n.has("last") && !hasIndex {
		return parseErrorf(n.pos, "%s: :last needs :index", n.name)
	}
	if hasIndex && p.num < 1 {
		return parseErrorf(p.pos, "%s: :index counts from 1", n.name)
	}
	return nil
}

var dateParts = map[string]bool{
	"year": true, "month": true, "day": true, "date": true, "julian": true, "hour": true, "minute": true,
	"second": true, "time": true, "iso8601": true, "std11": true, "zone": true, "weekday": true,
}

func checkDateArgs(n *node, part *param) error {
	if name, ok := part.constant(); ok && !dateParts[strings.ToLower(name)] {
		return parseErrorf(part.pos, "%s: unknown date part %q", n.name, name)
	}
	if p := n.tags["zone"]; p != nil {
		if z, ok := p.constant(); ok {
			if _, valid := parseZone(z); !valid {
				return parseErrorf(p.pos, "%s: :zone %q is not a zone like +0100", n.name, z)
			}
		}
	}
	return nil
}

// checkFieldNames checks constant header field names (RFC 5322 2.2: 1*ftext).
func checkFieldNames(cmd string, p *param) error {
	for _, t := range p.strs {
		if t.parts == nil && !validFieldName(t.s) {
			return parseErrorf(p.pos, "%s: %q is not a valid header field name", cmd, t.s)
		}
	}
	return nil
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// checkMailboxName refuses names no mailbox can have; the delivery agent
// maps the rest ("INBOX.Sub", "Sub/Sub") onto its folders.
func checkMailboxName(s string) error {
	switch {
	case s == "":
		return errString("the mailbox name is empty")
	case !utf8.ValidString(s):
		return errString("the mailbox name is not UTF-8")
	case strings.ContainsAny(s, "\x00\r\n"):
		return errString("the mailbox name has a control character")
	}
	return nil
}

// checkScriptName keeps an included script's name inside the user's
// script directory: no path separators, no hidden names, no control
// characters.
func checkScriptName(s string) error {
	switch {
	case s == "":
		return errString("the script name is empty")
	case strings.ContainsAny(s, "/\\"):
		return errString("a script name cannot hold '/' or '\\'")
	case strings.HasPrefix(s, "."):
		return errString("a script name cannot start with '.'")
	case !utf8.ValidString(s):
		return errString("the script name is not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 {
			return errString("the script name has a control character")
		}
	}
	return nil
}

// validSpecialUse reports whether s is a special-use attribute: a
// backslash and an IMAP atom (RFC 6154 2, RFC 3501 9 flag-extension).
func validSpecialUse(s string) bool {
	if len(s) < 2 || s[0] != '\\' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// validObjectID reports whether s is an IMAP object id (RFC 8474 5:
// 1*255 of letters, digits, '-' and '_').
func validObjectID(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

type errString string

func (e errString) Error() string { return string(e) }
