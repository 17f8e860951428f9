package sieve

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// command runs an action or a variable/flag/header command.
func (r *run) command(n *node, f *frame) error {
	switch n.name {
	case "keep":
		flags, err := r.actionFlags(n, f)
		if err != nil {
			return err
		}
		return r.addAction(n.pos, Keep{Flags: flags}, true)
	case "discard":
		r.implicitKeep = false
		for _, a := range r.actions {
			if _, ok := a.(Discard); ok {
				return nil
			}
		}
		r.actions = append(r.actions, Discard{})
		return nil
	case "fileinto":
		return r.fileinto(n, f)
	case "redirect":
		return r.redirect(n, f)
	case "reject", "ereject":
		reason, err := r.expandOne(n.args[0], f)
		if err != nil {
			return err
		}
		return r.addAction(n.pos, Reject{Reason: reason, Extended: n.name == "ereject"}, true)
	case "vacation":
		return r.vacation(n, f)
	case "setflag", "addflag", "removeflag":
		return r.editFlags(n, f)
	case "set":
		return r.set(n, f)
	case "global":
		if f.globalNames == nil {
			f.globalNames = map[string]bool{}
		}
		for _, t := range n.args[0].strs {
			f.globalNames[strings.ToLower(t.s)] = true
		}
		return nil
	case "addheader":
		return r.addheader(n, f)
	case "deleteheader":
		return r.deleteheader(n, f)
	case "error":
		// RFC 5463 5: the script ends in error, with its message.
		msg, err := r.expandOne(n.args[0], f)
		if err != nil {
			return err
		}
		return &RuntimeError{Pos: n.pos, Err: fmt.Errorf("%w: %s", ErrScript, msg)}
	case "extracttext":
		return r.extracttext(n, f)
	case "notify":
		return r.notify(n, f)
	}
	return runtimeErrorf(n.pos, "command %s cannot run here", n.name)
}

// actionFlags is the :flags list of keep/fileinto, or else the internal
// flags variable as it stands now (RFC 5232 section 5).
func (r *run) actionFlags(n *node, f *frame) ([]string, error) {
	p, ok := n.tags["flags"]
	if !ok {
		return cloneFlags(r.flags), nil
	}
	list, err := r.expandParam(p, f)
	if err != nil {
		return nil, err
	}
	return addFlags(nil, list), nil
}

func (r *run) fileinto(n *node, f *frame) error {
	mailbox, err := r.expandOne(n.args[0], f)
	if err != nil {
		return err
	}
	if err := checkMailboxName(mailbox); err != nil {
		return runtimeErrorf(n.args[0].pos, "fileinto: %v", err)
	}
	flags, err := r.actionFlags(n, f)
	if err != nil {
		return err
	}
	a := FileInto{Mailbox: mailbox, Flags: flags, Copy: n.has("copy"), Create: n.has("create")}
	if p := n.tags["specialuse"]; p != nil {
		if a.SpecialUse, err = r.expandOne(p, f); err != nil {
			return err
		}
		if !validSpecialUse(a.SpecialUse) {
			return runtimeErrorf(p.pos, "fileinto: :specialuse %q is not a special-use attribute (RFC 8579)", a.SpecialUse)
		}
	}
	if p := n.tags["mailboxid"]; p != nil {
		if a.MailboxID, err = r.expandOne(p, f); err != nil {
			return err
		}
		if !validObjectID(a.MailboxID) {
			return runtimeErrorf(p.pos, "fileinto: :mailboxid %q is not a mailbox id (RFC 8474)", a.MailboxID)
		}
	}
	return r.addAction(n.pos, a, !a.Copy)
}

func (r *run) redirect(n *node, f *frame) error {
	addr, err := r.expandOne(n.args[0], f)
	if err != nil {
		return err
	}
	addr = strings.TrimSpace(addr)
	if !validAddress(addr) {
		return runtimeErrorf(n.args[0].pos, "redirect: %q is not a valid mail address", addr)
	}
	a := Redirect{Address: bareAddress(addr), Copy: n.has("copy")}
	return r.addAction(n.pos, a, !a.Copy)
}

