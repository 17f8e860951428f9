package authtool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"postern/auth/passwd"
	"postern/auth/userdb"
)

const userdbUsage = `Usage: userdb [PATH/ | -f FILE ]NAME set FIELD=VALUE|FIELD ...
       userdb [PATH/ | -f FILE ]NAME unset FIELD ...
       userdb [PATH/ | -f FILE ]NAME del
       userdb -show [PATH/ | -f FILE ] [NAME]

Courier's userdb: edits one account's line in CONFIGDIR/userdb (or, when
that is a directory, in its file PATH; or in FILE), keeping every other line
as it is. A FIELD without "=VALUE" takes its value from a line of standard
input, so that "userdbpw | userdb NAME set systempw" never puts a password
on a command line. Run makeuserdb afterwards, as with Courier.

  set     add the account, or change or add these fields
  unset   remove these fields
  del     remove the account
  -show   list the names in the file, or print NAME's fields one per line

Exit status: 0 done (also when NAME was not there to change); 1 an error,
with a message on standard error. Documented in docs/userdb.md.
`

// UserdbMain is Courier's userdb command (see userdbUsage). A value
// holding "|" or a line break is refused, as Courier's script refuses it;
// so is a line the userdb parser would refuse (an unknown uid), before the
// file is touched. A FIELD without a value is read from stdin, prompted
// for ("NAME.FIELD: ") when stdin is a terminal.
func UserdbMain(args []string, stdin io.Reader, stdout, stderr io.Writer, configDir string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "userdb: "+format+"\n", a...)
		return 1
	}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
		fmt.Fprint(stdout, userdbUsage)
		return 0
	}
	usage := func() int { fmt.Fprint(stderr, userdbUsage); return 1 }
	show := false
	if len(args) > 0 && args[0] == "-show" {
		show = true
		args = args[1:]
	}
	p := PathsFor(configDir)
	file := p.Source
	var name string
	switch {
	case len(args) > 0 && args[0] == "-f":
		if len(args) < 2 || args[1] == "" {
			return usage()
		}
		file = args[1]
		args = args[2:]
		if len(args) > 0 {
			name, args = args[0], args[1:]
		}
	case len(args) > 0:
		name, args = args[0], args[1:]
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			sub := name[:i]
			name = name[i+1:]
			if sub == "" || slices.Contains(strings.Split(sub, "/"), "..") || filepath.IsAbs(sub) {
				return fail("%s/: not a file under %s", sub, p.Source)
			}
			file = filepath.Join(p.Source, sub)
		}
	}
	for _, a := range args {
		if strings.ContainsAny(a, "|\n") {
			return fail("Invalid field or value.")
		}
	}
	if show {
		if len(args) > 0 {
			return usage()
		}
		return userdbShow(file, name, stdout, stderr)
	}
	if name == "" || len(args) == 0 {
		return usage()
	}
	verb, fields := args[0], args[1:]
	switch verb {
	case "set", "unset":
	case "del":
		if len(fields) > 0 {
			return usage()
		}
	default:
		return usage()
	}
	if verb == "set" {
		var err error
		if fields, err = askMissing(name, fields, stdin, stderr); err != nil {
			return fail("%v", err)
		}
	}
	if st, err := os.Stat(file); err == nil && !st.Mode().IsRegular() {
		return fail("%s: not a file.", file)
	}
	unlock, err := lockEdits(p)
	if err != nil {
		return fail("%v", err)
	}
	defer unlock()
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail("%v", err)
	}
	lines, changed, err := editUserdbLines(splitLines(data), name, verb, fields)
	if err != nil {
		return fail("%s: %v", name, err)
	}
	if !changed {
		return 0
	}
	out := strings.Join(lines, "\n")
	if len(lines) > 0 {
		out += "\n"
	}
	if err := writeFileAtomic(file, []byte(out)); err != nil {
		return fail("%v", err)
	}
	return 0
}

