package mailbot

import (
	"errors"
	"strconv"
	"strings"
)

// ErrUsage is a command line mailbot cannot run with. Courier exits 75
// (EX_TEMPFAIL) for it, so that a filter that calls mailbot wrongly defers
// the mail instead of losing it; so do we.
var ErrUsage = errors.New("mailbot: usage")

// options is mailbot's command line.
type options struct {
	textFile      string   // -t
	mimeFile      string   // -m
	charset       string   // -c
	recipients    []string // -r, lower-cased
	replyEnvelope bool     // -e
	mode          string   // -T
	noQuote       bool     // -N
	fullMessage   bool     // -a
	forwardSep    string   // -F
	salutation    string   // -S
	dbFile        string   // -d
	days          int      // -D
	subject       *string  // -s
	extraHeaders  []string // -A
	dsnFrom       string   // -M
	feedbackType  string   // -R
	sender        string   // -f
	draftMaildir  string   // -l
	showOnly      bool     // -n
	command       []string // the mail program and its arguments
}

// parseArgs reads the command line as Courier's mailbot does: options up to
// the first argument not starting with "-" (or "--"), values glued or in the
// next argument; -f takes only a glued value (empty: $SENDER).
func parseArgs(args []string, getenv func(string) string) (*options, error) {
	o := &options{mode: "reply", charset: "UTF-8", forwardSep: "--- Forwarded message ---", salutation: "%F writes:", days: 1}
	n := 0
	value := func(arg string) string {
		if v := arg[2:]; v != "" {
			return v
		}
		if n+1 < len(args) {
			n++
			return args[n]
		}
		return ""
	}
	for ; n < len(args); n++ {
		arg := args[n]
		if !strings.HasPrefix(arg, "-") {
			break
		}
		if arg == "--" {
			n++
			break
		}
		if strings.HasPrefix(arg, "--feedback-") {
			n++ // feedback report parameters: accepted, see Run
			continue
		}
		if len(arg) < 2 {
			return nil, ErrUsage
		}
		switch arg[1] {
		case 'c':
			if v := value(arg); v != "" {
				o.charset = v
			}
		case 't':
			o.textFile = value(arg)
		case 'm':
			o.mimeFile = value(arg)
		case 'r':
			for _, a := range strings.FieldsFunc(value(arg), func(r rune) bool { return r == ',' || r == ' ' }) {
				o.recipients = append(o.recipients, strings.ToLower(a))
			}
		case 'M':
			o.dsnFrom = value(arg)
		case 'R':
			o.feedbackType = value(arg)
		case 'd':
			o.dbFile = value(arg)
		case 'e':
			o.replyEnvelope = true
		case 'T':
			if v := value(arg); v != "" {
				o.mode = v
			}
		case 'N':
			o.noQuote = true
		case 'a':
			o.fullMessage = true
		case 'F':
			if v := value(arg); v != "" {
				o.forwardSep = v
			}
		case 'S':
			if v := value(arg); v != "" {
				o.salutation = v
			}
		case 'D':
			d, _ := strconv.Atoi(strings.TrimSpace(value(arg)))
			o.days = d
		case 'A':
			if v := value(arg); v != "" {
				o.extraHeaders = append(o.extraHeaders, v)
			}
		case 's':
			v := value(arg)
			o.subject = &v
		case 'f':
			if v := arg[2:]; v != "" {
				o.sender = v
			} else {
				o.sender = getenv("SENDER")
			}
		case 'l':
			o.draftMaildir = value(arg)
		case 'n':
			o.showOnly = true
		default:
			return nil, ErrUsage
		}
	}
	o.command = args[n:]
	if len(o.command) == 0 {
		o.command = []string{"sendmail", "-f", ""}
	}
	if o.dsnFrom != "" {
		o.mode = "replydsn"
	}
	switch o.mode {
	case "replydraft":
		if o.draftMaildir == "" {
			return nil, ErrUsage
		}
	case "reply", "replyall", "replydsn", "forward", "forwardatt":
		if (o.textFile == "") == (o.mimeFile == "") {
			return nil, ErrUsage
		}
	default:
		// feedback and replyfeedback (RFC 5965 reports) are not built.
		return nil, ErrUsage
	}
	return o, nil
}
