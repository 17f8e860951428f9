package webmail

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	pmime "postern/mailbox/mime"
)

// The address book's pages: the list (sorted by name, searched), the form
// that adds or edits an entry, the confirmation of a deletion; "write to"
// opens the compose form with an entry's addresses. The file is
// addressbook.go's.

// maxShownProblems bounds the unreadable records the list names.
const maxShownProblems = 20

// maxNickDepth bounds nicknames that name nicknames.
const maxNickDepth = 8

type abookRow struct {
	Nick, Name string
	Addrs      []string
	WriteURL   string
	EditURL    string
	DeleteURL  string
}

type abookPage struct {
	Rows         []abookRow
	Q            string
	Total        int
	Problems     []string
	MoreProblems int
	Error        string
	CanSend      bool
}

type abookEditPage struct {
	Old   string // the nickname edited; "" for a new entry
	Nick  string
	Rows  []bookAddress
	Error string
}

type abookDeletePage struct {
	Nick, Name string
	Addrs      []string
}

// loadBook reads the user's address book.
func (h *Handler) loadBook(u *user) (*addressBook, error) {
	return readAddressBook(u.md.Root())
}

// bookTrouble is what the user is told when the address book cannot be
// read, and the status that goes with it.
func (h *Handler) bookTrouble(u *user, err error) (int, string) {
	if errors.Is(err, errBookTooBig) {
		return http.StatusInsufficientStorage, fmt.Sprintf("Your address book file is larger than %d KiB: it is not read, and cannot be changed here.", maxBookFile>>10)
	}
	h.log.Error("webmail: address book", "user", u.s.Login, "err", err)
	return http.StatusServiceUnavailable, "Your address book cannot be read now. Try again later."
}

// abook lists the entries, sorted by name, those matching q when given.
func (h *Handler) abook(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	p := &abookPage{CanSend: h.opt.Send != nil}
	p.Q = clean(strings.TrimSpace(r.URL.Query().Get("q")))
	if len(p.Q) > maxSearch {
		p.Q = strings.ToValidUTF8(p.Q[:maxSearch], "")
	}
	status := http.StatusOK
	book, err := h.loadBook(u)
	if err != nil {
		status, p.Error = h.bookTrouble(u, err)
		h.render(w, status, "abook.html", h.pageFor(u, "Address book", p))
		return
	}
	entries := book.entries()
	p.Total = len(entries)
	slices.SortFunc(entries, func(a, b *bookEntry) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name()), strings.ToLower(b.Name())), cmp.Compare(a.Nick, b.Nick))
	})
	q := strings.ToLower(p.Q)
	for _, e := range entries {
		if q != "" && !entryMatches(e, q) {
			continue
		}
		row := abookRow{Nick: e.Nick, Name: e.Name(),
			WriteURL:  Prefix + "compose?" + url.Values{"abook": {e.Nick}}.Encode(),
			EditURL:   Prefix + "abook/edit?" + url.Values{"nick": {e.Nick}}.Encode(),
			DeleteURL: Prefix + "abook/delete?" + url.Values{"nick": {e.Nick}}.Encode()}
		for _, a := range e.Addrs {
			row.Addrs = append(row.Addrs, showBookAddress(a))
		}
		p.Rows = append(p.Rows, row)
	}
	for i, pr := range book.Problems {
		if i == maxShownProblems {
			p.MoreProblems = len(book.Problems) - i
			break
		}
		p.Problems = append(p.Problems, pr.String())
	}
	h.render(w, status, "abook.html", h.pageFor(u, "Address book", p))
}

func entryMatches(e *bookEntry, q string) bool {
	if strings.Contains(e.Nick, q) {
		return true
	}
	for _, a := range e.Addrs {
		if strings.Contains(strings.ToLower(a.Name), q) || strings.Contains(strings.ToLower(a.Addr), q) {
			return true
		}
	}
	return false
}

// showBookAddress is an address as the pages show it: Name <box@domain>.
func showBookAddress(a bookAddress) string {
	if a.Name == "" {
		return a.Addr
	}
	return a.Name + " <" + a.Addr + ">"
}

// fieldBookAddress is an address as the compose form's fields take it.
func fieldBookAddress(a bookAddress) string {
	if a.Name == "" {
		return a.Addr
	}
	return quoteName(a.Name) + " <" + a.Addr + ">"
}

