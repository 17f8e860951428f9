package reformail

import (
	"errors"
	"strings"
)

// errUsage is Courier's one answer to any bad command line.
var errUsage = errors.New("Invalid arguments.")

// mode is what reformail does with the message besides reformatting it.
type mode int

const (
	modeCopy    mode = iota // write the reformatted message
	modeExtract             // -x/-X: write chosen header fields only
	modeCache               // -D: duplicate detection, no output
	modeSplit               // -s: one command per message of a mailbox
)

// fromMode is the mbox "From " line handling (-f).
type fromMode int

const (
	fromKeep   fromMode = iota
	fromRemove          // -f0: From_ line becomes Return-Path:, body unquoted
	fromAdd             // -f1: Return-Path:/Errors-To:/From: becomes a From_ line, body quoted
)

// options is the parsed command line. The header lists keep the arguments
// exactly as given: matching lower-cases them at use, as Courier does.
type options struct {
	mode      mode
	crlf      bool // -d1
	catenate  bool // -c
	from      fromMode
	addIfNew  []string // -a
	addAlways []string // -A
	addOld    []string // -i: existing field renamed Old-…
	replace   []string // -I
	rename    []string // -R: old and new name joined, as Courier keeps them
	keepFirst []string // -u
	keepLast  []string // -U
	extract   []string // -x
	extractX  []string // -X

	cacheLen  string   // -D len (atol semantics)
	cacheFile string   // -D file
	command   []string // -s command and its arguments
}

// parseArgs reads reformail's command line the way Courier's does: options
// end at the first argument that does not start with "-", at "--" or "-",
// and after -s's command; an option's value is either glued to it (-aX: y)
// or the next argument (-a 'X: y'). newMessageID fills the value of an
// empty "-a Message-ID:" / "-A Message-ID:".
func parseArgs(args []string, newMessageID func() string) (*options, error) {
	o := &options{}
	cacheSet := false
	n := 0
	// value returns the option's value, taking the next argument when the
	// option stands alone; ok is false when there is none.
	value := func(arg string) (string, bool) {
		if v := arg[2:]; v != "" {
			return v, true
		}
		if n+1 < len(args) {
			n++
			return args[n], true
		}
		return "", false
	}
	needValue := func(arg string) (string, error) {
		v, ok := value(arg)
		if !ok || v == "" || cacheSet {
			return "", errUsage
		}
		return v, nil
	}
loop:
	for ; n < len(args); n++ {
		arg := args[n]
		if arg == "--" || arg == "-" {
			n++
			break
		}
		if !strings.HasPrefix(arg, "-") {
			break
		}
		var err error
		var v string
		switch arg[1] {
		case 'd':
			v = arg[2:]
			if v == "" {
				v = "1"
			}
			o.crlf = atol(v) != 0
		case 'c':
			o.catenate = true
		case 'f':
			v, ok := value(arg)
			if !ok || strings.HasPrefix(v, "0") {
				o.from = fromRemove
			} else {
				o.from = fromAdd
			}
		case 'D':
			v, ok := value(arg)
			if !ok || n+1 >= len(args) || cacheSet {
				return nil, errUsage
			}
			n++
			o.cacheLen, o.cacheFile = v, args[n]
			o.mode, cacheSet = modeCache, true
		case 'a', 'A':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			if strings.EqualFold(v, "Message-ID:") {
				v += " " + newMessageID()
			}
			if arg[1] == 'a' {
				o.addIfNew = append(o.addIfNew, v)
			} else {
				o.addAlways = append(o.addAlways, v)
			}
		case 'i':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.addOld = append(o.addOld, v)
		case 'I':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.replace = append(o.replace, v)
		case 'R':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			if n+1 >= len(args) {
				return nil, errUsage
			}
			n++
			o.rename = append(o.rename, v+args[n])
		case 'u':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.keepFirst = append(o.keepFirst, v)
		case 'U':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.keepLast = append(o.keepLast, v)
		case 'x':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.extract = append(o.extract, v)
		case 'X':
			if v, err = needValue(arg); err != nil {
				return nil, err
			}
			o.extractX = append(o.extractX, v)
		case 's':
			if cacheSet {
				return nil, errUsage
			}
			o.mode = modeSplit
			n++
			break loop
		default:
			return nil, errUsage
		}
	}
	if len(o.extract) > 0 || len(o.extractX) > 0 {
		if o.mode != modeCopy {
			return nil, errUsage
		}
		o.mode = modeExtract
	}
	if o.mode == modeSplit {
		if n >= len(args) {
			return nil, errUsage
		}
		o.command = args[n:]
	}
	return o, nil
}

// atol is C's atol: optional blanks and sign, then leading digits; anything
// else ends the number, and no digits is 0. Saturates instead of overflowing.
func atol(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n > (1<<62)/10 {
			n = 1 << 62
			break
		}
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		return -n
	}
	return n
}
