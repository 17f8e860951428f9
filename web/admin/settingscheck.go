package admin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"postern/policy"
)

// checkChange reads the whole configuration as the server would with the
// change made, in a copy of the configuration directory: links to every
// entry but the changed setting, which is written out. The change is
// refused when the copy has a problem that names the changed setting, or
// one the configuration on disk does not have already (a domain an alias
// needs dropped from acceptmailfor, a check's file "filters" needs
// emptied). Problems elsewhere that were there before do not block a fix.
func (h *Handler) checkChange(st setting, cur settingState, ch change) error {
	dir, err := filepath.Abs(h.opt.ConfigDir)
	if err != nil {
		return err
	}
	copyDir, err := os.MkdirTemp("", "postern-webadmin-*")
	if err != nil {
		return fmt.Errorf("checking %s: %w", st.Name, err)
	}
	defer os.RemoveAll(copyDir) // the links, not what they point to
	if err := buildCopy(dir, copyDir, cur, ch); err != nil {
		return fmt.Errorf("checking %s: %w", st.Name, err)
	}
	before := map[string]bool{}
	for _, l := range h.problems(dir, dir) {
		before[l] = true
	}
	own := []string{filepath.Join(dir, st.Name), filepath.Join(dir, st.Name+".d")}
	var refused []string
	for _, l := range h.problems(copyDir, dir) {
		if !before[l] || namesAny(l, own) {
			refused = append(refused, l)
		}
	}
	if len(refused) > 0 {
		return errors.New(strings.Join(refused, "\n"))
	}
	return nil
}

// buildCopy fills copyDir with links to dir's entries and the changed
// setting written out (for a directory setting: a directory of links to
// its files, the changed one written or left out).
func buildCopy(dir, copyDir string, cur settingState, ch change) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	changed := filepath.Base(cur.Path)
	for _, e := range entries {
		if e.Name() != changed {
			if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(copyDir, e.Name())); err != nil {
				return err
			}
		}
	}
	if !cur.Dir {
		return os.WriteFile(filepath.Join(copyDir, changed), []byte(ch.content), 0o600)
	}
	sub := filepath.Join(copyDir, changed)
	if err := os.Mkdir(sub, 0o700); err != nil {
		return err
	}
	files, err := os.ReadDir(cur.Path)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.Name() != ch.file {
			if err := os.Symlink(filepath.Join(cur.Path, f.Name()), filepath.Join(sub, f.Name())); err != nil {
				return err
			}
		}
	}
	if ch.remove {
		return nil
	}
	return os.WriteFile(filepath.Join(sub, ch.file), []byte(ch.content), 0o600)
}

// problems reads the configuration in dir as the server does — policy.Load
// or the server's own check (Options.CheckConfig), and every listed
// setting's reader — and returns one line per problem, FILE:LINE: reason,
// with dir's paths written as under shownDir. A problem in a secret
// setting's file is named, not quoted.
func (h *Handler) problems(dir, shownDir string) []string {
	var errs []error
	if h.opt.CheckConfig != nil {
		errs = append(errs, h.opt.CheckConfig(dir))
	} else {
		_, err := policy.Load(dir)
		errs = append(errs, err)
	}
	for _, s := range settings {
		if s.check != nil {
			errs = append(errs, s.check(dir))
		}
	}
	var secret []string
	for _, s := range settings {
		if s.Secret {
			secret = append(secret, filepath.Join(shownDir, s.Name), filepath.Join(shownDir, s.Name+".d"))
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, err := range errs {
		if err == nil {
			continue
		}
		for _, l := range errorLines(err) {
			if dir != shownDir {
				l = strings.ReplaceAll(l, dir, shownDir)
			}
			if namesAny(l, secret) {
				l = redactSecret(l, secret)
			}
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// namesAny reports whether a problem line names one of paths (the file,
// or a file of that directory).
func namesAny(line string, paths []string) bool {
	for _, p := range paths {
		if strings.Contains(line, p+":") || strings.Contains(line, p+"/") {
			return true
		}
	}
	return false
}

// redactSecret keeps only which secret file has a problem: its reason
// may quote a line of it.
func redactSecret(line string, paths []string) string {
	for _, p := range paths {
		if i := strings.Index(line, p); i >= 0 {
			rest := line[i+len(p):]
			if j := strings.IndexAny(rest, ": "); j >= 0 {
				rest = rest[:j]
			}
			return line[:i] + p + rest + ": a problem in a file that holds secrets (not shown here; run postern config on the server)"
		}
	}
	return line
}