// blankRows are the empty address rows the form offers.
const blankRows = 2

// abookEntry is the session and the entry a page about one nickname
// (?nick=) is for; nil when the page has answered already (no session, no
// such nickname, the book unreadable).
func (h *Handler) abookEntry(w http.ResponseWriter, r *http.Request) (*user, *bookEntry) {
	u := h.session(w, r)
	if u == nil {
		return nil, nil
	}
	book, err := h.loadBook(u)
	if err != nil {
		status, msg := h.bookTrouble(u, err)
		h.fail(w, r, u, status, msg)
		return nil, nil
	}
	e := book.find(r.URL.Query().Get("nick"))
	if e == nil {
		h.fail(w, r, u, http.StatusNotFound, "There is no such nickname in your address book.")
		return nil, nil
	}
	return u, e
}

// abookEdit shows the form for an existing entry.
func (h *Handler) abookEdit(w http.ResponseWriter, r *http.Request) {
	u, e := h.abookEntry(w, r)
	if e == nil {
		return
	}
	ep := &abookEditPage{Old: e.Nick, Nick: e.Nick, Rows: append(slices.Clone(e.Addrs), make([]bookAddress, blankRows)...)}
	h.render(w, http.StatusOK, "abookedit.html", h.pageFor(u, "Edit "+e.Nick, ep))
}

// abookNew shows the form for a new entry, filled in from the query (the
// sender of a message: nick, name, addr).
func (h *Handler) abookNew(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	v := r.URL.Query()
	field := func(k string, limit int) string {
		s := strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, clean(strings.TrimSpace(v.Get(k))))
		if len(s) > limit {
			s = strings.ToValidUTF8(s[:limit], "")
		}
		return s
	}
	ep := &abookEditPage{Nick: field("nick", maxNickLen), Rows: make([]bookAddress, blankRows+1)}
	ep.Rows[0] = bookAddress{Name: field("name", maxBookName), Addr: field("addr", maxBookAddr)}
	h.render(w, http.StatusOK, "abookedit.html", h.pageFor(u, "New address book entry", ep))
}

// abookSave adds an entry or changes one (old names it): the nickname and
// the rows of names and addresses; rows without an address are left out.
func (h *Handler) abookSave(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	names, addrs := r.PostForm["name"], r.PostForm["addr"]
	if len(names) != len(addrs) || len(addrs) > maxRecipients+blankRows {
		h.fail(w, r, u, http.StatusBadRequest, fmt.Sprintf("The form is not complete, or has more than %d addresses.", maxRecipients))
		return
	}
	ep := &abookEditPage{Old: r.PostFormValue("old"), Nick: strings.TrimSpace(r.PostFormValue("nick"))}
	for i := range addrs {
		ep.Rows = append(ep.Rows, bookAddress{Name: strings.TrimSpace(names[i]), Addr: strings.TrimSpace(addrs[i])})
	}
	again := func(status int, msg string) {
		ep.Error = msg
		ep.Old, ep.Nick = clean(ep.Old), clean(ep.Nick)
		for i := range ep.Rows {
			ep.Rows[i] = bookAddress{Name: clean(ep.Rows[i].Name), Addr: clean(ep.Rows[i].Addr)}
		}
		ep.Rows = append(ep.Rows, make([]bookAddress, blankRows)...)
		h.render(w, status, "abookedit.html", h.pageFor(u, "Address book entry", ep))
	}
	e, err := entryFromForm(ep)
	if err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	h.bookMu.Lock()
	defer h.bookMu.Unlock()
	book, err := h.loadBook(u)
	if err != nil {
		status, msg := h.bookTrouble(u, err)
		again(status, msg)
		return
	}
	if err := book.put(ep.Old, e); err != nil {
		switch {
		case errors.Is(err, errNickTaken):
			again(http.StatusConflict, fmt.Sprintf("The nickname %s is taken: edit that entry, or choose another nickname.", e.Nick))
		case errors.Is(err, errNoEntry):
			again(http.StatusNotFound, "The entry is no longer in your address book.")
		case errors.Is(err, errBookFull):
			again(http.StatusInsufficientStorage, fmt.Sprintf("Your address book is full: it holds %d entries, its most.", maxBookEntries))
		default:
			again(http.StatusBadRequest, sentence(err))
		}
		return
	}
	if err := writeAddressBook(u.md.Root(), book); err != nil {
		if errors.Is(err, errBookTooBig) {
			again(http.StatusInsufficientStorage, fmt.Sprintf("Your address book would be larger than %d KiB: it was not changed.", maxBookFile>>10))
			return
		}
		h.log.Error("webmail: write address book", "user", u.s.Login, "err", err)
		again(http.StatusServiceUnavailable, "Your address book could not be saved now. Try again later.")
		return
	}
	h.log.Info("webmail: address book entry saved", "user", u.s.Login, "nick", e.Nick, "addresses", len(e.Addrs))
	h.flash(w, r, u, "Saved "+e.Nick+".", Prefix+"abook")
}

