package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"postern/internal/atomicfile"
	"postern/policy"
	"postern/web/websession"
)

func settingNamed(name string) (setting, bool) {
	for _, s := range settings {
		if s.Name == name {
			return s, true
		}
	}
	return setting{}, false
}

// settingState is a setting as it is on disk: one file, or a directory
// (NAME or NAME.d) of files read in order and joined (policy.ReadSetting).
type settingState struct {
	Path    string // the file or the directory
	Dir     bool
	Content string // a file's text
	Version string // a digest of the file as shown, to refuse lost updates
	Files   []settingFile
	// ReadOnly says why the page cannot edit it ("" when it can).
	ReadOnly string
}

// settingFile is one file of a directory setting.
type settingFile struct {
	Name     string
	Content  string
	Version  string
	ReadOnly string
}

// state reads the setting from the configuration directory. A secret
// setting is never read.
func (h *Handler) state(st setting) (settingState, error) {
	base := filepath.Join(h.opt.ConfigDir, st.Name)
	if st.Secret {
		return settingState{Path: base, ReadOnly: "holds secrets: never shown or edited here; edit it on the server"}, nil
	}
	for _, p := range []string{base, base + ".d"} {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			continue
		}
		s := settingState{Path: p, Dir: true}
		files, err := policy.SettingFiles(h.opt.ConfigDir, st.Name)
		if err != nil {
			return s, err
		}
		for _, f := range files {
			sf := settingFile{Name: filepath.Base(f)}
			sf.Content, sf.Version, sf.ReadOnly, err = readEditable(f)
			if err != nil {
				return s, err
			}
			s.Files = append(s.Files, sf)
		}
		return s, nil
	}
	s := settingState{Path: base}
	var err error
	s.Content, s.Version, s.ReadOnly, err = readEditable(base)
	if errors.Is(err, fs.ErrNotExist) {
		return settingState{Path: base, Version: digestOf(nil)}, nil
	}
	return s, err
}

// readEditable reads a file of a setting, and why it cannot be replaced
// here: a link would be replaced by a file, leaving its target as it was.
func readEditable(path string) (content, version, readOnly string, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", "", "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		readOnly = fmt.Sprintf("%s is a link to %s: edit the file it points to by hand, then reload", path, target)
	} else if !fi.Mode().IsRegular() {
		return "", "", "", fmt.Errorf("%s: not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", "", err
	}
	if len(data) > maxSettingSize {
		return "", "", "", fmt.Errorf("%s: longer than %d bytes; edit it on the server", path, maxSettingSize)
	}
	return string(data), digestOf(data), readOnly, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// settingGroup is a heading of the settings list.
type settingGroup struct {
	Name     string
	Settings []setting
}

func groupedSettings() []settingGroup {
	var out []settingGroup
	for _, s := range settings {
		if len(out) == 0 || out[len(out)-1].Name != s.Group {
			out = append(out, settingGroup{Name: s.Group})
		}
		out[len(out)-1].Settings = append(out[len(out)-1].Settings, s)
	}
	return out
}

func (h *Handler) settingList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.render(w, s, http.StatusOK, "settings", view{Title: "Settings", Section: "settings", Data: groupedSettings()})
}

type settingData struct {
	Setting settingState
	Info    setting
	File    *settingFile // the file of a directory setting being edited or added
	NewFile bool
	Content string // the text in the form (the refused one, after a refusal)
	Version string
}

