package webmail

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// PageSize is how many messages a list page shows.
const PageSize = 50

// maxSearch bounds the search text.
const maxSearch = 200

type listRow struct {
	UID                       uint32
	URL                       string
	From, Subject, Date, Size string
	Unread, Flagged, Deleted  bool
	Answered                  bool
	Keywords                  []rowKeyword
}

// rowKeyword is a keyword in the list, a link to the list of the
// messages that have it (none for a name that is not a valid atom, which
// a filter could not name: another program wrote it).
type rowKeyword struct{ Name, URL string }

type sortLink struct {
	Label, URL string
	Active     bool
	Order      string
}

type listPage struct {
	Folder      string
	Display     string
	Rows        []listRow
	Total       int // messages in the folder
	Matches     int // messages the list covers (all, or the search's hits)
	Page, Pages int
	First, Last int
	Prev, Next  string
	Sorts       []sortLink
	Query       listQuery
	Searching   bool // a search or a keyword filter
	SearchIn    []string
	InUse       []string // the folder's keywords, for the filter's choice
	Back        string   // this page, for the actions form
	IsTrash     bool
	IsJunk      bool // Not junk instead of Junk
}

// errListKeyword: the list's keyword filter is not a keyword name.
var errListKeyword = errors.New("the keyword filter is not an IMAP atom")

// readListQuery reads the list's parameters; anything unknown becomes the
// default, but a keyword filter that is not a keyword name is an error:
// silently showing every message would look like a filter that matched
// them all.
func readListQuery(v url.Values) (listQuery, error) {
	q := listQuery{Page: 1, Sort: "date"}
	if p, err := strconv.Atoi(v.Get("page")); err == nil && p > 0 && p < 1e7 {
		q.Page = p
	}
	switch s := v.Get("sort"); s {
	case "date", "from", "subject", "size":
		q.Sort = s
	}
	switch o := v.Get("order"); o {
	case "asc", "desc":
		q.Order = o
	}
	if s := strings.TrimSpace(v.Get("q")); s != "" {
		q.Q = clean(s)
		if len(q.Q) > maxSearch {
			// Cut at a character's start, not inside one: a half
			// character would show as garbage and change on the next
			// page's reading.
			n := maxSearch
			for n > 0 && !utf8.RuneStart(q.Q[n]) {
				n--
			}
			q.Q = strings.TrimSpace(q.Q[:n])
		}
		q.In = "subject"
		switch in := v.Get("in"); in {
		case "subject", "from", "to", "body":
			q.In = in
		}
	}
	if kw := strings.TrimSpace(v.Get("kw")); kw != "" {
		// An IMAP atom (RFC 9051 flag-keyword), as maildir stores them.
		if err := maildir.ValidKeyword(kw); err != nil {
			return q, errListKeyword
		}
		q.KW = kw
	}
	return q, nil
}

// order is the sort's direction: newest and biggest first, names A to Z.
func (q listQuery) desc() bool {
	if q.Order != "" {
		return q.Order == "desc"
	}
	return q.Sort == "date" || q.Sort == "size"
}

