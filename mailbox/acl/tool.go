package acl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maildiraclUsage is Courier's maildiracl usage line, byte for byte.
const maildiraclUsage = "Usage: maildiracl [ options ] maildir [INBOX[.folder] [identifier rights]]\n"

// HierFileDir is Courier's directory of ACLs for folders that do not exist
// (yet): courierimaphieracl/NAME in the Maildir root.
const HierFileDir = "courierimaphieracl"

// courierAll is the rights Courier gives the owner and the administrators
// of a folder with no ACL of its own.
const courierAll = "aceilrstwx"

// rawEntry is one line of a courierimapacl file with its rights letters as
// written (Courier keeps letters it does not know).
type rawEntry struct{ id, rights string }

// sortRights returns the letters of s sorted, without duplicates, as
// Courier stores them.
func sortRights(s string) string {
	b := []byte(s)
	slices.Sort(b)
	return string(slices.Compact(b))
}

func parseRaw(data []byte) []rawEntry {
	var l []rawEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), 64<<10)
	for sc.Scan() {
		id, rights, _ := strings.Cut(sc.Text(), " ")
		if !ValidID(id) {
			continue
		}
		// Letters only: spaces and control characters are no rights, and
		// would not read back.
		keep := make([]byte, 0, len(rights))
		for i := 0; i < len(rights); i++ {
			if c := rights[i]; c > ' ' && c != 0x7f {
				keep = append(keep, c)
			}
		}
		l = setRaw(l, id, sortRights(string(keep)))
	}
	return l
}

func setRaw(l []rawEntry, id, rights string) []rawEntry {
	for i := range l {
		if l[i].id == id {
			l[i].rights = rights
			return l
		}
	}
	return append(l, rawEntry{id, rights})
}

func findRaw(l []rawEntry, id string) (string, bool) {
	for _, e := range l {
		if e.id == id {
			return e.rights, true
		}
	}
	return "", false
}

// withAdministrators adds the administrators' line a file lacks, as
// Courier's maildiracl does on reading.
func withAdministrators(l []rawEntry) []rawEntry {
	if _, ok := findRaw(l, Administrators); ok {
		return l
	}
	return append(l, rawEntry{Administrators, courierAll})
}

// toolFile is where maildiracl keeps folder's ACL: the folder's own
// courierimapacl when the folder exists, else courierimaphieracl/NAME.
func toolFile(root, folder string) string {
	dir := folderDir(root, folder)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return filepath.Join(dir, FileName)
	}
	return filepath.Join(root, HierFileDir, folder)
}

