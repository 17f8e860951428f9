// Package authdaemon speaks Courier authdaemond's socket protocol, both
// ways: Server answers Courier's programs (authtest, authenumerate,
// courier-imap's imapd and pop3d, maildrop, sqwebmail) from Postern's
// authentication service, and Client is an authentication module that asks
// an existing authdaemond.
//
// The protocol is one request per connection on a Unix socket. The client
// may first send lines NAME=VALUE (authlib 0.71 sends TCPREMOTEIP, the
// address of the client it is logging in), then one of
//
//	PRE . SERVICE NAME\n                   look NAME up, no password
//	AUTH SIZE\nSERVICE\nTYPE\nDATA          SIZE bytes follow the first line;
//	                                       TYPE "login": DATA is "NAME\nPASSWORD\n"
//	PASSWD SERVICE\tNAME\tOLD\tNEW\n       change a password
//	ENUMERATE\n                            list every account
//
// An account is answered as lines NAME=VALUE (USERNAME, UID, GID, HOME,
// ADDRESS, NAME, MAILDIR, QUOTA, PASSWD, PASSWD2, OPTIONS) ending with a
// line ".". "FAIL" means no (unknown user, wrong password); a connection
// closed without an answer means "try again later". PASSWD is answered
// "OK" or "FAIL"; ENUMERATE with NAME<TAB>UID<TAB>GID<TAB>HOME<TAB>MAILDIR<TAB>OPTIONS
// lines, "# module" comments, and ".".
package authdaemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"postern/auth"
)

// Limits on a request. Courier's daemon reads the request line and an AUTH
// body into buffers of BUFSIZ (8192 bytes); nothing its clients send is
// larger.
const (
	MaxLine      = 8192 // one line, newline included
	MaxAuthSize  = 8192 // the body of an AUTH request
	MaxMetaLines = 16   // NAME=VALUE lines before the request
)

// Request kinds.
const (
	KindPre       = "PRE"
	KindAuth      = "AUTH"
	KindPasswd    = "PASSWD"
	KindEnumerate = "ENUMERATE"
)

// AuthTypeLogin is the AUTH type whose data is "NAME\nPASSWORD\n".
const AuthTypeLogin = "login"

// ErrBadRequest is wrapped by every error ReadRequest returns for a request
// that breaks the protocol or its limits (as opposed to a connection that
// failed).
var ErrBadRequest = errors.New("authdaemon: bad request")

// Request is one parsed request.
type Request struct {
	Kind string
	// Meta holds the NAME=VALUE lines sent before the request
	// (TCPREMOTEIP).
	Meta map[string]string
	// Module is PRE's module: "." for every module, else one module's name.
	Module  string
	Service string
	Name    string
	// AuthType and AuthData are AUTH's: for "login", Name and Password are
	// filled in from AuthData as well.
	AuthType string
	AuthData string
	// Password is AUTH login's password, or PASSWD's old one.
	Password    string
	NewPassword string
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// readLine reads one line of at most MaxLine bytes and returns it without
// its newline.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > MaxLine {
			return "", badRequest("line longer than %d bytes", MaxLine)
		}
		b = append(b, chunk...)
		switch {
		case err == nil:
			return string(b[:len(b)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(b) > 0:
			return "", badRequest("request ends without a newline")
		default:
			return "", err
		}
	}
}

// hasControl reports whether s holds a control character other than those
// allowed.
func hasControl(s string, allowed string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < ' ' || s[i] == 0x7f) && !strings.ContainsRune(allowed, rune(s[i])) {
			return true
		}
	}
	return false
}

