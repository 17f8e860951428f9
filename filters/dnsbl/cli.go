package dnsbl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"postern/filters/dns"
	"postern/internal/cliflags"
)

// Exit statuses of CheckMain.
const (
	ExitChecked = 0 // the lists were asked and the verdict printed, whatever it is
	ExitFailure = 1 // the check could not run (configuration or DNS setup)
	ExitUsage   = 2 // bad arguments
)

// DefaultConfigDir is where CheckMain reads the dnsbl setting when neither
// --config nor --zone nor POSTERN_CONFIG says otherwise.
const DefaultConfigDir = "/etc/postern"

// CheckMain is `postern check dnsbl`: it asks every configured zone (or the
// zones given with --zone) about an IP address (DNSBL/DNSWL zones) or a
// domain (RHSBL zones), prints each answer (listed or not, the code, the
// TXT reason, errors), then the combined score and verdict with the reply a
// client would see.
//
//	postern check dnsbl IP|DOMAIN [--zone Z ...] [--config DIR] [--dns HOST:PORT]
//	                              [--testpoints] [--timeout D]
//	postern check dnsbl --message FILE|- [--zone Z ...] [--config DIR] ...
//
// A --zone value is a zone line in either syntax of the dnsbl setting
// ("zen.example.org weight=10 codes=127.0.0.2-127.0.0.11" or
// "-block=zen.example.org"). With --testpoints each zone is also asked about
// the RFC 5782 section 5 test points (127.0.0.2 and ::ffff:7f00:2 or the
// domain "test" listed; 127.0.0.1 or "invalid" not listed), which shows
// whether the zone works at all.
//
// With --message the subject is a message (a file, or "-" for the standard
// input): the link domains of its body are extracted as at DATA and asked
// of the zones keyed on=body, or, when none is, of every zone as a URI list.
func CheckMain(args []string, stdout, stderr io.Writer) int {
	return CheckMainInput(args, os.Stdin, stdout, stderr)
}

// maxCheckMessage bounds the message --message reads.
const maxCheckMessage = 64 << 20