func (h *Handler) settingForm(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	st, ok := settingNamed(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	cur, err := h.state(st)
	d := settingData{Setting: cur, Info: st, Content: cur.Content, Version: cur.Version}
	if name := r.URL.Query().Get("file"); name != "" && err == nil && cur.Dir {
		f, found := fileNamed(cur, name)
		if !found {
			http.NotFound(w, r)
			return
		}
		d.File, d.Content, d.Version = &f, f.Content, f.Version
	}
	v := view{Title: st.Title, Section: "settings", Data: d}
	if err != nil {
		v.Errors = errorLines(err)
	}
	h.render(w, s, http.StatusOK, "setting", v)
}

func fileNamed(cur settingState, name string) (settingFile, bool) {
	for _, f := range cur.Files {
		if f.Name == name {
			return f, true
		}
	}
	return settingFile{}, false
}

// settingSave takes the setting page's forms: the text of a file setting;
// for a directory setting, the text of one of its files (file=NAME), a
// new file (new=1), or a file's removal (delete=1).
func (h *Handler) settingSave(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	st, ok := settingNamed(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	ch := change{
		file:    r.PostFormValue("file"),
		content: strings.ReplaceAll(r.PostFormValue("content"), "\r\n", "\n"),
		version: r.PostFormValue("version"),
		create:  r.PostFormValue("new") != "",
		remove:  r.PostFormValue("delete") != "",
	}
	reloadErr, err := h.changeSetting(st, ch)
	if err != nil {
		h.log.Warn("webadmin: setting not saved", "admin", s.Login, "setting", st.Name, "file", ch.file, "err", err)
		cur, _ := h.state(st)
		d := settingData{Setting: cur, Info: st, Content: ch.content, Version: ch.version}
		if cur.Dir {
			d.File, d.NewFile = &settingFile{Name: ch.file}, ch.create
		}
		h.render(w, s, http.StatusBadRequest, "setting", view{Title: st.Title, Section: "settings", Errors: errorLines(err), Data: d})
		return
	}
	what := st.Name
	if ch.file != "" {
		what = st.Name + " file " + ch.file
	}
	verb := " saved"
	if ch.remove {
		verb = " deleted"
	}
	msg := what + verb + " and the server reloaded"
	if reloadErr != nil {
		msg = what + verb + ", but the reload was refused (the running configuration stays): " + reloadErr.Error()
	}
	h.done(w, r, s, "setting-"+st.Name, msg, Prefix+"settings/"+st.Name, "setting", st.Name, "file", ch.file)
}

// change is one edit of a setting: its file's text, or for a directory
// setting one file's text, a new file or a file's removal.
type change struct {
	file    string // "" for a file setting
	content string
	version string // the digest the page showed ("" for a new file)
	create  bool
	remove  bool
}

// changeSetting checks the change as the server would read the whole
// configuration with it and, when it passes, makes it atomically and
// reloads the server. On any problem the configuration stays as it was.
func (h *Handler) changeSetting(st setting, ch change) (reloadErr, err error) {
	if st.Secret {
		return nil, fmt.Errorf("%s holds secrets and is not edited here", st.Name)
	}
	if !ch.remove {
		switch {
		case len(ch.content) > maxSettingSize:
			return nil, fmt.Errorf("%s: longer than %d bytes", st.Name, maxSettingSize)
		case !utf8.ValidString(ch.content):
			return nil, fmt.Errorf("%s: not valid UTF-8", st.Name)
		case strings.ContainsRune(ch.content, 0):
			return nil, fmt.Errorf("%s: contains a NUL byte", st.Name)
		}
		if ch.content != "" && !strings.HasSuffix(ch.content, "\n") {
			ch.content += "\n"
		}
	}
	h.edit.Lock()
	defer h.edit.Unlock()
	cur, err := h.state(st)
	if err != nil {
		return nil, err
	}
	target, mode, err := h.target(cur, ch)
	if err != nil {
		return nil, err
	}
	if err := h.checkChange(st, cur, ch); err != nil {
		return nil, err
	}
	if ch.remove {
		err = removeSynced(target)
	} else {
		err = atomicfile.Write(target, []byte(ch.content), mode)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	if st.after != nil {
		if err := st.after(h); err != nil {
			return nil, fmt.Errorf("%s saved, but: %w", target, err)
		}
	}
	return h.reloadServer(), nil
}

// target is the file a change writes or removes, with the mode a written
// file gets (the old file's, else a sibling's, else 0640). It refuses a
// change made on a page older than the file.
func (h *Handler) target(cur settingState, ch change) (string, os.FileMode, error) {
	stale := func(p string) error {
		return fmt.Errorf("%s was changed by someone else since this page was loaded; reload the page and make the change again", p)
	}
	mode := os.FileMode(0o640)
	if !cur.Dir {
		switch {
		case ch.file != "" || ch.create || ch.remove:
			return "", 0, fmt.Errorf("%s is a single file, not a directory of files", cur.Path)
		case cur.ReadOnly != "":
			return "", 0, errors.New(cur.ReadOnly)
		case ch.version != cur.Version:
			return "", 0, stale(cur.Path)
		}
		if fi, err := os.Stat(cur.Path); err == nil {
			mode = fi.Mode().Perm()
		}
		return cur.Path, mode, nil
	}
	if err := checkDropInName(ch.file); err != nil {
		return "", 0, fmt.Errorf("%s: %w", cur.Path, err)
	}
	p := filepath.Join(cur.Path, ch.file)
	f, found := fileNamed(cur, ch.file)
	switch {
	case ch.create && found:
		return "", 0, fmt.Errorf("%s exists already: edit it instead", p)
	case ch.create:
		if _, err := os.Lstat(p); err == nil {
			return "", 0, fmt.Errorf("%s exists already and is not a file the server reads", p)
		}
		if len(cur.Files) > 0 {
			if fi, err := os.Stat(filepath.Join(cur.Path, cur.Files[0].Name)); err == nil {
				mode = fi.Mode().Perm()
			}
		}
		return p, mode, nil
	case !found:
		return "", 0, fmt.Errorf("%s: no such file in the setting", p)
	case f.ReadOnly != "" && !ch.remove:
		return "", 0, errors.New(f.ReadOnly)
	case ch.version != f.Version:
		return "", 0, stale(p)
	}
	if fi, err := os.Stat(p); err == nil {
		mode = fi.Mode().Perm()
	}
	return p, mode, nil
}

func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