// readTool returns folder's ACL as maildiracl sees it: its own file, else
// its parent's (recursively), else Courier's INBOX default.
func readTool(root, folder string) ([]rawEntry, error) {
	data, err := os.ReadFile(toolFile(root, folder))
	if err == nil {
		return withAdministrators(parseRaw(data)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if folder == "INBOX" {
		return []rawEntry{{"owner", courierAll}, {Administrators, courierAll}}, nil
	}
	parent := "INBOX"
	if i := strings.LastIndexByte(folder, '.'); i >= 0 {
		parent = folder[:i]
	}
	return readTool(root, parent)
}

func writeTool(root, folder string, l []rawEntry) error {
	path := toolFile(root, folder)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	var b bytes.Buffer
	for _, e := range l {
		fmt.Fprintf(&b, "%s %s\n", e.id, e.rights)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".acl-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// validTool checks what Courier's maildiracl insists on: the owner keeps
// "a" and "l", the administrators keep every right.
func validTool(l []rawEntry) (ownerOK, adminOK bool) {
	own, _ := findRaw(l, "owner")
	neg, _ := findRaw(l, "-owner")
	ownerOK = strings.Contains(own, "a") && strings.Contains(own, "l") && !strings.ContainsAny(neg, "al")
	adm, _ := findRaw(l, Administrators)
	nadm, _ := findRaw(l, "-"+Administrators)
	adminOK = nadm == ""
	for _, c := range courierAll {
		if !strings.ContainsRune(adm, c) {
			adminOK = false
		}
	}
	return ownerOK, adminOK
}

// MaildiraclMain is Courier's maildiracl(1): -list, -set, -delete and
// -compute a folder's ACL, and -reset. Folders are named as Courier's IMAP
// server names them, "INBOX" or "INBOX.Folder.Sub". Exit 0 on success, 1
// on failure or bad usage, as Courier's.
func MaildiraclMain(args []string, stdout, stderr io.Writer) int {
	usage := func() int { fmt.Fprint(stdout, maildiraclUsage); return 1 } // on stdout, as Courier's
	if len(args) < 2 {
		return usage()
	}
	op, root, rest := args[0], args[1], args[2:]
	if op == "-reset" {
		if len(rest) != 0 {
			return usage()
		}
		return resetTool(root, stderr)
	}
	need := map[string]int{"-list": 1, "-set": 3, "-delete": 2, "-compute": 2}[op]
	if need == 0 || len(rest) < need || op != "-compute" && len(rest) != need {
		return usage()
	}
	name := rest[0]
	folder, ok := strings.CutPrefix(name, "INBOX.")
	if name == "INBOX" {
		folder, ok = "INBOX", true
	}
	if !ok || folder == "" || strings.ContainsAny(folder, "/\x00") || strings.Contains(folder, "..") || strings.HasSuffix(folder, ".") {
		fmt.Fprintf(stderr, "%s: Invalid argument\n", name)
		return 1
	}
	l, err := readTool(root, folder)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", root, err)
		return 1
	}
	switch op {
	case "-list":
		// Courier keeps a copy of what a folder inherits, so that later
		// changes to the parent do not reach it; INBOX's default is not
		// written.
		if _, err := os.Stat(toolFile(root, folder)); folder != "INBOX" && errors.Is(err, os.ErrNotExist) {
			if err := writeTool(root, folder, l); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", root, err)
				return 1
			}
		}
		for _, e := range l {
			fmt.Fprintf(stdout, "%s\t%s\n", e.id, e.rights)
		}
		return 0
	case "-compute":
		// "anyone" (and its synonym) counts for every identifier.
		var plus, minus string
		for _, id := range append([]string{"anyone", "anonymous"}, rest[1:]...) {
			if r, ok := findRaw(l, id); ok {
				plus += r
			}
			if r, ok := findRaw(l, "-"+id); ok {
				minus += r
			}
		}
		var out []byte
		for _, c := range []byte(sortRights(plus)) {
			if strings.IndexByte(minus, c) < 0 {
				out = append(out, c)
			}
		}
		fmt.Fprintf(stdout, "%s\n", out)
		return 0
	}
	id := rest[1]
	if !ValidID(id) {
		fmt.Fprintf(stderr, "%s: Invalid argument\n", root)
		return 1
	}
	if op == "-delete" {
		next := l[:0:0]
		for _, e := range l {
			if e.id != id {
				next = append(next, e)
			}
		}
		l = next
	} else {
		rights := rest[2]
		old, _ := findRaw(l, id)
		switch {
		case strings.HasPrefix(rights, "+"):
			rights = sortRights(old + rights[1:])
		case strings.HasPrefix(rights, "-"):
			keep := []byte{}
			for _, c := range []byte(old) {
				if !strings.ContainsRune(rights[1:], rune(c)) {
					keep = append(keep, c)
				}
			}
			rights = string(keep)
		default:
			rights = sortRights(rights)
		}
		for _, c := range []byte(rights) {
			if c <= ' ' || c >= 0x7f || c == '+' || c == '-' {
				fmt.Fprintf(stderr, "%s: Invalid argument\n", root)
				return 1
			}
		}
		l = setRaw(l, id, rights)
	}
	ownerOK, adminOK := validTool(l)
	if !ownerOK {
		fmt.Fprintln(stderr, "Trying to set invalid access rights for owner")
		return 1
	}
	if !adminOK {
		fmt.Fprintf(stderr, "%s: Invalid argument\n", root)
		return 1
	}
	if err := writeTool(root, folder, l); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", root, err)
		return 1
	}
	return 0
}

// resetTool removes courierimaphieracl/ files of folders that now exist
// (their own courierimapacl rules) and leaves the others, which new
// folders of that name will inherit.
func resetTool(root string, stderr io.Writer) int {
	if _, err := os.Stat(filepath.Join(root, "cur")); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", root, err)
		return 1
	}
	entries, err := os.ReadDir(filepath.Join(root, HierFileDir))
	if err != nil {
		return 0
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(folderDir(root, e.Name()), FileName)); err == nil {
			os.Remove(filepath.Join(root, HierFileDir, e.Name()))
		}
	}
	return 0
}