// CheckMainInput is CheckMain reading "--message -" from stdin.
func CheckMainInput(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check dnsbl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var zones multiFlag
	var servers serverFlag
	fs.Var(&zones, "zone", "zone to ask, as a dnsbl setting line (repeatable; default: the dnsbl setting)")
	configDir := fs.String("config", "", "configuration directory (default $POSTERN_CONFIG or "+DefaultConfigDir+")")
	fs.Var(&servers, "dns", "DNS server to ask, as HOST:PORT (repeatable; default: /etc/resolv.conf)")
	testPoints := fs.Bool("testpoints", false, "also ask each zone about the RFC 5782 test points")
	timeout := fs.Duration("timeout", 0, "time limit of the lookups (default: the setting's, or 5s)")
	message := fs.String("message", "", "check the link domains of this message's body (a file, or - for standard input) instead of an IP or domain")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern check dnsbl IP|DOMAIN [--zone Z ...] [--config DIR] [--dns HOST:PORT] [--testpoints] [--timeout D]")
		fmt.Fprintln(fs.Output(), "       postern check dnsbl --message FILE|- [--zone Z ...] [--config DIR] [--dns HOST:PORT] [--timeout D]")
		fs.PrintDefaults()
	}
	// The subject may come before or after the flags.
	var positional []string
	rest := args
	for {
		if err := cliflags.Parse(fs, rest, stdout); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0 // the usage is printed
			}
			return ExitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if *message != "" && len(positional) != 0 {
		fmt.Fprintln(stderr, "postern check dnsbl: --message and an IP address or domain exclude each other")
		return ExitUsage
	}
	if *message == "" && len(positional) != 1 {
		fmt.Fprintln(stderr, "postern check dnsbl: want exactly one IP address or domain")
		fs.Usage()
		return ExitUsage
	}
	subject := ""
	if len(positional) == 1 {
		subject = positional[0]
	}

	var cfg Config
	if len(zones) > 0 {
		cfg = DefaultConfig()
		for _, zl := range zones {
			zs, err := ParseZoneLine(zl)
			if err != nil {
				fmt.Fprintf(stderr, "postern check dnsbl: %v\n", err)
				return ExitUsage
			}
			cfg.Zones = append(cfg.Zones, zs...)
		}
		if *configDir != "" {
			fmt.Fprintln(stderr, "postern check dnsbl: --zone and --config exclude each other")
			return ExitUsage
		}
	} else {
		dir := *configDir
		if dir == "" {
			dir = os.Getenv("POSTERN_CONFIG")
		}
		if dir == "" {
			dir = DefaultConfigDir
		}
		var err error
		if cfg, err = Load(dir); err != nil {
			fmt.Fprintf(stderr, "postern check dnsbl: %v\n", err)
			return ExitFailure
		}
		if len(cfg.Zones) == 0 {
			fmt.Fprintf(stderr, "postern check dnsbl: no zones in %s/%s; give --zone\n", dir, SettingName)
			return ExitFailure
		}
	}
	if *timeout > 0 {
		cfg.Timeout = *timeout
	}
	r, err := dns.New(dns.Options{Servers: servers, Timeout: 3 * time.Second, Attempts: 2})
	if err != nil {
		fmt.Fprintf(stderr, "postern check dnsbl: %v\n", err)
		return ExitFailure
	}
	sub := Subjects{}
	var msg []byte
	if *message != "" {
		if msg, err = readMessage(*message, stdin); err != nil {
			fmt.Fprintf(stderr, "postern check dnsbl: %v\n", err)
			return ExitFailure
		}
		cfg.Zones = bodyZones(cfg.Zones)
	} else if ip, err := netip.ParseAddr(strings.Trim(subject, "[]")); err == nil {
		sub[SubjectIP] = []string{ip.Unmap().String()}
		fmt.Fprintf(stdout, "client-ip: %s\n", ip.Unmap())
	} else if d := NormalizeDomain(subject); d != "" {
		// A domain is asked once of every domain list, whatever it is
		// keyed on in the session.
		sub[SubjectHELO] = []string{d}
		cfg.Zones = domainZones(cfg.Zones)
		fmt.Fprintf(stdout, "domain: %s\n", d)
	} else {
		fmt.Fprintf(stderr, "postern check dnsbl: %q is neither an IP address nor a domain\n", subject)
		return ExitUsage
	}
	f, err := New(Options{Config: cfg, Resolver: r})
	if err != nil {
		fmt.Fprintf(stderr, "postern check dnsbl: %v\n", err)
		return ExitFailure
	}
	if msg != nil {
		body := f.BodyDomains(bytes.NewReader(msg))
		for _, d := range body {
			fmt.Fprintf(stdout, "body-domain: %s\n", d)
		}
		if len(body) == 0 {
			fmt.Fprintln(stdout, "no link domains in the message body")
		}
		sub.WithBody(body)
	}
	ctx := context.Background()
	ev := f.Evaluate(ctx, sub)
	if len(ev.Lookups) == 0 {
		fmt.Fprintln(stdout, "no zone is keyed on this kind of subject")
	}
	for _, l := range ev.Lookups {
		writeLookup(stdout, &l, ev)
	}
	if *testPoints {
		writeTestPoints(ctx, stdout, r, cfg)
	}
	fmt.Fprintf(stdout, "score: %s", formatScore(ev.Score))
	if cfg.Threshold > 0 {
		fmt.Fprintf(stdout, " (limit %s)", formatScore(cfg.Threshold))
	}
	fmt.Fprintln(stdout)
	switch {
	case ev.Accept != nil:
		fmt.Fprintf(stdout, "verdict: accept (allowed by %s)\n", ev.Accept.Zone.Name)
	case ev.Rejects():
		fmt.Fprintln(stdout, "verdict: reject")
		fmt.Fprintf(stdout, "reply: 550 5.7.1 %s\n", ev.RejectMessage())
	case cfg.DNSErrorTempfail && len(ev.TempErrors()) > 0:
		fmt.Fprintln(stdout, "verdict: tempfail")
		fmt.Fprintf(stdout, "reply: 451 4.4.3 DNS list lookup failed (%s), try again later\n", ev.TempErrors()[0].Zone.Name)
	case len(ev.Hits) > 0:
		fmt.Fprintln(stdout, "verdict: none (listed, but no zone or threshold rejects)")
	default:
		fmt.Fprintln(stdout, "verdict: none")
	}
	for _, k := range sortedKeys(ev.Vars) {
		if ev.Vars[k] != "" {
			fmt.Fprintf(stdout, "var: %s=%s\n", k, ev.Vars[k])
		}
	}
	return ExitChecked
}

