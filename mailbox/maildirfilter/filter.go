package maildirfilter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"postern/mailbox/maildir"
	"postern/rules"
)

// Op is a rule's test, by the name sqwebmail writes after "##Op:".
type Op string

const (
	StartsWith    Op = "startswith"    // a header (or a body line) starts with the pattern
	EndsWith      Op = "endswith"      // ... ends with it
	Contains      Op = "contains"      // ... contains it
	HasRecipient  Op = "hasrecipient"  // an address in To, Cc (maildrop's hasaddr)
	MimeMultipart Op = "mimemultipart" // Content-Type: multipart/mixed (has attachments)
	TextPlain     Op = "textplain"     // plain text only
	IsLargerThan  Op = "islargerthan"  // $SIZE larger than Value bytes (DoesNot: smaller)
	AnyMessage    Op = "anymessage"    // every message
)

// Ops are the tests in sqwebmail's order.
var Ops = []Op{StartsWith, EndsWith, Contains, HasRecipient, MimeMultipart, TextPlain, IsLargerThan, AnyMessage}

func knownOp(s string) (Op, bool) {
	for _, op := range Ops {
		if strings.EqualFold(s, string(op)) {
			return op, true
		}
	}
	return "", false
}

// Rule is one filter rule as sqwebmail keeps it.
type Rule struct {
	Name   string
	Op     Op
	Header string // the header's name, for the pattern tests without Body
	Value  string // the pattern, the address (hasrecipient) or the size
	// Action is sqwebmail's "folder" field: "INBOX" or "INBOX.Name" (file
	// into that folder, the name as on disk), "!addr addr" (forward),
	// "*text" (bounce with text), "+name days=N noquote dsn=1"
	// (autoreply), or "exit" (discard).
	Action string
	// From is the autoreply's From: field; "" means the user's address.
	From        string
	PlainString bool // Value is text, not a regular expression
	DoesNot     bool // the test is negated
	Body        bool // the pattern tests the body, not a header
	Continue    bool // keep filtering after a file-into or forward (cc, not to)
}

// ActionKind is what a rule's Action does.
type ActionKind int

const (
	ActFolder ActionKind = iota
	ActForward
	ActBounce
	ActAutoreply
	ActDiscard
)

// Kind classifies the rule's Action.
func (r Rule) Kind() ActionKind {
	switch {
	case r.Action == "exit":
		return ActDiscard
	case strings.HasPrefix(r.Action, "!"):
		return ActForward
	case strings.HasPrefix(r.Action, "*"):
		return ActBounce
	case strings.HasPrefix(r.Action, "+"):
		return ActAutoreply
	}
	return ActFolder
}

// Autoreply is the autoreply part of an Action ("+name days=7 noquote").
type Autoreply struct {
	Name    string // the file in autoresponses/
	Days    int    // answer one sender at most once in this many days; 0: every time
	NoQuote bool   // do not quote the original (mailbot -N)
	DSN     bool   // reply as a delivery status notification (mailbot -M)
}

// String is the Action for a: "+name days=N noquote dsn=1".
func (a Autoreply) String() string {
	s := "+" + a.Name
	if a.DSN {
		s += " dsn=1"
	}
	if a.Days > 0 {
		s += " days=" + strconv.Itoa(a.Days)
	}
	if a.NoQuote {
		s += " noquote"
	}
	return s
}

// ParseAutoreply reads the part of an Action after "+", as sqwebmail does:
// the name, then words; unknown words are ignored.
func ParseAutoreply(s string) (Autoreply, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return Autoreply{}, errors.New("the autoreply has no name")
	}
	a := Autoreply{Name: f[0]}
	if err := CheckAutoresponseName(a.Name); err != nil {
		return Autoreply{}, err
	}
	for _, w := range f[1:] {
		switch {
		case strings.HasPrefix(w, "dsn="):
			a.DSN = atoi(w[4:]) != 0
		case strings.HasPrefix(w, "days="):
			a.Days = atoi(w[5:])
		case w == "noquote":
			a.NoQuote = true
		}
	}
	if a.Days < 0 || a.Days > MaxDays {
		return Autoreply{}, fmt.Errorf("days between replies must be 0 to %d", MaxDays)
	}
	return a, nil
}

