package admin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"postern/auth/passwd"
	"postern/internal/atomicfile"
	"postern/policy"
)

// SettingName is the setting that lists who may log in to the web admin:
// lines "NAME:HASH", the hash in any form the userdb accepts (auth/passwd).
const SettingName = "webadmin"

// maxAdminName bounds an admin's name; names are shown and logged.
const maxAdminName = 64

// Admins are the web admin's logins: name → password hash.
type Admins map[string]string

// ParseAdmins reads the lines of the webadmin setting. Every bad line is
// reported with its file and line; a name given twice is refused.
func ParseAdmins(lines []policy.Line) (Admins, error) {
	out := Admins{}
	var errs []error
	for _, ln := range lines {
		name, hash, ok := strings.Cut(ln.Text, ":")
		name, hash = strings.TrimSpace(name), strings.TrimSpace(hash)
		switch {
		case !ok || hash == "":
			errs = append(errs, ln.Errorf("webadmin: want NAME:HASH"))
		case checkAdminName(name) != nil:
			errs = append(errs, ln.Errorf("webadmin: %v", checkAdminName(name)))
		case out[name] != "":
			errs = append(errs, ln.Errorf("webadmin: %s given twice", name))
		default:
			out[name] = hash
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// checkAdminName accepts letters, digits and . _ - @ +, at most 64 of them.
func checkAdminName(name string) error {
	if name == "" || len(name) > maxAdminName {
		return fmt.Errorf("name %q: want 1 to %d characters", truncate(name, maxAdminName), maxAdminName)
	}
	for _, r := range name {
		ok := r == '.' || r == '_' || r == '-' || r == '@' || r == '+' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("name %q: character %q (letters, digits and . _ - @ + only)", truncate(name, maxAdminName), r)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// LoadAdmins reads the webadmin setting of configDir. A missing setting is
// no admins, not an error.
func LoadAdmins(configDir string) (Admins, error) {
	lines, err := policy.ReadSetting(configDir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return Admins{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseAdmins(lines)
}

// dummyHash is checked when the name is unknown, so that a login for a
// name that does not exist takes as long as one with a wrong password.
// Made at the first such login, not at every start of the binary.
var dummyHash = sync.OnceValue(func() string {
	h, _ := passwd.Hash("postern-no-such-admin", passwd.SchemeBcrypt)
	return h
})

// Check reports whether password is name's.
func (a Admins) Check(name, password string) bool {
	hash, ok := a[name]
	if !ok {
		passwd.Verify(dummyHash(), password)
		return false
	}
	good, err := passwd.Verify(hash, password)
	return err == nil && good
}

// SetPassword sets name's password in the webadmin file of configDir,
// adding the name when it is not there; other lines (comments included)
// are kept. The file is replaced atomically and kept private (0600). A
// webadmin directory is the admin's to edit by hand.
func SetPassword(configDir, name, password string) error {
	if err := checkAdminName(name); err != nil {
		return err
	}
	if password == "" {
		return errors.New("empty password")
	}
	hash, err := passwd.Hash(password, passwd.SchemeBcrypt)
	if err != nil {
		return err
	}
	path := filepath.Join(configDir, SettingName)
	if st, err := os.Stat(path + ".d"); err == nil && st.IsDir() {
		return fmt.Errorf("%s.d is a directory: add the line %s:HASH to one of its files by hand", path, name)
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = []byte("# Who may log in to the web admin (/admin/ on the web listener): NAME:HASH\n" +
			"# lines, any hash the userdb accepts. Set one with: postern webadmin passwd NAME\n")
	case err != nil:
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory: add the line %s:HASH to one of its files by hand", path, name)
		}
		return err
	}
	var out []string
	done := false
	text := strings.TrimSuffix(string(data), "\n")
	for _, l := range strings.Split(text, "\n") {
		n, _, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && !strings.HasPrefix(strings.TrimSpace(l), "#") && strings.TrimSpace(n) == name {
			if done {
				continue // a duplicate would make the file unreadable
			}
			l, done = name+":"+hash, true
		}
		out = append(out, l)
	}
	if !done {
		out = append(out, name+":"+hash)
	}
	return atomicfile.Write(path, []byte(strings.Join(out, "\n")+"\n"), 0o600)
}
