package webmail

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"postern/internal/atomicfile"
)

// prefsFile keeps the user's webmail preferences in the top directory of
// the Maildir, beside the address book, so that they follow the mailbox
// (to another server, through a backup). It is Postern's own file, not
// sqwebmail's sqwebmail-config, whose options it does not know: one
// "name=value" line a preference, unknown lines kept as they are.
const prefsFile = "postern-webmail-prefs"

// maxPrefsFile bounds the file read: preferences are a few lines.
const maxPrefsFile = 16 << 10

// prefs are a user's preferences.
type prefs struct {
	// ComposeHTML makes new messages, replies and forwards start in the
	// rich text editor (compose=html); plain text is the default.
	ComposeHTML bool
	other       []string // lines this version does not know, kept
}

// readPrefs reads the preferences of the Maildir at root; a missing or
// unreadable file is the defaults (preferences never stop the webmail).
// As the address book, the file is opened without following a link and
// must be a regular file.
func readPrefs(root string) (prefs, error) {
	var p prefs
	path := filepath.Join(root, prefsFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("preferences %s: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return p, fmt.Errorf("preferences %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPrefsFile))
	if err != nil {
		return p, fmt.Errorf("preferences %s: %w", path, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch strings.TrimSpace(name) {
		case "":
		case "compose":
			p.ComposeHTML = strings.TrimSpace(value) == "html"
		default:
			p.other = append(p.other, line)
		}
	}
	return p, nil
}

// writePrefs replaces the file atomically.
func writePrefs(root string, p prefs) error {
	var b strings.Builder
	format := "plain"
	if p.ComposeHTML {
		format = "html"
	}
	b.WriteString("compose=" + format + "\n")
	for _, l := range p.other {
		b.WriteString(l + "\n")
	}
	if err := atomicfile.Write(filepath.Join(root, prefsFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("preferences %s: %w", root, err)
	}
	return nil
}

// userPrefs are the logged-in user's preferences, the defaults when the
// file cannot be read (logged).
func (h *Handler) userPrefs(u *user) prefs {
	p, err := readPrefs(u.md.Root())
	if err != nil {
		h.log.Warn("webmail: preferences", "user", u.s.Login, "err", err)
	}
	return p
}

type prefsPage struct {
	ComposeHTML bool
	Error       string
}

func (h *Handler) prefsForm(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	h.render(w, http.StatusOK, "prefs.html", h.pageFor(u, "Preferences", &prefsPage{ComposeHTML: h.userPrefs(u).ComposeHTML}))
}

func (h *Handler) savePrefs(w http.ResponseWriter, r *http.Request) {
	limitForm(w, r)
	u := h.session(w, r)
	if u == nil {
		return
	}
	p := h.userPrefs(u)
	switch r.PostFormValue("compose") {
	case "html":
		p.ComposeHTML = true
	case "plain":
		p.ComposeHTML = false
	default:
		h.render(w, http.StatusBadRequest, "prefs.html", h.pageFor(u, "Preferences", &prefsPage{ComposeHTML: p.ComposeHTML, Error: "Choose plain text or HTML."}))
		return
	}
	if err := writePrefs(u.md.Root(), p); err != nil {
		h.log.Error("webmail: save preferences", "user", u.s.Login, "err", err)
		h.render(w, http.StatusServiceUnavailable, "prefs.html", h.pageFor(u, "Preferences", &prefsPage{ComposeHTML: p.ComposeHTML, Error: "The preferences could not be saved now. Try again later."}))
		return
	}
	h.log.Info("webmail: preferences saved", "user", u.s.Login, "compose_html", p.ComposeHTML)
	h.flash(w, r, u, "Preferences saved.", Prefix+"prefs")
}