// atoi reads leading digits as C's atoi does (0 for none).
func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' || n > 1e8 {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// Bounds, sqwebmail's where it has them.
const (
	MaxField = 200  // bytes of a name, header, value, action
	MaxRules = 500  // rules in one file
	MaxDays  = 3650 // days between autoreplies
	MaxFile  = 1 << 20
)

// Check refuses what sqwebmail refuses and what would not survive being
// written into the file: its errors are sentences for the user.
func (r Rule) Check() error {
	if r.Name == "" || len(r.Name) > MaxField || !utf8.ValidString(r.Name) {
		return fmt.Errorf("a rule needs a name of at most %d bytes", MaxField)
	}
	if strings.ContainsAny(r.Name, "'\"`") || hasControl(r.Name) {
		return errors.New("a rule's name may not hold quotes, backquotes or control characters")
	}
	if _, ok := knownOp(string(r.Op)); !ok {
		return fmt.Errorf("unknown test %q", r.Op)
	}
	if err := r.checkHeader(); err != nil {
		return err
	}
	if err := r.checkValue(); err != nil {
		return err
	}
	if len(r.From) > MaxField || hasControl(r.From) || !utf8.ValidString(r.From) {
		return fmt.Errorf("the autoreply's From must be one line of at most %d bytes", MaxField)
	}
	return r.checkAction()
}

// plainAddress is an address the recipe can carry as it is, in a string
// and on a shell's command line: box@domain of letters, digits and
// ".-_+=", not starting with "-". sqwebmail allows more (| included,
// which the shell reads as a pipe); Postern allows only these.
func plainAddress(a string) bool {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.HasPrefix(a, "-") || strings.Contains(domain, "@") {
		return false
	}
	for _, c := range []byte(local + domain) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte(".-_+=", c) >= 0) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

func (r Rule) patternOp() bool {
	return r.Op == StartsWith || r.Op == EndsWith || r.Op == Contains
}

func (r Rule) checkHeader() error {
	if len(r.Header) > MaxField {
		return fmt.Errorf("the header's name is longer than %d bytes", MaxField)
	}
	if r.Header == "" {
		if r.patternOp() && !r.Body {
			return errors.New("name the header to test")
		}
		return nil
	}
	for _, c := range []byte(r.Header) {
		// A header's name is printable ASCII without a colon (RFC 5322
		// 2.2); sqwebmail also refuses what would break the recipe.
		if c <= ' ' || c >= 0x7f || strings.IndexByte(":'\\\"`/", c) >= 0 {
			return fmt.Errorf("%.60q is not a header's name: use letters, digits and dashes", r.Header)
		}
	}
	return nil
}

func (r Rule) checkValue() error {
	v := r.Value
	if len(v) > MaxField {
		return fmt.Errorf("the text to look for is longer than %d bytes", MaxField)
	}
	if !utf8.ValidString(v) || hasControl(v) {
		return errors.New("the text to look for must be one line of text")
	}
	if v == "" {
		if r.Op == MimeMultipart || r.Op == TextPlain || r.Op == AnyMessage {
			return nil
		}
		return errors.New("give the text to look for")
	}
	switch r.Op {
	case IsLargerThan:
		for _, c := range v {
			if c < '0' || c > '9' {
				return fmt.Errorf("%.60q is not a size in bytes", v)
			}
		}
		if len(v) > 15 {
			return errors.New("the size is too large")
		}
		return nil
	case HasRecipient:
		// hasaddr("...") takes the address inside a string.
		if !plainAddress(v) {
			return fmt.Errorf("%.60q is not an address: write it as box@example.org", v)
		}
		return nil
	}
	if r.PlainString {
		return nil
	}
	return checkPattern(v)
}

