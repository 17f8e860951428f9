package sieve

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// test evaluates a test.
func (r *run) test(n *node, f *frame) (bool, error) {
	if err := r.step(n.pos, 1); err != nil {
		return false, err
	}
	switch n.name {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "not":
		ok, err := r.test(n.tests[0], f)
		return !ok, err
	case "allof":
		for _, t := range n.tests {
			ok, err := r.test(t, f)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case "anyof":
		for _, t := range n.tests {
			ok, err := r.test(t, f)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case "exists":
		if n.has("mime") {
			return r.existsMIME(n, f)
		}
		names, err := r.expandParam(n.args[0], f)
		if err != nil {
			return false, err
		}
		for _, name := range names {
			if _, ok := r.msg.first(name); !ok {
				return false, nil
			}
		}
		return true, nil
	case "size":
		size := int64(r.msg.size(r.env.Message))
		if n.has("over") {
			return size > n.args[0].num, nil
		}
		return size < n.args[0].num, nil
	case "header":
		return r.headerTest(n, f)
	case "address":
		return r.addressTest(n, f)
	case "envelope":
		return r.envelopeTest(n, f)
	case "body":
		return r.bodyTest(n, f)
	case "string":
		values, err := r.expandParam(n.args[0], f)
		if err != nil {
			return false, err
		}
		if n.match.kind == matchCount {
			// RFC 5229 5: :count counts the non-empty strings.
			nonEmpty := values[:0:0]
			for _, v := range values {
				if v != "" {
					nonEmpty = append(nonEmpty, v)
				}
			}
			values = nonEmpty
		}
		return r.matchValues(n, f, values)
	case "hasflag":
		return r.hasflagTest(n, f)
	case "date", "currentdate":
		return r.dateTest(n, f)
	case "mailboxexists":
		return r.everyOne(n.args[0], f, r.env.MailboxExists)
	case "environment":
		return r.environmentTest(n, f)
	case "duplicate":
		return r.duplicateTest(n, f)
	case "spamtest":
		return r.matchValues(n, f, []string{r.spamValue(n.has("percent"))})
	case "virustest":
		return r.matchValues(n, f, []string{r.virusValue()})
	case "ihave":
		return n.ihave, nil
	case "valid_notify_method":
		return r.validNotifyMethod(n, f)
	case "notify_method_capability":
		return r.notifyMethodCapability(n, f)
	case "specialuse_exists":
		return r.specialUseExists(n, f)
	case "mailboxidexists":
		return r.everyOne(n.args[0], f, func(id string) bool {
			return validObjectID(id) && r.env.MailboxIDExists != nil && r.env.MailboxIDExists(id)
		})
	}
	return false, runtimeErrorf(n.pos, "test %s cannot run here", n.name)
}

// everyOne reports whether exists (a caller's hook; nil answers no) is
// true for every string of the list: mailboxexists, mailboxidexists.
func (r *run) everyOne(p *param, f *frame, exists func(string) bool) (bool, error) {
	list, err := r.expandParam(p, f)
	if err != nil {
		return false, err
	}
	for _, s := range list {
		if exists == nil || !exists(s) {
			return false, nil
		}
	}
	return true, nil
}

// matchValues matches values against the test's key list with its
// comparator and match type. A successful :matches or :regex sets the
// match variables when the script uses variables (RFC 5229 3.2).
func (r *run) matchValues(n *node, f *frame, values []string) (bool, error) {
	m := n.match
	keys, err := r.expandParam(m.keys, f)
	if err != nil {
		return false, err
	}
	if m.kind == matchCount {
		// RFC 5231 4.1: the number of values compared with each key.
		c := countString(len(values))
		for _, k := range keys {
			if err := r.step(n.pos, 1); err != nil {
				return false, err
			}
			if m.rel.holds(m.cmp.order(c, k)) {
				return true, nil
			}
		}
		return false, nil
	}
	wantCaps := f.script.required["variables"] && (m.kind == matchMatches || m.kind == matchRegex)
	for _, v := range values {
		for i, k := range keys {
			if err := r.step(n.pos, 1+len(v)>>12); err != nil {
				return false, err
			}
			var re *regexp.Regexp
			if m.kind == matchRegex {
				cr, err := r.regex(m, i, k, n)
				if err != nil {
					return false, err
				}
				// RE2 is linear, but in the value's length times the
				// program's size: charge that before matching.
				if err := r.step(n.pos, (len(v)+1)*cr.cost>>8); err != nil {
					return false, err
				}
				re = cr.re
			}
			// :matches may backtrack: it may use the steps left, 256
			// iterations a step.
			budget := (r.opt.MaxSteps - r.steps) << 8
			ok, caps, work := m.matchOne(v, k, re, wantCaps, budget)
			if err := r.step(n.pos, (work+255)>>8); err != nil {
				return false, err
			}
			if ok {
				if wantCaps {
					f.matchVars = caps
				}
				return true, nil
			}
		}
	}
	return false, nil
}

// regex returns the compiled i'th :regex key: compiled at parse time when
// constant, else compiled now and cached for the run.
func (r *run) regex(m *matcher, i int, key string, n *node) (*compiledRegex, error) {
	if i < len(m.regexes) && m.regexes[i] != nil {
		return m.regexes[i], nil
	}
	cacheKey := strconv.Itoa(int(m.cmp)) + key
	if re, ok := r.regexes[cacheKey]; ok {
		return re, nil
	}
	re, err := compileRegex(key, m.cmp)
	if err != nil {
		return nil, runtimeErrorf(n.pos, "%s: bad regular expression %q: %v", n.name, key, err)
	}
	if r.regexes == nil {
		r.regexes = map[string]*compiledRegex{}
	}
	r.regexes[cacheKey] = re
	return re, nil
}

// selectFields applies :index/:last (RFC 5260 section 6) to the fields
// of one header name.
func selectFields(n *node, fields []*field) []*field {
	p, ok := n.tags["index"]
	if !ok {
		return fields
	}
	i := p.num - 1
	if i >= int64(len(fields)) {
		return nil
	}
	if n.has("last") {
		i = int64(len(fields)) - 1 - i
	}
	return fields[i : i+1]
}

// namedFields returns the fields the test's header names select, :index
// applied per name; with :mime those of the current MIME part.
func (r *run) namedFields(n *node, f *frame) ([]*field, error) {
	if n.has("mime") {
		return r.mimeFields(n, f)
	}
	names, err := r.expandParam(n.args[0], f)
	if err != nil {
		return nil, err
	}
	var out []*field
	for _, name := range names {
		out = append(out, selectFields(n, r.msg.values(name))...)
	}
	return out, nil
}

func (r *run) headerTest(n *node, f *frame) (bool, error) {
	fields, err := r.namedFields(n, f)
	if err != nil {
		return false, err
	}
	params, err := r.expandParam(n.tags["param"], f)
	if err != nil {
		return false, err
	}
	return r.matchValues(n, f, mimeValues(n, fields, params))
}

func (r *run) addressTest(n *node, f *frame) (bool, error) {
	fields, err := r.namedFields(n, f)
	if err != nil {
		return false, err
	}
	var values []string
	for _, fl := range fields {
		for _, a := range fl.addresses() {
			if v, ok := r.addressPart(n, a); ok {
				values = append(values, v)
			}
		}
	}
	return r.matchValues(n, f, values)
}

func (r *run) envelopeTest(n *node, f *frame) (bool, error) {
	parts, err := r.expandParam(n.args[0], f)
	if err != nil {
		return false, err
	}
	var values []string
	for _, part := range parts {
		var raw string
		switch strings.ToLower(part) {
		case "from":
			raw = r.env.From
		case "to":
			raw = r.env.To
		case "auth":
			if r.env.Auth == "" {
				continue
			}
			raw = r.env.Auth
		default:
			return false, runtimeErrorf(n.pos, "envelope: unknown envelope part %q", part)
		}
		a := envelopeAddress(raw)
		if a.all == "" {
			values = append(values, "") // RFC 5228 5.4: the null path is "" for every part
			continue
		}
		if v, ok := r.addressPart(n, a); ok {
			values = append(values, v)
		}
	}
	return r.matchValues(n, f, values)
}

// addressPart picks the address part a test asks for (RFC 5228 2.7.4,
// RFC 5233). :detail of an address without a separator gives no value.
func (r *run) addressPart(n *node, a address) (string, bool) {
	switch {
	case n.has("localpart"):
		return a.local, true
	case n.has("domain"):
		return a.domain, true
	case n.has("user"):
		user, _, _ := r.subaddress(a.local)
		return user, true
	case n.has("detail"):
		_, detail, ok := r.subaddress(a.local)
		return detail, ok
	}
	return a.all, true
}

// subaddress splits a local part at the first separator character.
func (r *run) subaddress(local string) (user, detail string, ok bool) {
	i := strings.IndexAny(local, r.opt.SubaddressSeparators)
	if i < 0 {
		return local, "", false
	}
	return local[:i], local[i+1:], true
}

// bodyTest matches the body (RFC 5173): :raw the undecoded body, :content
// the decoded MIME parts of the listed types, :text (the default) the
// text parts, HTML reduced to its text.
func (r *run) bodyTest(n *node, f *frame) (bool, error) {
	var values []string
	if n.has("raw") {
		values = []string{string(r.msg.body)}
	} else {
		for _, p := range r.msg.bodyParts(r.env.Message) {
			if n.has("content") {
				if contentTypeMatches(p.ctype, n.extra) {
					values = append(values, p.text)
				}
				continue
			}
			switch {
			case p.ctype == "text/html":
				values = append(values, stripTags(p.text))
			case strings.HasPrefix(p.ctype, "text/"):
				values = append(values, p.text)
			}
		}
	}
	return r.matchValues(n, f, values)
}

// contentTypeMatches: "" matches every part, "type" every subtype,
// "type/subtype" exactly (RFC 5173 5.2).
func contentTypeMatches(ctype string, wanted []string) bool {
	for _, w := range wanted {
		switch {
		case w == "":
			return true
		case strings.Contains(w, "/"):
			if ctype == w {
				return true
			}
		case strings.HasPrefix(ctype, w+"/"):
			return true
		}
	}
	return false
}

func (r *run) hasflagTest(n *node, f *frame) (bool, error) {
	var flags []string
	if n.args[0] != nil {
		names, err := r.expandParam(n.args[0], f)
		if err != nil {
			return false, err
		}
		for _, name := range names {
			flags = addFlags(flags, []string{r.variable(strings.ToLower(name), f)})
		}
	} else {
		flags = r.flags
	}
	return r.matchValues(n, f, flags)
}

// environmentTest answers the RFC 5183 items Postern knows; an unknown
// item makes the test false.
func (r *run) environmentTest(n *node, f *frame) (bool, error) {
	name, err := r.expandOne(n.args[0], f)
	if err != nil {
		return false, err
	}
	var value string
	switch strings.ToLower(name) {
	case "domain":
		value = r.env.Domain
	case "host":
		value = r.env.Host
	case "location":
		value = "MDA"
	case "name":
		value = "Postern"
	case "phase":
		value = "during"
	case "version":
		value = r.env.Version
		if value == "" {
			value = "1"
		}
	default:
		return false, nil
	}
	return r.matchValues(n, f, []string{value})
}

// specialUseExists answers specialuse_exists (RFC 8579 3): without a
// mailbox, is each attribute on some mailbox; with one, is each on it.
func (r *run) specialUseExists(n *node, f *frame) (bool, error) {
	mailbox, err := r.expandOne(n.args[0], f)
	if err != nil {
		return false, err
	}
	attrs, err := r.expandParam(n.args[1], f)
	if err != nil {
		return false, err
	}
	for _, a := range attrs {
		if !validSpecialUse(a) {
			return false, runtimeErrorf(n.args[1].pos, "specialuse_exists: %q is not a special-use attribute (RFC 8579)", a)
		}
		if r.env.SpecialUseExists == nil || !r.env.SpecialUseExists(mailbox, a) {
			return false, nil
		}
	}
	return true, nil
}

// spamValue is the spamtest value (RFC 5235): "0" when the message was not
// scored, else 1 (not spam) to 10 (spam), or a percentage with :percent.
func (r *run) spamValue(percent bool) string {
	raw, ok := r.msg.first(r.opt.SpamHeader)
	if !ok {
		return "0"
	}
	score, ok := firstNumber(raw)
	if !ok {
		return "0"
	}
	frac := math.Max(0, math.Min(1, score/r.opt.SpamMax))
	if percent {
		return strconv.Itoa(int(math.Round(frac * 100)))
	}
	return strconv.Itoa(1 + int(math.Round(frac*9)))
}

// firstNumber finds the first decimal number in s ("5.3", "score=5.3",
// "5.3/10", "-1.2").
func firstNumber(s string) (float64, bool) {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			continue
		}
		start := i
		if i > 0 && s[i-1] == '-' {
			start = i - 1
		}
		j := i
		for j < len(s) && (isDigit(s[j]) || s[j] == '.') {
			j++
		}
		v, err := strconv.ParseFloat(strings.TrimRight(s[start:j], "."), 64)
		return v, err == nil
	}
	return 0, false
}

// virusValue is the virustest value (RFC 5235 3.2): 0 not scanned,
// 1 clean, 5 infected; a digit in the header is taken as it is.
func (r *run) virusValue() string {
	raw, ok := r.msg.first(r.opt.VirusHeader)
	if !ok {
		return "0"
	}
	v := strings.ToLower(strings.TrimSpace(raw))
	switch {
	case len(v) > 0 && v[0] >= '0' && v[0] <= '5':
		return v[:1]
	case strings.Contains(v, "infected") || strings.HasPrefix(v, "yes"):
		return "5"
	case strings.Contains(v, "clean") || strings.HasPrefix(v, "no"):
		return "1"
	}
	return "0"
}
