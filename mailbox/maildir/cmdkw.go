package maildir

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"postern/internal/strerror"
	"strings"
	"time"
)

// maildirkwUsage is Courier's maildirkw usage line, byte for byte.
const maildirkwUsage = "Usage: maildirkw [ options ] maildir [+/-]flag [+/-]flag...\n"

// MaildirkwMain is Courier's maildirkw(1): set, add (-a) or remove (-r) a
// message's keywords in the folder directory's courierimapkeywords/, or
// list every message's keywords (-L). -c makes keywords case-sensitive;
// -l (Courier's IMAP_USELOCKS locking) is accepted: every change here is a
// rename, which needs no lock. Exit 0 on success, 1 on failure or bad
// usage, as Courier's.
func MaildirkwMain(args []string, stdout, stderr io.Writer) int {
	var list, add, remove, caseSensitive bool
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, c := range a[1:] {
			switch c {
			case 'L':
				list = true
			case 'a':
				add = true
			case 'r':
				remove = true
			case 'c':
				caseSensitive = true
			case 'l':
			default:
				fmt.Fprintf(stderr, "maildirkw: invalid option -- '%c'\n", c)
				fmt.Fprint(stdout, maildirkwUsage)
				return 1
			}
		}
	}
	rest := args[i:]
	now := time.Now()
	if list {
		if len(rest) < 1 {
			fmt.Fprint(stdout, maildirkwUsage) // Courier prints it on stdout
			return 1
		}
		ck, err := ReadCourierKeywords(rest[0], !caseSensitive, now)
		if err == nil {
			err = ck.Merge(now)
		}
		if err != nil {
			fmt.Fprintf(stderr, "maildirkw: %v\n", err)
			return 1
		}
		for _, key := range ck.Order {
			line := key
			if set := ck.Sets[key]; len(set) > 0 {
				line += " " + strings.Join(set, " ")
			}
			fmt.Fprintln(stdout, line)
		}
		return 0
	}
	if len(rest) < 2 {
		fmt.Fprint(stdout, maildirkwUsage) // Courier prints it on stdout
		return 1
	}
	dir, key := rest[0], rest[1]
	key, _ = splitName(key) // a file name may be given with its ":2,..." info
	if !validCourierKey(key) {
		fmt.Fprintf(stderr, "maildirkw: %s: invalid message name\n", rest[1])
		return 1
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp")); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", dir, strerror.Text(err))
		return 1
	}
	set := NormalizeKeywords(rest[2:], !caseSensitive)
	if add || remove {
		ck, err := ReadCourierKeywords(dir, !caseSensitive, now)
		if err == nil {
			err = ck.Merge(now)
		}
		if err != nil {
			fmt.Fprintf(stderr, "maildirkw: %v\n", err)
			return 1
		}
		old := ck.Sets[key]
		var next []string
		if add {
			next = NormalizeKeywords(append(append([]string(nil), old...), set...), !caseSensitive)
		} else {
			for _, o := range old {
				drop := false
				for _, n := range set {
					if o == n || !caseSensitive && strings.EqualFold(o, n) {
						drop = true
					}
				}
				if !drop {
					next = append(next, o)
				}
			}
		}
		set = next
	}
	if err := WriteCourierKeywords(dir, key, set); err != nil {
		fmt.Fprintf(stderr, "maildirkw: %v\n", err)
		return 1
	}
	return 0
}