// bodyZones keeps the zones keyed on=body; when there are none, every
// zone is asked as a URI list (a --zone line need not say on=body).
func bodyZones(zones []*Zone) []*Zone {
	var out []*Zone
	for _, z := range zones {
		if containsSubject(z.Subjects, SubjectBody) {
			c := *z
			c.Subjects = []Subject{SubjectBody}
			out = append(out, &c)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, z := range zones {
		c := *z
		c.Subjects = []Subject{SubjectBody}
		out = append(out, &c)
	}
	return out
}

// readMessage reads the --message argument: a file or "-" for stdin,
// at most maxCheckMessage bytes.
func readMessage(name string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("message: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCheckMessage+1))
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", name, err)
	}
	if len(b) > maxCheckMessage {
		return nil, fmt.Errorf("message %s: larger than %d MiB", name, maxCheckMessage>>20)
	}
	return b, nil
}

// domainZones keeps the domain lists, each asked once (as if about a HELO
// name) for a domain given on the command line.
func domainZones(zones []*Zone) []*Zone {
	var out []*Zone
	for _, z := range zones {
		for _, s := range z.Subjects {
			if s != SubjectIP {
				c := *z
				c.Subjects = []Subject{SubjectHELO}
				out = append(out, &c)
				break
			}
		}
	}
	return out
}

func writeLookup(w io.Writer, l *Lookup, ev *Evaluation) {
	z := l.Zone
	head := fmt.Sprintf("zone %s (%s on %s, weight %s, %s, codes %s, %s)", z.Name, z.Type, l.Subject,
		formatScore(z.Weight), z.Action, z.Codes, z.Origin)
	switch {
	case l.Err != nil:
		fmt.Fprintf(w, "%s: error: %v\n", head, l.Err)
	case l.Listed:
		state := "listed"
		for _, s := range ev.Skipped {
			if s.Zone == z && s.Value == l.Value {
				state = "listed, ignored (" + z.Var + " already set by an earlier zone)"
			}
		}
		code := ""
		if l.Code.IsValid() {
			code = " " + l.Code.String()
		}
		fmt.Fprintf(w, "%s: %s%s\n", head, state, code)
		fmt.Fprintf(w, "  query: %s\n", l.Query)
		if l.TXT != "" {
			fmt.Fprintf(w, "  txt: %s\n", l.TXT)
		}
	default:
		suffix := ""
		if len(l.Answers) > 0 {
			suffix = fmt.Sprintf(" (answer %s does not match the codes)", joinAddrs(l.Answers))
		}
		fmt.Fprintf(w, "%s: not listed%s\n", head, suffix)
		fmt.Fprintf(w, "  query: %s\n", l.Query)
	}
}

func joinAddrs(a []netip.Addr) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

type testPoint struct {
	subject Subject
	value   string
	want    bool
}

// writeTestPoints asks each zone about RFC 5782 section 5's test points.
func writeTestPoints(ctx context.Context, w io.Writer, r *dns.Resolver, cfg Config) {
	for _, z := range cfg.Zones {
		// The test points are asked without the zone's code filter: the
		// question is whether the zone answers at all.
		probe := *z
		probe.Codes = Codes{}
		probe.FetchTXT = false
		points := []testPoint{{SubjectHELO, "test", true}, {SubjectHELO, "invalid", false}}
		if containsSubject(z.Subjects, SubjectIP) {
			points = []testPoint{{SubjectIP, "127.0.0.2", true}, {SubjectIP, "127.0.0.1", false}}
		}
		tctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		for _, p := range points {
			l := Ask(tctx, r, &probe, p.subject, p.value)
			verdict := "ok"
			switch {
			case l.Err != nil:
				verdict = "error: " + l.Err.Error()
			case l.Listed != p.want:
				verdict = "WRONG: the zone does not follow RFC 5782"
			}
			state := "not listed"
			if l.Listed {
				state = "listed"
			}
			fmt.Fprintf(w, "testpoint %s %s: %s (%s)\n", z.Name, p.value, state, verdict)
		}
		cancel()
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

type serverFlag []string

func (m *serverFlag) String() string { return strings.Join(*m, ",") }

// Set adds a server; a bare address gets port 53.
func (m *serverFlag) Set(v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		v = net.JoinHostPort(strings.Trim(v, "[]"), "53")
	}
	*m = append(*m, v)
	return nil
}