// checkPattern refuses, as sqwebmail does, a regular expression with a
// character the recipe would read as its own unless escaped: the
// pattern's delimiter /, $ (a variable), !, quotes and backquotes.
func checkPattern(v string) error {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' {
			i++
			if i == len(v) {
				return errors.New("the pattern ends with a lone backslash")
			}
			continue
		}
		if strings.IndexByte("/$!`'\"", c) >= 0 {
			return fmt.Errorf("in a pattern, write %c as \\%c (or tick \"plain text\")", c, c)
		}
	}
	return nil
}

func (r Rule) checkAction() error {
	a := r.Action
	if a == "" || len(a) > MaxField || !utf8.ValidString(a) {
		return fmt.Errorf("the rule needs an action of at most %d bytes", MaxField)
	}
	switch r.Kind() {
	case ActForward, ActBounce:
		rest := a[1:]
		if hasControl(rest) || strings.ContainsAny(rest, "'\"$\\`;(){}#&<>~") {
			if r.Kind() == ActForward {
				return errors.New("forward to plain addresses (box@example.org), separated by spaces")
			}
			return errors.New("the bounce text may not hold quotes, backslashes or any of $;(){}#&<>~")
		}
		if strings.TrimSpace(rest) == "" {
			return errors.New("give the address to forward to, or the bounce text")
		}
		if r.Kind() == ActForward {
			for _, addr := range strings.Fields(rest) {
				if !plainAddress(addr) {
					return fmt.Errorf("%.60q is not an address: write it as box@example.org", addr)
				}
			}
		}
		return nil
	case ActAutoreply:
		_, err := ParseAutoreply(a[1:])
		return err
	case ActDiscard:
		return nil
	}
	if a == maildir.Inbox {
		return nil
	}
	name, ok := strings.CutPrefix(a, maildir.Inbox+".")
	if !ok || maildir.ValidFolderName(name) != nil {
		return fmt.Errorf("%.60q is not a folder", a)
	}
	return nil
}

// Marker starts every file sqwebmail (and Postern) generates; a
// .mailfilter without it is the user's own.
const Marker = "#MFMAILDROP="

// ErrForeign is a filter file that was not generated: written by hand,
// or by a newer program. It is never replaced.
var ErrForeign = errors.New("the mail filter file was not written by the webmail")

// Problem is a rule of a file that was not read, and why.
type Problem struct {
	Name string
	Err  error
}

// Parse reads a generated filter file's rules, from its "##" lines, as
// sqwebmail does: other lines are the recipe and are ignored. A file
// that does not start with the marker, or names a test not known, is
// ErrForeign. A rule that fails Check is left out and reported.
func Parse(data []byte) ([]Rule, []Problem, error) {
	if len(data) > MaxFile {
		return nil, nil, fmt.Errorf("the filter file is larger than %d KiB", MaxFile>>10)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFile)
	if !sc.Scan() {
		return nil, nil, ErrForeign
	}
	first, ok := strings.CutPrefix(sc.Text(), Marker)
	if !ok || (atoi(first) != 1 && atoi(first) != 2) {
		return nil, nil, ErrForeign
	}
	var out []Rule
	var problems []Problem
	cur := Rule{Op: Contains}
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "##")
		if !ok {
			continue
		}
		line = strings.TrimLeft(line, " \t")
		key, val, _ := strings.Cut(line, ":")
		switch strings.ToLower(key) {
		case "from":
			cur.From = val
		case "op":
			op, ok := knownOp(val)
			if !ok {
				return nil, nil, ErrForeign
			}
			cur.Op = op
		case "header":
			cur.Header = val
		case "value":
			cur.Value = val
		case "folder":
			// INBOX is "." and its folders ".Name": the file keeps
			// them relative to the Maildir.
			switch {
			case val == ".":
				cur.Action = maildir.Inbox
			case strings.HasPrefix(val, "."):
				cur.Action = maildir.Inbox + val
			default:
				cur.Action = val
			}
		case "plainstring":
			cur.PlainString = true
		case "doesnot":
			cur.DoesNot = true
		case "continue":
			cur.Continue = true
		case "body":
			cur.Body = true
		case "name":
			cur.Name = val
			if len(out) >= MaxRules {
				problems = append(problems, Problem{cur.Name, fmt.Errorf("more than %d rules", MaxRules)})
			} else if err := cur.Check(); err != nil {
				problems = append(problems, Problem{cur.Name, err})
			} else if slicesContainsName(out, cur.Name) {
				problems = append(problems, Problem{cur.Name, errors.New("a rule of this name came before")})
			} else {
				out = append(out, cur)
			}
			cur = Rule{Op: Contains}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("filter file: %w", err)
	}
	return out, problems, nil
}