// entryFromForm checks the form's fields; its errors are for the user.
func entryFromForm(ep *abookEditPage) (*bookEntry, error) {
	nick := strings.ToLower(ep.Nick)
	if err := cmp.Or(checkNick(ep.Nick), checkNick(nick)); err != nil {
		return nil, fmt.Errorf("The nickname %s: use one word, without spaces, quotes, brackets or any of :;,<>@\\.", err)
	}
	e := &bookEntry{Nick: nick}
	seen := map[string]bool{}
	for _, row := range ep.Rows {
		if row.Addr == "" {
			if row.Name != "" {
				return nil, fmt.Errorf("%.60q has no address.", row.Name)
			}
			continue
		}
		if err := checkBookName(row.Name); err != nil {
			return nil, sentenceErr(err)
		}
		local, domain, ok := strings.Cut(row.Addr, "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || checkBookAddr(row.Addr) != nil {
			return nil, fmt.Errorf("%.60q is not an address: write it as name@example.org.", row.Addr)
		}
		if k := strings.ToLower(row.Addr); !seen[k] {
			seen[k] = true
			e.Addrs = append(e.Addrs, row)
		}
	}
	if len(e.Addrs) == 0 {
		return nil, errors.New("Give at least one address.")
	}
	if err := checkEntry(e); err != nil {
		return nil, sentenceErr(err)
	}
	return e, nil
}

// sentence makes an error's text a sentence for a page.
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func sentenceErr(err error) error { return errors.New(sentence(err)) }

// abookDeleteForm asks whether to delete an entry.
func (h *Handler) abookDeleteForm(w http.ResponseWriter, r *http.Request) {
	u, e := h.abookEntry(w, r)
	if e == nil {
		return
	}
	dp := &abookDeletePage{Nick: e.Nick, Name: e.Name()}
	for _, a := range e.Addrs {
		dp.Addrs = append(dp.Addrs, showBookAddress(a))
	}
	h.render(w, http.StatusOK, "abookdelete.html", h.pageFor(u, "Delete "+e.Nick, dp))
}

// abookDelete deletes an entry (the confirmation's POST).
func (h *Handler) abookDelete(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	h.bookMu.Lock()
	defer h.bookMu.Unlock()
	book, err := h.loadBook(u)
	if err != nil {
		status, msg := h.bookTrouble(u, err)
		h.fail(w, r, u, status, msg)
		return
	}
	nick := strings.ToLower(r.PostFormValue("nick"))
	if err := book.remove(nick); err != nil {
		h.fail(w, r, u, http.StatusNotFound, "There is no such nickname in your address book.")
		return
	}
	if err := writeAddressBook(u.md.Root(), book); err != nil {
		h.log.Error("webmail: write address book", "user", u.s.Login, "err", err)
		h.fail(w, r, u, http.StatusServiceUnavailable, "Your address book could not be saved now. Try again later.")
		return
	}
	h.log.Info("webmail: address book entry deleted", "user", u.s.Login, "nick", nick)
	h.flash(w, r, u, "Deleted "+nick+".", Prefix+"abook")
}

// abookOption is an entry the compose form offers its fields.
type abookOption struct{ Nick, Label string }

// composeOptions are the entries for the compose form's datalist; none
// when the book cannot be read (the form works without them).
func (h *Handler) composeOptions(u *user) []abookOption {
	book, err := h.loadBook(u)
	if err != nil {
		return nil
	}
	var out []abookOption
	for _, e := range book.entries() {
		label := e.Name()
		if len(e.Addrs) == 1 {
			label = showBookAddress(e.Addrs[0])
		} else {
			label += fmt.Sprintf(" (%d addresses)", len(e.Addrs))
		}
		out = append(out, abookOption{Nick: e.Nick, Label: label})
	}
	slices.SortFunc(out, func(a, b abookOption) int { return cmp.Compare(a.Nick, b.Nick) })
	return out
}

