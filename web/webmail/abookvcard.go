package webmail

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The address book's vCard pages: export of every entry as one .vcf
// file, and import of one, merged into the book (vcard.go reads and
// writes the format).

// maxReportLines bounds each list of the import report.
const maxReportLines = 200

// importReport says what an import did.
type importReport struct {
	Added    []string // the entries added: "Name (nick)"
	Count    int      // entries added (Added may show fewer)
	NotRead  int      // cards and lines not imported (Skipped may show fewer)
	Same     int      // cards already in the book as they are
	Skipped  []string // cards not imported, and why
	Notes    []string // addresses left out of cards that were imported
	More     int      // report lines beyond maxReportLines, not shown
	Error    string   // the book was not changed: why
	Filename string
}

func (rp *importReport) skip(s string) {
	rp.NotRead++
	rp.line(&rp.Skipped, s)
}

func (rp *importReport) line(list *[]string, s string) {
	if len(rp.Added)+len(rp.Skipped)+len(rp.Notes) >= maxReportLines {
		rp.More++
		return
	}
	*list = append(*list, s)
}

// sameAddresses tells whether two entries hold the same addresses (in
// any order, any case) with the same names.
func sameAddresses(a, b *bookEntry) bool {
	key := func(e *bookEntry) []string {
		var k []string
		for _, x := range e.Addrs {
			k = append(k, strings.ToLower(x.Addr)+"\x00"+x.Name)
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(key(a), key(b))
}

// importVCards merges the cards into b: a card becomes a new entry under
// its NICKNAME (else one made of its first address, numbered 2, 3, ...
// when taken). A card that is in the book already (the same nickname, or
// with a made nickname any entry, with the same names and addresses) is
// counted, not added again; a card whose own nickname another entry has,
// one without a usable address, and one that does not fit are skipped
// with the reason. Existing entries are never changed.
func (b *addressBook) importVCards(cards []vcard, problems []bookProblem, rp *importReport) {
	for _, p := range problems {
		rp.skip(p.String())
	}
	for _, c := range cards {
		ve, err := vcardToEntry(c)
		where := fmt.Sprintf("vCard at line %d", c.line)
		if ve != nil && ve.label != "" {
			where += fmt.Sprintf(" (%s)", ve.label)
		}
		if err != nil {
			rp.skip(where + ": " + sentence(err))
			continue
		}
		e := ve.entry
		if !ve.nickGiven && slices.ContainsFunc(b.entries(), func(o *bookEntry) bool { return sameAddresses(o, e) }) {
			rp.Same++
			continue
		}
		if old := b.find(e.Nick); old != nil {
			if sameAddresses(old, e) {
				rp.Same++
				continue
			}
			if ve.nickGiven {
				rp.skip(fmt.Sprintf("%s: the nickname %s is taken by another entry (edit that one, or change the nickname in the file).", where, e.Nick))
				continue
			}
			base := e.Nick
			for i := 2; ; i++ {
				suffix := strconv.Itoa(i)
				cand := base
				if len(cand)+len(suffix) > maxNickLen {
					cand = strings.ToValidUTF8(cand[:maxNickLen-len(suffix)], "")
				}
				cand += suffix
				if b.find(cand) == nil {
					e.Nick = cand
					break
				}
				if i >= 1000 {
					e.Nick = ""
					break
				}
			}
			if e.Nick == "" {
				rp.skip(fmt.Sprintf("%s: no free nickname like %s.", where, base))
				continue
			}
		}
		if err := b.put("", e); err != nil {
			if errors.Is(err, errBookFull) {
				rp.skip(fmt.Sprintf("%s: the address book is full (%d entries).", where, maxBookEntries))
			} else {
				rp.skip(where + ": " + sentence(err))
			}
			continue
		}
		rp.Count++
		rp.line(&rp.Added, fmt.Sprintf("%s (%s)", e.Name(), e.Nick))
		for _, d := range ve.dropped {
			rp.line(&rp.Notes, fmt.Sprintf("%s: left out %s.", where, d))
		}
	}
}

// abookExport serves every readable entry as vCard 4.0, a download.
func (h *Handler) abookExport(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	book, err := h.loadBook(u)
	if err != nil {
		status, msg := h.bookTrouble(u, err)
		h.fail(w, r, u, status, msg)
		return
	}
	data := formatVCards(book.entries())
	downloadHeaders(w, "text/vcard; charset=utf-8", "addressbook.vcf")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	h.log.Info("webmail: address book exported", "user", u.s.Login, "entries", book.count())
	_, _ = w.Write(data)
}

// abookImport reads an uploaded vCard file into the address book and
// shows what it did.
func (h *Handler) abookImport(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxVCardFile+64<<10)
	if err := r.ParseMultipartForm(2 << 20); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			if s := h.sessions.Session(r); s != nil {
				h.fail(w, r, &user{s: s}, http.StatusRequestEntityTooLarge, fmt.Sprintf("The file is too large: at most %d KiB.", maxVCardFile>>10))
				return
			}
		}
		h.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	defer r.MultipartForm.RemoveAll()
	u := h.session(w, r)
	if u == nil {
		return
	}
	rp := &importReport{}
	show := func(status int) {
		h.render(w, status, "abookimport.html", h.pageFor(u, "Address book import", rp))
	}
	files := r.MultipartForm.File["vcf"]
	if len(files) != 1 || files[0].Size == 0 {
		rp.Error = "Choose a vCard file (.vcf) to import."
		show(http.StatusBadRequest)
		return
	}
	rp.Filename = clean(uploadName(files[0].Filename))
	f, err := files[0].Open()
	if err != nil {
		rp.Error = "The file could not be read."
		show(http.StatusBadRequest)
		return
	}
	data, err := io.ReadAll(io.LimitReader(f, maxVCardFile+1))
	f.Close()
	if err != nil || len(data) > maxVCardFile {
		rp.Error = fmt.Sprintf("The file could not be read, or is larger than %d KiB.", maxVCardFile>>10)
		show(http.StatusRequestEntityTooLarge)
		return
	}
	cards, problems := parseVCards(data)
	h.bookMu.Lock()
	defer h.bookMu.Unlock()
	book, err := h.loadBook(u)
	if err != nil {
		status, msg := h.bookTrouble(u, err)
		rp.Error = msg
		show(status)
		return
	}
	book.importVCards(cards, problems, rp)
	if rp.Count > 0 {
		if err := writeAddressBook(u.md.Root(), book); err != nil {
			if errors.Is(err, errBookTooBig) {
				rp.Error = fmt.Sprintf("Your address book would be larger than %d KiB: nothing was imported.", maxBookFile>>10)
			} else {
				h.log.Error("webmail: write address book", "user", u.s.Login, "err", err)
				rp.Error = "Your address book could not be saved now: nothing was imported. Try again later."
			}
			rp.Added, rp.Count, rp.Same, rp.Notes, rp.Skipped, rp.NotRead = nil, 0, 0, nil, nil, 0
			show(http.StatusServiceUnavailable)
			return
		}
	}
	h.log.Info("webmail: address book import", "user", u.s.Login, "cards", len(cards), "added", rp.Count, "same", rp.Same, "skipped", rp.NotRead)
	show(http.StatusOK)
}