func slicesContainsName(rs []Rule, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// Recipe says where the generated recipe finds things.
type Recipe struct {
	// Maildir is the Maildir as the recipe names it: "./Maildir" (relative
	// to the home, where the delivery agent runs filters), as sqwebmail's
	// default maildirfilterconfig has it, or an absolute path.
	Maildir string
	// From is the user's address: FROM in the recipe, the autoreplies'
	// From: unless a rule gives its own.
	From string
	// Mailbot is the autoresponder as a shell command ("/usr/bin/mailbot",
	// "/usr/local/bin/postern mailbot").
	Mailbot string
}

// EX_SOFTWARE, what a bounce rule exits with: the MTA returns the message
// with the rule's text.
const exitBounce = 70

// Generate writes the filter file for rules: the marker, the rules' "##"
// lines and their maildrop statements, and the delivery to INBOX at the
// end, in the layout sqwebmail writes. Each rule must pass Check.
func Generate(rs []Rule, rc Recipe) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(Marker + "2\n#\n# DO NOT EDIT THIS FILE.  This is an automatically generated filter.\n\n")
	b.WriteString("FROM=" + singleQuote(rc.From) + "\n")
	for _, r := range rs {
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Name, err)
		}
		folder := r.Action
		if folder == maildir.Inbox {
			folder = "."
		} else if rest, ok := strings.CutPrefix(folder, maildir.Inbox+"."); ok && r.Kind() == ActFolder {
			folder = "." + rest
		}
		fmt.Fprintf(&b, "##Op:%s\n##Header:%s\n##Value:%s\n##Folder:%s\n##From:%s\n", r.Op, r.Header, r.Value, folder, r.From)
		if r.PlainString {
			b.WriteString("##PlainString\n")
		}
		if r.DoesNot {
			b.WriteString("##DoesNot\n")
		}
		if r.Body {
			b.WriteString("##Body\n")
		}
		if r.Continue {
			b.WriteString("##Continue\n")
		}
		if err := r.checkCondition(); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "##Name:%s\n\n\nif (", r.Name)
		if r.DoesNot {
			b.WriteString("!")
		}
		b.WriteString("(" + r.condition() + "))\n{\n")
		deliver := "to"
		if r.Continue {
			deliver = "cc"
		}
		switch r.Kind() {
		case ActForward:
			fmt.Fprintf(&b, "    %s \"| $SENDMAIL -f \" '\"\"' \" %s\"\n", deliver, r.Action[1:])
		case ActBounce:
			fmt.Fprintf(&b, "    echo \"%s\"\n    EXITCODE=%d\n    exit\n", r.Action[1:], exitBounce)
		case ActAutoreply:
			a, _ := ParseAutoreply(r.Action[1:])
			if r.From != "" {
				b.WriteString("    AUTOREPLYFROM=" + singleQuote(r.From) + "\n")
			} else {
				b.WriteString("    AUTOREPLYFROM=\"$FROM\"\n")
			}
			fmt.Fprintf(&b, "   `%s -A \"X-Sender: $FROM\" -A \"From: $AUTOREPLYFROM\"", rc.Mailbot)
			if a.DSN {
				b.WriteString(" -M \"$FROM\"")
			}
			fmt.Fprintf(&b, " -m \"%s/autoresponses/%s\"", rc.Maildir, a.Name)
			if a.NoQuote {
				b.WriteString(" -N")
			}
			if a.Days > 0 {
				fmt.Fprintf(&b, " -d \"%s/autoresponses/%s.dat\" -D %d", rc.Maildir, a.Name, a.Days)
			}
			b.WriteString(" $SENDMAIL -t -f \"\"`\n")
		case ActDiscard:
			b.WriteString("    exit\n")
		default:
			fmt.Fprintf(&b, "   %s \"%s/.\"\n", deliver, folderDir(rc.Maildir, r.Action))
		}
		b.WriteString("}\n\n")
	}
	fmt.Fprintf(&b, "to \"%s/.\"\n", rc.Maildir)
	if b.Len() > MaxFile {
		return nil, fmt.Errorf("the filter file would be larger than %d KiB", MaxFile>>10)
	}
	// sqwebmail leaves it to maildrop to find out that a pattern is no
	// good, at the next delivery (which then waits); refuse it now.
	prog, err := rules.Parse(".mailfilter", b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("the delivery agent cannot read the filter: %w", err)
	}
	if len(prog.Warnings) > 0 {
		// A pattern that is not a regular expression would never match.
		return nil, fmt.Errorf("the delivery agent cannot read the filter: %s", prog.Warnings[0])
	}
	return b.Bytes(), nil
}