// openFolder opens the folder a request names, answering the request
// itself when it cannot.
func (h *Handler) openFolder(w http.ResponseWriter, r *http.Request, u *user, param string) (string, *maildir.Folder, bool) {
	if nick, folder, ok, err := parseSharedParam(param); ok {
		// A shared folder: only one the user may read, through their
		// view; a name that is not one gets the same answer as a
		// folder that is not there.
		var f *maildir.Folder
		if err == nil {
			f, u.fs, err = h.openShared(u, nick, folder)
		}
		if err != nil {
			status := http.StatusNotFound
			if !errors.Is(err, errBadFolder) && !errors.Is(err, maildir.ErrNoSharedFolder) {
				h.log.Error("webmail: open shared folder", "user", u.s.Login, "folder", param, "err", err)
				status = http.StatusServiceUnavailable
			}
			h.fail(w, r, u, status, "There is no folder by that name.")
			return "", nil, false
		}
		return param, f, true
	}
	name, err := folderParam(param)
	if err != nil {
		h.fail(w, r, u, http.StatusBadRequest, "There is no folder by that name.")
		return "", nil, false
	}
	f, err := u.md.Folder(name)
	if err != nil {
		status := http.StatusNotFound
		if !errors.Is(err, maildir.ErrNoFolder) && !errors.Is(err, maildir.ErrBadFolderName) {
			h.log.Error("webmail: open folder", "user", u.s.Login, "folder", name, "err", err)
			status = http.StatusServiceUnavailable
		}
		h.fail(w, r, u, status, "There is no folder by that name.")
		return "", nil, false
	}
	return name, f, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	name, f, ok := h.openFolder(w, r, u, r.URL.Query().Get("f"))
	if !ok {
		return
	}
	snap, err := f.Sync(false)
	if err != nil {
		h.log.Error("webmail: read folder", "user", u.s.Login, "folder", name, "err", err)
		h.fail(w, r, u, http.StatusServiceUnavailable, "This folder cannot be read now. Try again later.")
		return
	}
	q, err := readListQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, u, http.StatusBadRequest, "That is not a keyword name: use letters, digits and signs other than blanks and ( ) { % * \" \\ ] (at most 200).")
		return
	}
	msgs := make([]*maildir.Message, len(snap.Messages))
	for i := range snap.Messages {
		msgs[i] = &snap.Messages[i]
	}
	if q.KW != "" {
		msgs = slices.DeleteFunc(msgs, func(m *maildir.Message) bool { return !hasKeyword(m, q.KW) })
	}
	if q.Q != "" {
		msgs = h.search(f, msgs, q)
	}
	h.sortMessages(f, msgs, q)

	pages := max(1, (len(msgs)+PageSize-1)/PageSize)
	q.Page = min(q.Page, pages)
	lo := (q.Page - 1) * PageSize
	hi := min(lo+PageSize, len(msgs))
	now := time.Now()
	lp := &listPage{Folder: name, Display: displayName(name), Total: len(snap.Messages), Matches: len(msgs),
		Page: q.Page, Pages: pages, First: lo + 1, Last: hi, Query: q, Searching: q.Q != "" || q.KW != "", InUse: keywordsInUse(snap),
		SearchIn: []string{"subject", "from", "to", "body"}, Back: listURL(name, q), IsTrash: name == folderTrash, IsJunk: name == folderJunk}
	for _, m := range msgs[lo:hi] {
		s := h.sums.get(f, m)
		subject := s.Subject
		if strings.TrimSpace(subject) == "" {
			subject = "(no subject)"
		}
		date := s.Date
		if date.IsZero() {
			if t, err := f.InternalDate(m.Key); err == nil {
				date = t
			}
		}
		lp.Rows = append(lp.Rows, listRow{UID: m.UID, URL: msgURL(name, m.UID) + "&back=" + url.QueryEscape(lp.Back), From: s.From, Subject: subject,
			Date: showDate(date, now), Size: humanSize(m.Size), Unread: unread(m),
			Flagged: hasFlag(m, maildir.FlagFlagged), Deleted: hasFlag(m, maildir.FlagTrashed), Answered: hasFlag(m, maildir.FlagReplied),
			Keywords: rowKeywords(name, m.Keywords)})
	}
	if q.Page > 1 {
		pq := q
		pq.Page--
		lp.Prev = listURL(name, pq)
	}
	if q.Page < pages {
		nq := q
		nq.Page++
		lp.Next = listURL(name, nq)
	}
	for _, s := range []struct{ key, label string }{{"from", "From"}, {"subject", "Subject"}, {"date", "Date"}, {"size", "Size"}} {
		sq := q
		sq.Page, sq.Sort, sq.Order = 1, s.key, ""
		link := sortLink{Label: s.label, Active: q.Sort == s.key}
		if link.Active {
			// A second click turns the order round.
			if q.desc() {
				sq.Order, link.Order = "asc", "desc"
			} else {
				sq.Order, link.Order = "desc", "asc"
			}
		}
		link.URL = listURL(name, sq)
		lp.Sorts = append(lp.Sorts, link)
	}
	p := h.pageFor(u, displayName(name), lp)
	p.Current = name
	h.render(w, http.StatusOK, "list.html", p)
}