// isMetaName reports whether s can be the name of a NAME=VALUE line.
func isMetaName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ReadRequest reads one request from r. Errors wrapping ErrBadRequest
// are requests the server answers with FAIL; other errors are the
// connection's.
func ReadRequest(r *bufio.Reader) (*Request, error) {
	req := &Request{}
	for metaLines := 0; ; metaLines++ {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		verb, rest, _ := strings.Cut(line, " ")
		switch verb {
		case KindPre:
			return req, req.parsePre(rest)
		case KindPasswd:
			return req, req.parsePasswd(rest)
		case KindAuth:
			return req, req.readAuth(r, rest)
		case KindEnumerate:
			if strings.TrimSpace(rest) != "" {
				return nil, badRequest("ENUMERATE takes no arguments")
			}
			req.Kind = KindEnumerate
			return req, nil
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || !isMetaName(name) || hasControl(value, "") {
			return nil, badRequest("unknown request %.40q", line)
		}
		if metaLines >= MaxMetaLines {
			return nil, badRequest("more than %d NAME=VALUE lines", MaxMetaLines)
		}
		if req.Meta == nil {
			req.Meta = map[string]string{}
		}
		req.Meta[name] = value
	}
}

// parsePre reads "MODULE SERVICE NAME" (blanks may repeat, as Courier
// skips them; the name is the rest of the line).
func (req *Request) parsePre(rest string) error {
	req.Kind = KindPre
	rest = strings.TrimLeft(rest, " ")
	module, rest, ok1 := strings.Cut(rest, " ")
	rest = strings.TrimLeft(rest, " ")
	service, name, ok2 := strings.Cut(rest, " ")
	name = strings.TrimLeft(name, " ")
	if !ok1 || !ok2 || module == "" || service == "" || name == "" {
		return badRequest("PRE wants MODULE SERVICE NAME")
	}
	if hasControl(module+service+name, "") {
		return badRequest("PRE: control character")
	}
	req.Module, req.Service, req.Name = module, service, name
	return nil
}

// parsePasswd reads "SERVICE\tNAME\tOLD\tNEW"; like Courier, a fifth
// field is ignored.
func (req *Request) parsePasswd(rest string) error {
	req.Kind = KindPasswd
	if hasControl(rest, "\t") {
		return badRequest("PASSWD: control character")
	}
	f := strings.SplitN(rest, "\t", 5)
	if len(f) < 4 || f[0] == "" || f[1] == "" {
		return badRequest("PASSWD wants SERVICE<TAB>NAME<TAB>OLD<TAB>NEW")
	}
	req.Service, req.Name, req.Password, req.NewPassword = f[0], f[1], f[2], f[3]
	return nil
}

// readAuth reads the SIZE bytes after "AUTH SIZE" and splits them.
func (req *Request) readAuth(r *bufio.Reader, rest string) error {
	req.Kind = KindAuth
	size, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil || size <= 0 || size > MaxAuthSize {
		return badRequest("AUTH wants a size from 1 to %d", MaxAuthSize)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return badRequest("AUTH: %d bytes announced, fewer sent", size)
		}
		return err
	}
	service, rest, ok1 := strings.Cut(string(body), "\n")
	authType, data, ok2 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 || service == "" || authType == "" {
		return badRequest("AUTH wants SERVICE, TYPE and DATA on their own lines")
	}
	if hasControl(service+authType, "") {
		return badRequest("AUTH: control character")
	}
	req.Service, req.AuthType, req.AuthData = service, authType, data
	if strings.EqualFold(authType, AuthTypeLogin) {
		// Courier's modules split on newlines and skip empty pieces.
		var parts []string
		for p := range strings.SplitSeq(data, "\n") {
			if p != "" {
				parts = append(parts, p)
			}
		}
		if len(parts) < 2 {
			return badRequest("AUTH login wants NAME and PASSWORD lines")
		}
		req.Name, req.Password = parts[0], parts[1]
		if hasControl(req.Name, "") || strings.ContainsRune(req.Password, 0) {
			return badRequest("AUTH login: control character")
		}
	}
	return nil
}

// String formats the request as a client sends it (the client module, and
// tests).
func (req *Request) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(req.Meta)) {
		fmt.Fprintf(&b, "%s=%s\n", k, req.Meta[k])
	}
	switch req.Kind {
	case KindPre:
		module := req.Module
		if module == "" {
			module = "."
		}
		fmt.Fprintf(&b, "PRE %s %s %s\n", module, req.Service, req.Name)
	case KindAuth:
		data := req.AuthData
		if data == "" && req.AuthType == AuthTypeLogin {
			data = req.Name + "\n" + req.Password + "\n"
		}
		body := req.Service + "\n" + req.AuthType + "\n" + data
		fmt.Fprintf(&b, "AUTH %d\n%s", len(body), body)
	case KindPasswd:
		fmt.Fprintf(&b, "PASSWD %s\t%s\t%s\t%s\n", req.Service, req.Name, req.Password, req.NewPassword)
	case KindEnumerate:
		b.WriteString("ENUMERATE\n")
	}
	return b.String()
}