// checkCondition parses the rule's test alone in maildrop's language, so
// that a pattern the delivery agent cannot use is refused now, and named:
// sqwebmail leaves that to maildrop at the next delivery, which then
// waits (a parse error) or never matches (a pattern that is not a
// regular expression).
func (r Rule) checkCondition() error {
	prog, err := rules.Parse("rule", []byte("if ("+r.condition()+")\n{\n}\n"))
	if err != nil {
		var perr *rules.SyntaxError
		if errors.As(err, &perr) {
			return fmt.Errorf("the pattern %.60q cannot be used: %s", r.Value, perr.Msg)
		}
		return fmt.Errorf("the pattern %.60q cannot be used: %w", r.Value, err)
	}
	if len(prog.Warnings) > 0 {
		w := prog.Warnings[0]
		if _, msg, ok := strings.Cut(w, ": "); ok {
			w = msg
		}
		return fmt.Errorf("the pattern %.60q is not a regular expression (%s)", r.Value, w)
	}
	return nil
}

// folderDir is a folder's directory as the recipe names it: INBOX is the
// Maildir, INBOX.Name is Maildir/.Name.
func folderDir(md, folder string) string {
	if folder == maildir.Inbox {
		return md
	}
	return md + "/." + strings.TrimPrefix(folder, maildir.Inbox+".")
}

// condition is the rule's test in maildrop's language.
func (r Rule) condition() string {
	v := r.pattern()
	switch r.Op {
	case StartsWith:
		if r.Body {
			return "/^" + v + "/:b"
		}
		return "/^" + r.Header + ": *" + v + "/"
	case EndsWith:
		if r.Body {
			return "/" + v + "$/:b"
		}
		return "/^" + r.Header + ":.*" + v + "$/"
	case Contains:
		if r.Body {
			return "/" + v + "/:b"
		}
		return "/^" + r.Header + ":.*" + v + "/"
	case HasRecipient:
		return "hasaddr(\"" + r.Value + "\")"
	case MimeMultipart:
		return "/^Content-Type: *multipart\\/mixed/"
	case TextPlain:
		return " (! /^Content-Type:/) || /^Content-Type: text\\/plain$/ || /^Content-Type: text\\/plain;/"
	case IsLargerThan:
		return "$SIZE > " + r.Value
	}
	return "1"
}

// pattern is the rule's value as a pattern: a regular expression as it
// is (a leading blank escaped), plain text with every ASCII character but
// letters and digits escaped.
func (r Rule) pattern() string {
	v := r.Value
	if !r.PlainString {
		if v != "" && (v[0] == ' ' || v[0] == '\t') {
			return "\\" + v
		}
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x80 && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// singleQuote is s as a maildrop literal: in single quotes, with \ before
// ' and \.
func singleQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, c := range []byte(s) {
		if c == '\'' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('\'')
	return b.String()
}