// hasKeyword reports whether m has the keyword kw, compared without
// regard to case as IMAP compares keywords (RFC 9051 2.3.2).
func hasKeyword(m *maildir.Message, kw string) bool {
	return slices.ContainsFunc(m.Keywords, func(k string) bool { return strings.EqualFold(k, kw) })
}

// keywordsInUse are the different keywords of a folder's messages, sorted
// without regard to case.
func keywordsInUse(snap *maildir.Snapshot) []string {
	seen := map[string]bool{}
	var out []string
	for i := range snap.Messages {
		for _, k := range snap.Messages[i].Keywords {
			if l := strings.ToLower(k); !seen[l] && maildir.ValidKeyword(k) == nil {
				seen[l] = true
				out = append(out, k)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return out
}

// rowKeywords are a message's keywords as its row shows them.
func rowKeywords(folder string, kws []string) []rowKeyword {
	var out []rowKeyword
	for _, k := range kws {
		rk := rowKeyword{Name: clean(k)}
		if maildir.ValidKeyword(k) == nil {
			rk.URL = listURL(folder, listQuery{KW: k})
		}
		out = append(out, rk)
	}
	return out
}

// sortMessages orders msgs for the list. Date is the order of arrival
// (the UID order, as the folder's messages were delivered or moved in);
// ties in the other orders keep it.
func (h *Handler) sortMessages(f *maildir.Folder, msgs []*maildir.Message, q listQuery) {
	byUID := func(a, b *maildir.Message) int { return cmp.Compare(a.UID, b.UID) }
	var key func(m *maildir.Message) string
	switch q.Sort {
	case "from":
		key = func(m *maildir.Message) string { return strings.ToLower(h.sums.get(f, m).From) }
	case "subject":
		key = func(m *maildir.Message) string { return strings.ToLower(baseSubject(h.sums.get(f, m).Subject)) }
	}
	cmpFn := byUID
	switch {
	case key != nil:
		keys := make(map[*maildir.Message]string, len(msgs))
		for _, m := range msgs {
			keys[m] = key(m)
		}
		cmpFn = func(a, b *maildir.Message) int {
			if c := strings.Compare(keys[a], keys[b]); c != 0 {
				return c
			}
			return byUID(a, b)
		}
	case q.Sort == "size":
		cmpFn = func(a, b *maildir.Message) int {
			if c := cmp.Compare(a.Size, b.Size); c != 0 {
				return c
			}
			return byUID(a, b)
		}
	}
	if q.desc() {
		slices.SortStableFunc(msgs, func(a, b *maildir.Message) int { return cmpFn(b, a) })
	} else {
		slices.SortStableFunc(msgs, cmpFn)
	}
}

// baseSubject drops the "Re:" and "Fwd:" a reply adds, for sorting.
func baseSubject(s string) string {
	for {
		t := strings.TrimSpace(s)
		l := strings.ToLower(t)
		switch {
		case strings.HasPrefix(l, "re:"):
			s = t[3:]
		case strings.HasPrefix(l, "fw:"):
			s = t[3:]
		case strings.HasPrefix(l, "fwd:"):
			s = t[4:]
		default:
			return t
		}
	}
}

// search keeps the messages whose field contains the text, ignoring case.
func (h *Handler) search(f *maildir.Folder, msgs []*maildir.Message, q listQuery) []*maildir.Message {
	needle := strings.ToLower(q.Q)
	var out []*maildir.Message
	for _, m := range msgs {
		var hay string
		switch q.In {
		case "subject":
			hay = h.sums.get(f, m).Subject
		case "from":
			s := h.sums.get(f, m)
			hay = s.From + " " + s.FromAddr
		case "to":
			hay = h.sums.get(f, m).To
		case "body":
			hay = bodyText(f, m)
		}
		if strings.Contains(strings.ToLower(hay), needle) {
			out = append(out, m)
		}
	}
	return out
}

// bodyText is the decoded text of a message's text parts, for search.
func bodyText(f *maildir.Folder, m *maildir.Message) string {
	file, err := f.Open(m.Key)
	if err != nil {
		return ""
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return ""
	}
	root, err := mime.ParseStructure(file, st.Size())
	if err != nil {
		return ""
	}
	text, _ := root.Text(file)
	return text
}