// Reply values.
const (
	replyFail = "FAIL\n"
	replyOK   = "OK\n"
	replyEnd  = ".\n"
)

// clean makes v safe for one reply line: a newline in a value would
// start a line the client reads as another field.
func clean(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, v)
}

// FormatAccount writes a's reply block in the order Courier's daemon
// writes it. clear is PASSWD2, the password the client gave (AUTH only);
// no password hash is ever sent (see docs/authdaemon.md).
func FormatAccount(a *auth.Account, clear string) string {
	var b strings.Builder
	field := func(name, value string) {
		if value != "" {
			b.WriteString(name + "=" + clean(value) + "\n")
		}
	}
	field("UID", strconv.Itoa(a.UID))
	b.WriteString("GID=" + strconv.Itoa(a.GID) + "\n")
	b.WriteString("HOME=" + clean(a.Home) + "\n")
	field("ADDRESS", a.Name)
	if g := a.Fields["gecos"]; g != "" {
		// Courier sends the GECOS field's first comma-separated part.
		g, _, _ = strings.Cut(g, ",")
		field("NAME", g)
	}
	field("MAILDIR", a.Maildir)
	field("QUOTA", a.Quota)
	field("PASSWD2", clear)
	field("OPTIONS", OptionsOf(a))
	b.WriteString(replyEnd)
	return b.String()
}

// OptionsOf is a's options as Courier writes them: the module's own
// string when it kept one, else name=value pairs in name order.
func OptionsOf(a *auth.Account) string {
	if raw, ok := a.Fields["options"]; ok {
		return raw
	}
	parts := make([]string, 0, len(a.Options))
	for _, k := range slices.Sorted(maps.Keys(a.Options)) {
		parts = append(parts, k+"="+a.Options[k])
	}
	return strings.Join(parts, ",")
}

// FormatEnumerated is one ENUMERATE line for a. Tabs would shift the
// fields, so they are replaced with blanks.
func FormatEnumerated(a *auth.Account) string {
	f := func(s string) string { return strings.ReplaceAll(clean(s), "\t", " ") }
	return f(a.Name) + "\t" + strconv.Itoa(a.UID) + "\t" + strconv.Itoa(a.GID) + "\t" +
		f(a.Home) + "\t" + f(a.Maildir) + "\t" + f(OptionsOf(a)) + "\n"
}

// ParseAccount reads a reply block (the client module): the account, the
// PASSWD2 value, and whether the reply was FAIL. A reply that ends before
// its "." line is io.ErrUnexpectedEOF.
func ParseAccount(r *bufio.Reader) (a *auth.Account, clear string, fail bool, err error) {
	a = &auth.Account{Fields: map[string]string{}, Options: map[string]string{}}
	for {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			return nil, "", false, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, "", false, err
		}
		switch line {
		case ".":
			return a, clear, false, nil
		case "FAIL":
			return nil, "", true, nil
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue // Courier's clients skip what they do not know
		}
		switch k {
		case "USERNAME":
			a.Fields["username"] = v
		case "UID":
			a.UID, _ = strconv.Atoi(v)
		case "GID":
			a.GID, _ = strconv.Atoi(v)
		case "HOME":
			a.Home = v
		case "ADDRESS":
			a.Name = v
		case "NAME":
			a.Fields["gecos"] = v
		case "MAILDIR":
			a.Maildir = v
		case "QUOTA":
			a.Quota = v
		case "PASSWD":
			a.Fields["systempw"] = v
		case "PASSWD2":
			clear = v
		case "OPTIONS":
			a.Fields["options"] = v
			for opt := range strings.SplitSeq(v, ",") {
				if opt == "" {
					continue
				}
				name, value, _ := strings.Cut(opt, "=")
				a.Options[name] = value
			}
		}
	}
}