// addAction appends an action, merging it with an earlier one of the same
// kind and target (RFC 5228 2.10.3: deliver to one mailbox once), and
// enforces RFC 5429 2.1 (reject goes with no delivery), the action and
// redirect limits. cancel tells whether it cancels the implicit keep.
func (r *run) addAction(p Pos, a Action, cancel bool) error {
	if err := r.checkConflict(p, a); err != nil {
		return err
	}
	if cancel {
		r.implicitKeep = false
	}
	for i, old := range r.actions {
		if merged, ok := mergeActions(old, a); ok {
			r.actions[i] = merged
			return nil
		}
	}
	if _, ok := a.(Redirect); ok {
		r.redirects++
		if r.redirects > r.opt.MaxRedirects {
			return limitErrorf(p, "more than %d redirects", r.opt.MaxRedirects)
		}
	}
	if len(r.actions) >= r.opt.MaxActions {
		return limitErrorf(p, "more than %d actions", r.opt.MaxActions)
	}
	r.actions = append(r.actions, a)
	return nil
}

func (r *run) checkConflict(p Pos, a Action) error {
	switch a.(type) {
	case Reject:
		if r.rejected {
			return runtimeErrorf(p, "reject/ereject may be used only once (RFC 5429 2.1)")
		}
		for _, old := range r.actions {
			switch old.(type) {
			case Keep, FileInto, Redirect, Vacation:
				return runtimeErrorf(p, "reject cannot be combined with %s (RFC 5429 2.1)", actionName(old))
			}
		}
		r.rejected = true
	case Keep, FileInto, Redirect, Vacation:
		if r.rejected {
			return runtimeErrorf(p, "%s cannot be combined with reject (RFC 5429 2.1)", actionName(a))
		}
	}
	return nil
}

func actionName(a Action) string {
	name, _, _ := strings.Cut(a.String(), " ")
	return name
}

// mergeActions merges two deliveries to the same place.
func mergeActions(old, a Action) (Action, bool) {
	switch x := a.(type) {
	case Keep:
		if o, ok := old.(Keep); ok {
			o.Flags = addFlags(o.Flags, x.Flags)
			return o, true
		}
	case FileInto:
		if o, ok := old.(FileInto); ok && sameMailbox(o.Mailbox, x.Mailbox) && o.SpecialUse == x.SpecialUse && o.MailboxID == x.MailboxID {
			o.Flags = addFlags(o.Flags, x.Flags)
			o.Copy = o.Copy && x.Copy
			o.Create = o.Create || x.Create
			return o, true
		}
	case Redirect:
		if o, ok := old.(Redirect); ok && strings.EqualFold(o.Address, x.Address) {
			o.Copy = o.Copy && x.Copy
			return o, true
		}
	}
	return nil, false
}

