package reformime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is what Run takes from the process; tests set it.
type Config struct {
	Env      []string         // environment: charset variables, and the base for -X programs
	Now      func() time.Time // clock for generated boundaries and file names
	Hostname string
	PID      int
	Dir      string    // directory -x writes into ("" is the current one)
	TTY      io.Reader // answers for interactive -x; nil opens /dev/tty
}

// ReformimeMain runs reformime with args (without the program name) and
// returns its exit status.
func ReformimeMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	host, _ := os.Hostname()
	return Run(context.Background(), Config{Env: os.Environ(), Now: time.Now, Hostname: host, PID: os.Getpid()}, args, stdin, stdout, stderr)
}

// options is the parsed command line.
type options struct {
	info, decode  bool
	rewrite       int // 0 none, 1 -r, 7 -r7, 8 -r8
	digest        bool
	dsn           int // 1 -d, 2 -D
	extract       int // 1 -x, 2 -X
	prefix        string
	prefixSet     bool
	program       []string
	sections      string
	charset       string
	utf8          bool
	headerDone    bool // a -h, -H, -o or -O was given: stdin is not read
	headerOp      byte
	headerArg     string
	headerCharset string
	digestFiles   []string
}

const usageText = `Usage: reformime [options]
    -d - parse a delivery status notification.
    -e - extract contents of MIME section.
    -x - extract MIME section to a file.
    -X - pipe MIME section to a program.
    -i - show MIME info.
    -s n.n.n.n[,n.n.n.n]* - specify MIME section(s).
    -r - rewrite message, filling in missing MIME headers.
    -r7 - also convert 8bit/raw encoding to quoted-printable, if possible.
    -r8 - also convert quoted-printable encoding to 8bit, if possible.
    -c charset - default charset for rewriting, -o, and -O.
    -m [file] [file]... - create a MIME message digest.
    -h "header" - decode RFC 2047-encoded header.
    -o "header" - encode unstructured header using RFC 2047.
    -O "header" - encode address list header using RFC 2047.
`

// Run is ReformimeMain with its environment passed in.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	r := &runner{cfg: cfg, out: out, stderr: stderr, ctx: ctx}
	r.opt.charset = defaultCharset(cfg.Env)

	o := &r.opt
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		optarg := a[2:]
		needArg := func() bool {
			if optarg == "" && i+1 < len(args) {
				i++
				optarg = args[i]
			}
			return true
		}
		switch a[1] {
		case 'c':
			needArg()
			if !isUTF8Name(optarg) && lookupCharset(optarg) == nil {
				fmt.Fprintf(stderr, "Unknown charset: %s\n", optarg)
				return 1
			}
			o.charset = optarg
		case 's':
			needArg()
			o.sections = optarg
		case 'i':
			o.info = true
		case 'e':
			o.decode = true
		case 'r':
			o.rewrite = 1
			switch optarg {
			case "7":
				o.rewrite = 7
			case "8":
				o.rewrite = 8
			}
		case 'm':
			o.digest = true
		case 'd':
			o.dsn = 1
		case 'D':
			o.dsn = 2
		case 'u':
			o.utf8 = true
		case 'x':
			o.extract = 1
			o.prefix, o.prefixSet = optarg, optarg != ""
		case 'X':
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "reformime: Invalid -X option.")
				return 1
			}
			o.extract = 2
			o.program = args[i+1:]
			i = len(args)
		case 'h', 'H', 'o', 'O':
			// Courier prints only the last of these, with the charset
			// given before it.
			needArg()
			o.headerOp, o.headerArg, o.headerCharset = a[1], optarg, o.charset
			o.headerDone = true
		default:
			fmt.Fprint(stderr, usageText)
			return 1
		}
	}
	if o.headerDone {
		o.charset = o.headerCharset
		r.headerOption(o.headerOp, o.headerArg)
		return 0
	}
	if o.digest {
		return r.makeDigest(stdin)
	}
	msg, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "reformime: %v\n", err)
		return 1
	}
	r.msg = msg
	r.root = Parse(msg)
	switch {
	case o.info:
		return r.forSections(r.printInfo)
	case o.decode:
		return r.forSections(r.extractToStdout)
	case o.rewrite != 0:
		return r.rewriteMessage()
	case o.dsn != 0:
		return r.printDSN()
	case o.extract != 0:
		return r.forSections(r.extractSection)
	case o.utf8:
		return r.toUTF8()
	}
	r.printStructure(r.root, "1")
	return 0
}

// runner holds one run's state.
type runner struct {
	ctx    context.Context
	cfg    Config
	opt    options
	out    *bufio.Writer
	stderr io.Writer
	msg    []byte
	root   *Part
	seq    int // counter for generated file names
	taken  int // counter for the names tried when one is taken
}

func (r *runner) printStructure(p *Part, id string) {
	fmt.Fprintln(r.out, id)
	for i, c := range p.Children {
		r.printStructure(c, id+"."+strconv.Itoa(i+1))
	}
}

