package pamauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"postern/auth"
)

// DefaultPasswdFile is where the system's accounts are listed.
const DefaultPasswdFile = "/etc/passwd"

// MinListedUID is the lowest uid Enumerate lists: Courier's authpam (and
// authpwd, authshadow) leave out the accounts below 100, the system's own.
const MinListedUID = 100

// maxPasswdLine bounds one line of the passwd file; a longer one is no
// account and is left out.
const maxPasswdLine = 64 << 10

var _ auth.Enumerator = (*Module)(nil)

// Enumerate calls each with the system's accounts (auth.Enumerator), as
// Courier's authpam lists them with getpwent: every entry of the passwd
// file (Config.PasswdFile, else /etc/passwd) with a uid of MinListedUID or
// more, in the file's order; the Maildir is the one in the home. PAM has
// no way to list accounts, so accounts that only NSS modules (LDAP, SSSD)
// know are not listed. An entry a lookup could not use (a name with "@",
// blanks or control characters, ids that are not numbers, a relative home)
// is logged and left out, and so are NIS "+"/"-" lines.
func (m *Module) Enumerate(ctx context.Context, each func(*auth.Account) error) error {
	path := m.cfg.PasswdFile
	if path == "" {
		path = DefaultPasswdFile
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("authpam: %w: %w", auth.ErrTemporary, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 4096)
	for num := 1; ; num++ {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, errLongLine) {
			m.log.Warn("passwd line too long; left out", "file", path, "line", num)
			continue
		}
		if err != nil {
			return fmt.Errorf("authpam: %s: %w: %w", path, auth.ErrTemporary, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		a, err := ParsePasswdLine(line)
		if err != nil {
			m.log.Warn("passwd entry left out", "file", path, "line", num, "err", err)
			continue
		}
		if a == nil || a.UID < MinListedUID {
			continue
		}
		if err := each(a); err != nil {
			return err
		}
	}
}

var errLongLine = errors.New("line too long")

// readLine reads one line without its newline; a line over maxPasswdLine
// is skipped to its end and reported as errLongLine.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > maxPasswdLine+1 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return "", err
			}
			return "", errLongLine
		}
		b = append(b, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(b) == 0 {
				return "", io.EOF
			}
			return string(b), nil
		case err != nil:
			return "", err
		}
		return strings.TrimSuffix(string(b), "\n"), nil
	}
}

// ParsePasswdLine reads one line of a passwd(5) file
// (name:password:uid:gid:gecos:home[:shell]) into the account a lookup
// returns for it. Blank lines, comments and NIS "+"/"-" lines are (nil,
// nil); an entry no lookup could use is an error saying why.
func ParsePasswdLine(line string) (*auth.Account, error) {
	line = strings.TrimSuffix(line, "\r")
	if strings.TrimSpace(line) == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
		return nil, nil
	}
	// The shell may be left out (and may hold colons), as getpwnam and
	// os/user read the file.
	f := strings.SplitN(line, ":", 7)
	if len(f) < 6 {
		return nil, fmt.Errorf("%d fields, want 7 (name:password:uid:gid:gecos:home:shell)", len(f))
	}
	if !systemName(f[0]) {
		return nil, fmt.Errorf("%q is not a login name", f[0])
	}
	uid, err1 := strconv.ParseUint(f[2], 10, 31)
	gid, err2 := strconv.ParseUint(f[3], 10, 31)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%s: uid %q or gid %q is not a number", f[0], f[2], f[3])
	}
	if !strings.HasPrefix(f[5], "/") || strings.IndexFunc(f[5], unicode.IsControl) >= 0 {
		return nil, fmt.Errorf("%s: home %q is not an absolute path", f[0], f[5])
	}
	a := &auth.Account{Name: f[0], UID: int(uid), GID: int(gid), Home: f[5], Module: "authpam",
		Options: map[string]string{}, Fields: map[string]string{}}
	// As os/user's lookup: the full name is the GECOS field up to its
	// first comma.
	if name, _, _ := strings.Cut(f[4], ","); name != "" && strings.IndexFunc(name, unicode.IsControl) < 0 {
		a.Fields["gecos"] = name
	}
	return a, nil
}
