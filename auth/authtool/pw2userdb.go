package authtool

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

const pw2userdbUsage = `Usage: pw2userdb [--passwd=FILE] [--shadow=FILE] [--noshadow] [--nouid] [--domain=DOMAIN]

Courier's pw2userdb: prints the accounts of a passwd(5) file (default
/etc/passwd) in userdb format, with their password hashes from the shadow
file (default /etc/shadow, when it exists), for CONFIGDIR/userdb or a file
in it; then run makeuserdb. Each account is followed by its
"uid=<TAB>name" line unless --nouid. --domain appends @DOMAIN to every
name. Accounts come out in the order of the passwd file.

Exit status: 0, or 1 with a message. Documented in docs/userdbtool.md.
`

// Pw2userdbMain is Courier's pw2userdb (see pw2userdbUsage). A line of
// the passwd file that cannot be an account (fewer than seven fields, an
// empty name, a uid or gid that is not a number) is reported on stderr and
// skipped; a "|" in the GECOS field becomes ".", as in Courier's.
func Pw2userdbMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pw2userdb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), pw2userdbUsage) }
	passwdFile := fs.String("passwd", "/etc/passwd", "passwd `file`")
	shadowFile := fs.String("shadow", "/etc/shadow", "shadow `file`")
	noShadow := fs.Bool("noshadow", false, "do not read the shadow file")
	noUID := fs.Bool("nouid", false, "no uid=<TAB>name lines")
	domain := fs.String("domain", "", "append @`domain` to every name")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, "pw2userdb: Invalid options.\n", pw2userdbUsage)
		return 1
	}
	type acct struct{ name, pw, uid, gid, gecos, home, shell string }
	var accts []acct
	index := map[string]int{}
	err := eachLine(*passwdFile, func(n int, line string) {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			return
		}
		f := strings.Split(line, ":")
		if len(f) < 7 || f[0] == "" || !isID(f[2]) || !isID(f[3]) || strings.ContainsAny(line, "\t") {
			fmt.Fprintf(stderr, "pw2userdb: %s:%d: not a passwd entry, skipped\n", *passwdFile, n)
			return
		}
		a := acct{name: f[0], uid: f[2], gid: f[3], gecos: strings.ReplaceAll(f[4], "|", "."), home: f[5], shell: f[6]}
		if f[1] != "x" {
			a.pw = f[1]
		}
		if i, dup := index[a.name]; dup {
			accts[i] = a // the later line wins, as in Courier's
			return
		}
		index[a.name] = len(accts)
		accts = append(accts, a)
	})
	if err != nil {
		fmt.Fprintf(stderr, "pw2userdb: %v\n", err)
		return 1
	}
	if !*noShadow {
		if st, err := os.Stat(*shadowFile); err == nil && st.Mode().IsRegular() {
			err := eachLine(*shadowFile, func(_ int, line string) {
				if strings.HasPrefix(line, "#") {
					return
				}
				f := strings.Split(line, ":")
				if len(f) < 2 {
					return
				}
				if i, ok := index[f[0]]; ok {
					accts[i].pw = f[1]
				}
			})
			if err != nil {
				fmt.Fprintf(stderr, "pw2userdb: %v\n", err)
				return 1
			}
		}
	}
	suffix := ""
	if *domain != "" {
		suffix = "@" + *domain
	}
	w := bufio.NewWriter(stdout)
	for _, a := range accts {
		fmt.Fprintf(w, "%s%s\tuid=%s|gid=%s|home=%s", a.name, suffix, a.uid, a.gid, a.home)
		if a.shell != "" {
			fmt.Fprintf(w, "|shell=%s", a.shell)
		}
		if a.pw != "" && !strings.ContainsAny(a.pw, "|") {
			fmt.Fprintf(w, "|systempw=%s", a.pw)
		}
		if a.gecos != "" {
			fmt.Fprintf(w, "|gecos=%s", a.gecos)
		}
		fmt.Fprintln(w)
		if !*noUID {
			fmt.Fprintf(w, "%s=\t%s\n", a.uid, a.name)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "pw2userdb: %v\n", err)
		return 1
	}
	return 0
}

func eachLine(path string, fn func(n int, line string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		fn(n, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", path, n+1, err)
	}
	return nil
}

// isID reports whether s is a uid or gid: a decimal number that fits.
func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