// forSections calls fn for each section named by -s, or every section in
// order when there is no -s. A missing section stops the run.
func (r *runner) forSections(fn func(p *Part, id string) int) int {
	if r.opt.sections == "" {
		var rc int
		var walk func(p *Part, id string) bool
		walk = func(p *Part, id string) bool {
			if rc = fn(p, id); rc != 0 {
				return false
			}
			for i, c := range p.Children {
				if !walk(c, id+"."+strconv.Itoa(i+1)) {
					return false
				}
			}
			return true
		}
		walk(r.root, "1")
		return rc
	}
	for _, id := range strings.Split(r.opt.sections, ",") {
		p := r.root.Find(id)
		if p == nil {
			r.out.Flush()
			fmt.Fprintf(r.stderr, "reformime: MIME section %s not found.\n", id)
			return 1
		}
		if rc := fn(p, id); rc != 0 {
			return rc
		}
	}
	return 0
}

// Find returns the section a MIME reference tag ("1.2.1") names, or nil.
func (p *Part) Find(id string) *Part {
	num := func() int {
		n := 0
		for id != "" && id[0] >= '0' && id[0] <= '9' {
			if n < 1<<24 {
				n = n*10 + int(id[0]-'0')
			}
			id = id[1:]
		}
		return n
	}
	if num() != 1 {
		return nil
	}
	for {
		if id == "" {
			return p
		}
		if id[0] != '.' {
			return nil
		}
		id = id[1:]
		if id == "" {
			return p
		}
		n := num()
		if n < 1 || n > len(p.Children) {
			return nil
		}
		p = p.Children[n-1]
	}
}

// charset returns the section's charset for -i: its parameter, or the
// default.
func (r *runner) charsetOf(p *Part) string {
	if cs, ok := p.Param("charset"); ok && cs != "" {
		return strings.ToLower(cs)
	}
	if p.charset != "" {
		return strings.ToLower(p.charset)
	}
	return r.opt.charset
}

// cte is the transfer encoding -i shows: as written, or 8bit.
func (p *Part) cte() string {
	if p.CTE == "" {
		return "8bit"
	}
	return p.CTE
}

func (r *runner) printInfo(p *Part, id string) int {
	w := r.out
	fmt.Fprintf(w, "section: %s\ncontent-type: %s\n", id, p.ContentType)
	if name, ok := p.Param("name"); ok {
		fmt.Fprintf(w, "content-name: %s\n", name)
	}
	fmt.Fprintf(w, "content-transfer-encoding: %s\ncharset: %s\n", p.cte(), r.charsetOf(p))
	if _, ok := p.Get("content-disposition"); ok && p.mime {
		disp, params := p.disposition()
		fmt.Fprintf(w, "content-disposition: %s\n", disp)
		for _, pr := range params {
			if pr.Name == "filename" {
				fmt.Fprintf(w, "content-disposition-filename: %s\n", pr.Value)
			}
		}
	}
	if p.mime {
		// The last field of each counts; a Content-ID is shown in <>.
		for _, h := range []string{"content-id", "content-description", "content-language", "content-md5"} {
			vs := p.Values(h)
			if len(vs) == 0 {
				continue
			}
			v := strings.TrimSpace(vs[len(vs)-1])
			if h == "content-id" {
				v = "<" + strings.Trim(strings.Map(dropSpace, v), "<>") + ">"
			}
			fmt.Fprintf(w, "%s: %s\n", h, v)
		}
	}
	start, body, end, lines, bodyLines := p.Pos()
	fmt.Fprintf(w, "starting-pos: %d\nstarting-pos-body: %d\nending-pos: %d\nline-count: %d\nbody-line-count: %d\n",
		start, body, end, lines, bodyLines)
	if r.opt.sections == "" {
		// Courier separates the sections with a blank line only when
		// it lists them all.
		w.WriteString("\n")
	}
	return 0
}

// body returns the section's body as it is in the message.
func (r *runner) body(p *Part) []byte {
	_, start, end, _, _ := p.Pos()
	start, end = min(start, int64(len(r.msg))), min(end, int64(len(r.msg)))
	if end < start {
		end = start
	}
	return r.msg[start:end]
}

func (r *runner) extractToStdout(p *Part, id string) int {
	r.out.Write(decodeBody(p.CTE, r.body(p)))
	return 0
}

// defaultCharset is Courier's: $MM_CHARSET, then $CHARSET, then the
// locale's.
func defaultCharset(env []string) string {
	get := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	if v := get("MM_CHARSET"); v != "" {
		return v
	}
	if v := get("CHARSET"); v != "" {
		return v
	}
	loc := get("LC_ALL")
	if loc == "" {
		loc = get("LC_CTYPE")
	}
	if loc == "" {
		loc = get("LANG")
	}
	l := strings.ToLower(loc)
	if strings.Contains(l, "utf-8") || strings.Contains(l, "utf8") {
		return "UTF-8"
	}
	return "US-ASCII"
}