func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// splitFlags splits flag strings at spaces (RFC 5232 3: a string may hold
// several flags).
func splitFlags(list []string) []string {
	var out []string
	for _, s := range list {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// addFlags adds flags to a set, ignoring case for duplicates. A map keeps
// it linear: a 64 KiB variable holds 30,000 flags.
func addFlags(set []string, list []string) []string {
	have := make(map[string]bool, len(set))
	for _, fl := range set {
		have[strings.ToLower(fl)] = true
	}
	for _, fl := range splitFlags(list) {
		if key := strings.ToLower(fl); !have[key] {
			have[key] = true
			set = append(set, fl)
		}
	}
	return set
}

func removeFlags(set []string, list []string) []string {
	drop := map[string]bool{}
	for _, fl := range splitFlags(list) {
		drop[strings.ToLower(fl)] = true
	}
	out := set[:0:0]
	for _, s := range set {
		if !drop[strings.ToLower(s)] {
			out = append(out, s)
		}
	}
	return out
}

func cloneFlags(f []string) []string {
	if len(f) == 0 {
		return nil
	}
	return append([]string(nil), f...)
}

// editFlags runs setflag, addflag and removeflag on the internal variable
// or on a named one (RFC 5232 section 3).
func (r *run) editFlags(n *node, f *frame) error {
	list, err := r.expandParam(n.args[1], f)
	if err != nil {
		return err
	}
	var cur []string
	if n.args[0] != nil {
		cur = strings.Fields(r.variable(strings.ToLower(n.args[0].strs[0].s), f))
	} else {
		cur = r.flags
	}
	switch n.name {
	case "setflag":
		cur = addFlags(nil, list)
	case "addflag":
		cur = addFlags(cloneFlags(cur), list)
	case "removeflag":
		cur = removeFlags(cur, list)
	}
	if n.args[0] != nil {
		return r.setVariable(n.pos, n.args[0].strs[0].s, strings.Join(cur, " "), f)
	}
	r.flags = cur
	return nil
}

// set assigns a variable (RFC 5229 4).
func (r *run) set(n *node, f *frame) error {
	value, err := r.expandOne(n.args[1], f)
	if err != nil {
		return err
	}
	return r.setVariable(n.pos, n.args[0].strs[0].s, applyModifiers(n, value), f)
}

// applyModifiers applies the modifiers of set and extracttext by
// precedence (RFC 5229 4: 40 case, 30 first letter, 20 quoting,
// 15 :encodeurl of RFC 5435 6, 10 length).
func applyModifiers(n *node, value string) string {
	switch {
	case n.has("lower"):
		value = strings.ToLower(value)
	case n.has("upper"):
		value = strings.ToUpper(value)
	}
	switch {
	case n.has("lowerfirst"):
		value = mapFirst(value, unicode.ToLower)
	case n.has("upperfirst"):
		value = mapFirst(value, unicode.ToUpper)
	}
	switch {
	case n.has("quotewildcard"):
		value = quoteWildcard(value)
	case n.has("quoteregex"):
		value = quoteRegex(value)
	}
	if n.has("encodeurl") {
		value = encodeURL(value)
	}
	if n.has("length") {
		value = strconv.Itoa(utf8.RuneCountInString(value))
	}
	return value
}

func mapFirst(s string, m func(rune) rune) string {
	c, size := utf8.DecodeRuneInString(s)
	if size == 0 {
		return s
	}
	return string(m(c)) + s[size:]
}

func quoteWildcard(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(s)
}

func quoteRegex(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`\.+*?()[]{}|^$`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// protectedHeader is a field editheader must leave alone (RFC 5293 6):
// the trace (Received) and the loop guard of auto-responders
// (Auto-Submitted). An attempt is ignored, as the RFC says.
func protectedHeader(name string) bool {
	return strings.EqualFold(name, "Received") || strings.EqualFold(name, "Auto-Submitted")
}

// editableField expands the field name of addheader/deleteheader; ok is
// false for a protected field, which the command leaves alone.
func (r *run) editableField(n *node, f *frame) (name string, ok bool, err error) {
	if name, err = r.expandOne(n.args[0], f); err != nil {
		return "", false, err
	}
	if !validFieldName(name) {
		return "", false, runtimeErrorf(n.args[0].pos, "%s: %q is not a valid header field name", n.name, name)
	}
	return name, !protectedHeader(name), nil
}

func (r *run) addheader(n *node, f *frame) error {
	name, ok, err := r.editableField(n, f)
	if err != nil || !ok {
		return err
	}
	value, err := r.expandOne(n.args[1], f)
	if err != nil {
		return err
	}
	r.msg.addField(name, value, n.has("last"))
	r.msg.parsed = false
	return nil
}

// deleteheader removes the fields named, optionally only the :index'th
// (from the end with :last) and only those whose value matches
// (RFC 5293 section 5).
func (r *run) deleteheader(n *node, f *frame) error {
	name, ok, err := r.editableField(n, f)
	if err != nil || !ok {
		return err
	}
	var positions []int
	r.msg.work += len(r.msg.fields)
	for i := range r.msg.fields {
		if strings.EqualFold(r.msg.fields[i].name, name) {
			positions = append(positions, i)
		}
	}
	if p, ok := n.tags["index"]; ok {
		idx := int(min(p.num, int64(len(positions)+1))) - 1
		if n.has("last") {
			idx = len(positions) - 1 - idx
		}
		if idx < 0 || idx >= len(positions) {
			return nil
		}
		positions = positions[idx : idx+1]
	}
	drop := map[int]bool{}
	for _, i := range positions {
		if n.args[1] != nil {
			ok, err := r.matchValues(n, f, []string{r.msg.fields[i].decoded()})
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		drop[i] = true
	}
	if len(drop) == 0 {
		return nil
	}
	kept := r.msg.fields[:0:0]
	for i, fl := range r.msg.fields {
		if !drop[i] {
			kept = append(kept, fl)
		}
	}
	r.msg.fields = kept
	r.msg.edited = true
	r.msg.gen++
	r.msg.parsed = false
	return nil
}