func splitLines(data []byte) []string {
	text := strings.TrimSuffix(string(data), "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

// askMissing reads the value of each field given without "=" from stdin,
// one line each, as Courier's userdb does (the way userdbpw's output gets
// in).
func askMissing(name string, fields []string, stdin io.Reader, stderr io.Writer) ([]string, error) {
	var r *bufio.Reader
	tty := IsTerminal(stdin)
	out := slices.Clone(fields)
	for i, f := range out {
		if strings.Contains(f, "=") {
			continue
		}
		if r == nil {
			r = bufio.NewReader(io.LimitReader(stdin, 1<<20))
		}
		if tty {
			fmt.Fprintf(stderr, "%s.%s: ", name, f)
		}
		line, err := r.ReadString('\n')
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			return nil, fmt.Errorf("no value for %s on standard input", f)
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.ContainsAny(line, "|\n") {
			return nil, errors.New("Invalid value.")
		}
		out[i] = f + "=" + line
	}
	return out, nil
}

// editUserdbLines applies set, unset or del for name to the source lines.
// Other lines, comments included, stay byte for byte. A changed entry
// keeps its fields' order; set appends new fields after them (a new entry
// has them in the order given). changed is false when there was nothing
// to do (unset or del of a name that is not there).
func editUserdbLines(lines []string, name, verb string, fields []string) (out []string, changed bool, err error) {
	idx := -1
	for i, l := range lines {
		if n, _, _ := strings.Cut(l, "\t"); n == name && !strings.HasPrefix(l, "#") {
			idx = i
			break
		}
	}
	if idx < 0 && verb != "set" {
		return lines, false, nil
	}
	if verb == "del" {
		return slices.Delete(slices.Clone(lines), idx, idx+1), true, nil
	}
	type kv struct{ k, v string }
	var cur []kv
	if idx >= 0 {
		_, rest, _ := strings.Cut(lines[idx], "\t")
		for _, item := range strings.Split(rest, "|") {
			if item == "" {
				continue
			}
			k, v, _ := strings.Cut(item, "=")
			cur = append(cur, kv{k, v})
		}
	}
	for _, f := range fields {
		k, v, hasValue := strings.Cut(f, "=")
		if verb == "unset" {
			k = f // as Courier's: "unset a=1" names a field "a=1", which is not there
		}
		if k == "" {
			return nil, false, fmt.Errorf("field %q has no name", f)
		}
		at := slices.IndexFunc(cur, func(x kv) bool { return x.k == k })
		switch {
		case verb == "unset":
			if at >= 0 {
				cur = slices.Delete(cur, at, at+1)
			}
		case !hasValue:
			return nil, false, fmt.Errorf("field %s has no value", k)
		case at >= 0:
			cur[at].v = v
		default:
			cur = append(cur, kv{k, v})
		}
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('\t')
	for i, x := range cur {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(x.k)
		b.WriteByte('=')
		b.WriteString(x.v)
	}
	line := b.String()
	if _, _, err := userdb.ParseLine(line); err != nil {
		return nil, false, err
	}
	out = slices.Clone(lines)
	if idx >= 0 {
		if lines[idx] == line {
			return lines, false, nil
		}
		out[idx] = line
	} else {
		out = append(out, line)
	}
	return out, true, nil
}

// userdbShow prints the names in file, or name's fields one per line, as
// they are written there.
func userdbShow(file, name string, stdout, stderr io.Writer) int {
	st, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0 // Courier's shows nothing for a file that is not there
	}
	if err != nil {
		fmt.Fprintf(stderr, "userdb: %v\n", err)
		return 1
	}
	if !st.Mode().IsRegular() {
		fmt.Fprintf(stderr, "userdb: %s: not a file.\n", file)
		return 1
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "userdb: %v\n", err)
		return 1
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for _, l := range splitLines(data) {
		if strings.HasPrefix(l, "#") {
			continue
		}
		n, rest, _ := strings.Cut(l, "\t")
		if n == "" {
			continue
		}
		if name == "" {
			fmt.Fprintln(w, n)
			continue
		}
		if n == name {
			fmt.Fprintln(w, strings.ReplaceAll(rest, "|", "\n"))
			break
		}
	}
	return 0
}

const userdbpwUsage = `Usage: userdbpw [-md5 | -sha256 | -sha512 | -bcrypt] | userdb NAME set FIELD

Courier's userdbpw: reads one line (a password) from standard input and
prints its hash, for "userdb NAME set systempw" to read. On a terminal it
asks with "Password: " on standard error, without echo.

  (default)  SHA-512 crypt ($6$), which Courier's authlib, PAM and Postern
             all check; Courier's default, DES crypt, keeps only the first
             8 characters of a password and is not offered
  -md5       MD5 crypt ($1$), as Courier's -md5
  -sha256    SHA-256 crypt ($5$)
  -bcrypt    bcrypt ($2a$)

-hmac-md5 and -hmac-sha1 are refused: they make the keys of CRAM logins,
which Postern does not offer (it keeps password hashes only).
Exit status: 0, or 1 with a message.
`

// UserdbpwMain is Courier's userdbpw (see userdbpwUsage).
func UserdbpwMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	scheme := passwd.SchemeSHA512Crypt
	for _, a := range args {
		switch a {
		case "--help", "-h", "-help":
			fmt.Fprint(stdout, userdbpwUsage)
			return 0
		case "-md5":
			scheme = passwd.SchemeMD5Crypt
		case "-sha256":
			scheme = passwd.SchemeSHA256Crypt
		case "-sha512":
			scheme = passwd.SchemeSHA512Crypt
		case "-bcrypt":
			scheme = passwd.SchemeBcrypt
		case "-hmac-md5", "-hmac-sha1":
			fmt.Fprintf(stderr, "userdbpw: %s: Postern offers no CRAM logins, so it never reads an HMAC key field; store a password hash (userdbpw without options)\n", a)
			return 1
		default:
			fmt.Fprint(stderr, "userdbpw: invalid argument.\n", userdbpwUsage)
			return 1
		}
	}
	pw, err := readSecretLine(stdin, stderr, "Password: ")
	if err != nil {
		fmt.Fprintf(stderr, "userdbpw: %v\n", err)
		return 1
	}
	h, err := passwd.Hash(pw, scheme)
	if err != nil {
		fmt.Fprintf(stderr, "userdbpw: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

// readSecretLine reads one line; on a terminal, after prompt and with the
// echo off.
func readSecretLine(stdin io.Reader, stderr io.Writer, prompt string) (string, error) {
	if IsTerminal(stdin) {
		return PromptPassword(stdin, stderr, prompt)
	}
	pw, err := ReadPasswordLine(stdin)
	if errors.Is(err, ErrNoPassword) {
		return "", errors.New("no password on standard input")
	}
	return pw, err
}
