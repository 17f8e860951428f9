package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"postern/policy"
	"postern/policy/access"
	"postern/policy/aliases"
	"postern/web/websession"
)

// setting is one file the admin may edit. Only these names can be edited;
// the name in a URL only selects an entry of this table, and the path is
// always the configuration directory joined with the table's own name.
type setting struct {
	Name  string
	Title string
	Help  string
	// check reads the candidate file as the server would and refuses it
	// with the problems' file and line; the returned func runs once the
	// candidate has replaced the setting (aliases: the compiled index).
	check func(h *Handler, candidate string) (after func() error, err error)
}

var settings = []setting{
	{Name: "aliases", Title: "Aliases", Help: "Courier's aliases format: NAME: ADDRESS, ADDRESS... (docs/aliases.md). Checked and compiled as postern makealiases does.", check: checkAliases},
	{Name: "acceptmailfor", Title: "Accepted domains", Help: "The domains whose mail this server takes, one per line (docs/config.md).", check: checkWithConfig("acceptmailfor")},
	{Name: "hosteddomains", Title: "Hosted domains", Help: "Courier's hosteddomains: DOMAIN, or ALIAS<TAB>DOMAIN for a domain that shares another's accounts (docs/config.md).", check: checkWithConfig("hosteddomains")},
	{Name: "smtpaccess", Title: "SMTP access", Help: "Courier's smtpaccess: ADDRESS<TAB>allow[,VAR=value...] or deny (docs/smtpaccess.md).", check: checkAccess},
}

func settingNamed(name string) (setting, bool) {
	for _, s := range settings {
		if s.Name == name {
			return s, true
		}
	}
	return setting{}, false
}

func checkAliases(h *Handler, candidate string) (func() error, error) {
	a, err := aliases.LoadFile(h.opt.ConfigDir, candidate)
	if err != nil {
		return nil, err
	}
	return func() error {
		return a.WriteDB(filepath.Join(h.opt.ConfigDir, aliases.DefaultDBName), "", filepath.Join(h.opt.ConfigDir, aliases.SettingName))
	}, nil
}

// checkWithConfig loads the whole configuration with the candidate as
// setting name: a domain list is checked against the others (a hosted
// alias's target must be accepted, srsdomain must stay ours).
func checkWithConfig(name string) func(*Handler, string) (func() error, error) {
	return func(h *Handler, candidate string) (func() error, error) {
		_, err := policy.LoadWith(h.opt.ConfigDir, map[string]string{name: candidate})
		return nil, err
	}
}

func checkAccess(h *Handler, candidate string) (func() error, error) {
	lines, err := policy.ReadSetting(filepath.Dir(candidate), filepath.Base(candidate))
	if err != nil {
		return nil, err
	}
	_, err = access.Parse(lines)
	return nil, err
}

type settingData struct {
	Setting  setting
	Settings []setting
	Path     string
	Content  string
	Version  string // a digest of the file as shown, to refuse lost updates
	ReadOnly string // why the page cannot edit it
}

// current reads the setting's file: its text, the digest of its bytes,
// and why it cannot be edited here ("" when it can).
func (h *Handler) current(st setting) (path, content, digest, readOnly string, err error) {
	path = filepath.Join(h.opt.ConfigDir, st.Name)
	for _, p := range []string{path, path + ".d"} {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			lines, err := policy.ReadSetting(h.opt.ConfigDir, st.Name)
			var b strings.Builder
			for _, l := range lines {
				fmt.Fprintf(&b, "%s\n", l.Text)
			}
			return path, b.String(), "", p + " is a directory of files: edit them by hand, then reload", err
		}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return path, "", digestOf(nil), "", nil
	}
	if err != nil {
		return path, "", "", "", err
	}
	return path, string(data), digestOf(data), "", nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func (h *Handler) settingForm(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	st, ok := settingNamed(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	path, content, digest, ro, err := h.current(st)
	v := view{Title: st.Title, Section: st.Name, Data: settingData{Setting: st, Settings: settings, Path: path, Content: content, Version: digest, ReadOnly: ro}}
	if err != nil {
		v.Errors = errorLines(err)
	}
	h.render(w, s, http.StatusOK, "setting", v)
}

func (h *Handler) settingSave(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	st, ok := settingNamed(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	content := r.PostFormValue("content")
	path := filepath.Join(h.opt.ConfigDir, st.Name)
	refuse := func(status int, err error) {
		h.log.Warn("webadmin: setting not saved", "admin", s.Login, "setting", st.Name, "err", err)
		v := view{Title: st.Title, Section: st.Name, Errors: errorLines(err),
			Data: settingData{Setting: st, Settings: settings, Path: path, Content: content, Version: r.PostFormValue("version")}}
		h.render(w, s, status, "setting", v)
	}
	reloadErr, err := h.saveSetting(st, content, r.PostFormValue("version"))
	if err != nil {
		refuse(http.StatusBadRequest, err)
		return
	}
	msg := st.Name + " saved and the server reloaded"
	if reloadErr != nil {
		msg = st.Name + " saved, but the reload was refused (the running configuration stays): " + reloadErr.Error()
	}
	h.done(w, r, s, "setting-"+st.Name, msg, Prefix+"settings/"+st.Name, "setting", st.Name)
}

// saveSetting checks content as the setting's parser reads it and, when it
// passes, replaces the file atomically and reloads the server. On any
// problem the old file stays as it was.
func (h *Handler) saveSetting(st setting, content, version string) (reloadErr, err error) {
	content = strings.ReplaceAll(content, "\r\n", "\n")
	switch {
	case len(content) > maxSettingSize:
		return nil, fmt.Errorf("%s: longer than %d bytes", st.Name, maxSettingSize)
	case !utf8.ValidString(content):
		return nil, fmt.Errorf("%s: not valid UTF-8", st.Name)
	case strings.ContainsRune(content, 0):
		return nil, fmt.Errorf("%s: contains a NUL byte", st.Name)
	}
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	h.edit.Lock()
	defer h.edit.Unlock()
	path, _, digest, ro, err := h.current(st)
	switch {
	case err != nil:
		return nil, err
	case ro != "":
		return nil, errors.New(ro)
	case version != digest:
		return nil, fmt.Errorf("%s was changed by someone else since this page was loaded; reload the page and make the change again", path)
	}
	mode := os.FileMode(0o640)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	// The candidate lives beside the setting (a dot name no setting has,
	// skipped in setting directories), so the rename is atomic.
	tmp, err := os.CreateTemp(h.opt.ConfigDir, "."+st.Name+".webadmin-*")
	if err != nil {
		return nil, err
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath) // a no-op once renamed
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	after, err := st.check(h, tmpPath)
	if err != nil {
		// The problems name the candidate; the admin knows the setting.
		return nil, errors.New(strings.ReplaceAll(err.Error(), tmpPath, path))
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d, err := os.Open(h.opt.ConfigDir); err == nil {
		d.Sync()
		d.Close()
	}
	if after != nil {
		if err := after(); err != nil {
			return nil, fmt.Errorf("%s saved, but: %w", path, err)
		}
	}
	return h.reloadServer(), nil
}