// senderEntryURL is the form that adds a message's sender to the address
// book, or "" when the message has no usable sender.
func senderEntryURL(from []pmime.Address) string {
	for _, a := range from {
		if a.Group || a.Host == "" || a.Host == pmime.MissingDomain || a.Mailbox == "" {
			continue
		}
		addr := clean(addrSpec(a))
		if checkBookAddr(addr) != nil {
			return ""
		}
		return Prefix + "abook/new?" + url.Values{"nick": {suggestNick(a.Mailbox)}, "name": {clean(a.Name)}, "addr": {addr}}.Encode()
	}
	return ""
}

// suggestNick makes a nickname of an address's local part.
func suggestNick(local string) string {
	nick := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || strings.ContainsRune(`:;,<>@\"()[]`, r) {
			return -1
		}
		return unicode.ToLower(r)
	}, clean(local))
	if len(nick) > maxNickLen {
		nick = strings.ToValidUTF8(nick[:maxNickLen], "")
	}
	return nick
}

// parseRecipients reads an address field as typed, with nicknames of the
// address book standing for their addresses, as sqwebmail has it: a
// member of the list that is one word, without a name or an @, is looked
// up (in any case) and replaced by the entry's addresses; a nickname
// among those is expanded in turn. book may be nil (not readable).
func parseRecipients(field, s string, book *addressBook) ([]*mail.Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if len(s) > maxAddressField || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
		return nil, fmt.Errorf("%s: the list is too long or holds a line break.", field)
	}
	pieces := splitAddressList(s)
	if !slices.ContainsFunc(pieces, isNickWord) {
		return parseAddresses(field, s)
	}
	var out []*mail.Address
	seen := map[string]bool{}
	for _, p := range pieces {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case isNickWord(p):
			if err := expandNick(field, p, book, seen, 0, &out); err != nil {
				return nil, err
			}
		default:
			list, err := parseAddresses(field, p)
			if err != nil {
				return nil, err
			}
			out = append(out, list...)
		}
		if len(out) > maxRecipients {
			return nil, fmt.Errorf("At most %d recipients.", maxRecipients)
		}
	}
	return out, nil
}

func isNickWord(p string) bool {
	p = strings.TrimSpace(p)
	return p != "" && checkNick(strings.ToLower(p)) == nil
}

// expandNick appends the addresses of nick to out.
func expandNick(field, nick string, book *addressBook, seen map[string]bool, depth int, out *[]*mail.Address) error {
	e := book.find(nick)
	if e == nil {
		if book == nil {
			return fmt.Errorf("%s: %q is not a complete address, and your address book cannot be read now.", field, nick)
		}
		return fmt.Errorf("%s: %q is neither an address nor a nickname in your address book.", field, nick)
	}
	if seen[e.Nick] {
		return nil // named twice, or a list that names itself
	}
	seen[e.Nick] = true
	for _, a := range e.Addrs {
		if !strings.Contains(a.Addr, "@") {
			if depth >= maxNickDepth {
				return fmt.Errorf("%s: the nickname %s names nicknames %d deep.", field, nick, maxNickDepth)
			}
			if err := expandNick(field, a.Addr, book, seen, depth+1, out); err != nil {
				return err
			}
			continue
		}
		local, domain, _ := strings.Cut(a.Addr, "@")
		if local == "" || domain == "" || strings.Contains(domain, "@") {
			return fmt.Errorf("%s: the nickname %s holds %q, which is not a complete address.", field, e.Nick, a.Addr)
		}
		*out = append(*out, &mail.Address{Name: a.Name, Address: a.Addr})
		if len(*out) > maxRecipients {
			return fmt.Errorf("At most %d recipients.", maxRecipients)
		}
	}
	return nil
}

// splitAddressList splits a typed address list at its commas, but not at
// those in quotes, comments or angle brackets.
func splitAddressList(s string) []string {
	var out []string
	start, comment := 0, 0
	quoted, angle := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || comment > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '(':
			comment++
		case comment > 0:
			if c == ')' {
				comment--
			}
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
