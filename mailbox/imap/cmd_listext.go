package imap

import (
	"slices"
	"strings"
)

// LIST-EXTENDED (RFC 5258) with the RETURN options SUBSCRIBED, CHILDREN,
// SPECIAL-USE (RFC 6154) and STATUS (LIST-STATUS, RFC 5819), and the
// selection options SUBSCRIBED, REMOTE, RECURSIVEMATCH and SPECIAL-USE.

type listExtended struct {
	patterns       []string
	subscribed     bool // selection SUBSCRIBED
	recursiveMatch bool
	specialUse     bool // selection SPECIAL-USE
	retSubscribed  bool
	retSpecialUse  bool
	retStatus      []string
}

// parseListExtended reads a plain LIST or the extended form:
// LIST [SP "(" sel-opts ")"] SP ref SP (pattern / "(" patterns ")")
// [SP "RETURN" SP "(" ret-opts ")"].
func parseListExtended(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	var ext *listExtended
	b, err := d.peek()
	if err != nil {
		return nil, err
	}
	if b == '(' {
		ext = &listExtended{}
		if err := d.optionList(func(opt string) error {
			switch opt {
			case "SUBSCRIBED":
				ext.subscribed = true
			case "REMOTE":
			case "RECURSIVEMATCH":
				ext.recursiveMatch = true
			case "SPECIAL-USE":
				ext.specialUse = true
			default:
				return syntaxErr("unknown LIST selection option %s", truncate(opt, 40))
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if ext.recursiveMatch && !ext.subscribed && !ext.specialUse {
			// RFC 5258 3.1: RECURSIVEMATCH alone is an error.
			return nil, syntaxErr("RECURSIVEMATCH needs another selection option")
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
	ref, err := d.astring()
	if err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	var patterns []string
	if b, err := d.peek(); err != nil {
		return nil, err
	} else if b == '(' {
		d.readByte()
		for {
			p, err := d.listMailbox()
			if err != nil {
				return nil, err
			}
			if len(patterns) >= 32 {
				return nil, syntaxErr("too many LIST patterns")
			}
			patterns = append(patterns, p)
			b, err := d.peek()
			if err != nil {
				return nil, err
			}
			if b == ')' {
				d.readByte()
				break
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		if ext == nil {
			ext = &listExtended{}
		}
	} else {
		p, err := d.listMailbox()
		if err != nil {
			return nil, err
		}
		patterns = []string{p}
	}
	if b, err := d.peek(); err == nil && b == ' ' {
		d.readByte()
		word, err := d.atom()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(word, "RETURN") {
			return nil, syntaxErr("expected RETURN")
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if ext == nil {
			ext = &listExtended{}
		}
		if err := d.optionList(func(opt string) error {
			switch opt {
			case "SUBSCRIBED":
				ext.retSubscribed = true
			case "CHILDREN":
			case "SPECIAL-USE":
				ext.retSpecialUse = true
			case "STATUS":
				if err := d.sp(); err != nil {
					return err
				}
				items, err := d.statusItemList()
				if err != nil {
					return err
				}
				ext.retStatus = items
			default:
				return syntaxErr("unknown LIST return option %s", truncate(opt, 40))
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	total := len(ref)
	for _, p := range patterns {
		total += len(p)
	}
	if total > 4096 {
		return nil, syntaxErr("LIST pattern too long")
	}
	if ext == nil {
		return listArgs{ref: ref, pattern: patterns[0]}, nil
	}
	ext.patterns = patterns
	return listArgs{ref: ref, ext: ext}, nil
}

// optionList reads "(" [atom *(SP atom)] ")", passing each upper-cased atom
// to each; each may read arguments after its atom.
func (d *decoder) optionList(each func(string) error) error {
	if err := d.expect('(', "'('"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		b, err := d.peek()
		if err != nil {
			return err
		}
		if b == ')' {
			d.readByte()
			return nil
		}
		if i > 0 {
			if err := d.sp(); err != nil {
				return err
			}
		}
		if i >= 16 {
			return syntaxErr("too many options")
		}
		opt, err := d.atom()
		if err != nil {
			return err
		}
		if err := each(strings.ToUpper(opt)); err != nil {
			return err
		}
	}
}

// listExtended answers an extended LIST.
func (s *session) listExtended(a listArgs) result {
	ext := a.ext
	if s.rev2() && slices.Contains(ext.retStatus, "RECENT") {
		return bad("RECENT is not a STATUS item in IMAP4rev2")
	}
	entries, err := s.hierarchy()
	if err != nil {
		return s.storageResult(err, "LIST")
	}
	subscribed := map[string]bool{}
	if ext.subscribed || ext.retSubscribed {
		subs, err := s.subscriptions()
		if err != nil {
			return s.storageResult(err, "LIST")
		}
		for _, sub := range subs {
			if name, ok := s.subscribedName(sub); ok {
				subscribed[name] = true
				if entries[name] == nil {
					// Subscribed but gone: listed as \NonExistent.
					entries[name] = &listEntry{name: name}
				}
			}
		}
	}
	var patterns []string
	for _, p := range ext.patterns {
		if p != "" {
			patterns = append(patterns, canonicalInbox(a.ref+p))
		}
	}
	if len(patterns) == 0 {
		s.w.line(`* LIST (\Noselect) "." ""`).end()
		return ok("LIST completed")
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if matchPattern(p, name) {
				return true
			}
		}
		return false
	}
	selected := func(e *listEntry) bool {
		if ext.subscribed && !subscribed[e.name] {
			return false
		}
		if ext.specialUse && specialUseAttr(e.folder) == "" {
			return false
		}
		return true
	}
	// RECURSIVEMATCH: a parent whose descendant meets the selection is
	// returned with CHILDINFO (RFC 5258 3.5).
	childInfo := map[string]bool{}
	if ext.recursiveMatch {
		for _, e := range entries {
			if !selected(e) {
				continue
			}
			for i := strings.LastIndexByte(e.name, delimiter); i > 0; i = strings.LastIndexByte(e.name[:i], delimiter) {
				childInfo[e.name[:i]] = true
			}
		}
	}
	for _, e := range sortedEntries(entries) {
		if !matches(e.name) {
			continue
		}
		sel := selected(e)
		if !sel && !childInfo[e.name] {
			continue
		}
		if e.folder == "" && !ext.subscribed && !ext.specialUse && !strings.ContainsAny(strings.Join(patterns, ""), "*%") {
			continue
		}
		var attrs []string
		if e.folder == "" {
			if e.children {
				attrs = append(attrs, s.parentOnlyAttr()) // a parent implied by its children
			} else {
				attrs = append(attrs, `\NonExistent`) // subscribed, but gone
			}
		}
		if e.children {
			attrs = append(attrs, `\HasChildren`)
		} else {
			attrs = append(attrs, `\HasNoChildren`)
		}
		if (ext.retSubscribed || ext.subscribed) && subscribed[e.name] {
			attrs = append(attrs, `\Subscribed`)
		}
		if su := specialUseAttr(e.folder); su != "" {
			attrs = append(attrs, su)
		}
		w := s.w.line("* LIST (").raw(strings.Join(attrs, " ")).raw(`) "." `)
		w.buf = appendAstring(w.buf, e.name)
		if childInfo[e.name] && !sel {
			if ext.subscribed {
				w.raw(` ("CHILDINFO" ("SUBSCRIBED"))`)
			} else {
				w.raw(` ("CHILDINFO" ("SPECIAL-USE"))`)
			}
		}
		w.end()
		if len(ext.retStatus) > 0 && e.folder != "" && sel {
			// LIST-STATUS (RFC 5819): STATUS right after the mailbox's LIST.
			if err := s.writeStatusByName(e.name, ext.retStatus); err != nil {
				s.log.Debug("imap: LIST-STATUS", "folder", e.folder, "err", err)
			}
		}
	}
	return ok("LIST completed")
}
