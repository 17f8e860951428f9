package policyd

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"postern/filters"
)

// enhancedAtStart is an RFC 3463 code at the start of a reply text.
var enhancedAtStart = regexp.MustCompile(`^([245])\.\d{1,3}\.\d{1,3}(\s|$)`)

// parseAction reads an action as access(5) defines it, as Postfix does
// for a policy server's answer:
//
//	OK                      accept: the later checks of the stage are skipped
//	DUNNO                   no opinion
//	REJECT [text]           554 5.7.1 (Postfix's access_map_reject_code); a
//	                        text may start with its own 5.X.Y, a defer's with 4.X.Y
//	DEFER [text]            450 4.7.1 (access_map_defer_code)
//	DEFER_IF_PERMIT [text]  450 4.7.1 unless a later check of the stage
//	                        rejects (what postgrey answers to greylist)
//	DEFER_IF_REJECT [text]  a later reject of the stage becomes 450 4.7.1
//	4NN/5NN [X.Y.Z] text    that reply
//	HOLD [text]             quarantine, the queued copies held (Result.Hold)
//	DISCARD [text]          the same: Postern never drops accepted mail
//	PREPEND name: value     the header field added, no opinion
//	WARN/INFO text          logged, no opinion
//	REDIRECT user@domain    the message goes to that address instead of
//	                        all its recipients (Result.Envelope.Redirect)
//	BCC user@domain         a copy to that address too (Envelope.Bcc)
//
// FILTER (Postern has no content-filter transports) and DELAY and FREEZE
// (not actions of Postfix 3.x) are logged and ignored. An empty or
// unknown action, or a REDIRECT or BCC without a usable address, is an
// error (the policy server is broken).
func parseAction(action string) (filters.Result, error) {
	action = strings.TrimSpace(action)
	word, text, _ := strings.Cut(action, " ")
	text = strings.TrimSpace(text)
	r := filters.Result{Reason: "action=" + action}
	switch up := strings.ToUpper(word); {
	case up == "OK":
		r.Verdict = filters.Accept
	case up == "DUNNO":
	case up == "REJECT":
		r.Verdict, r.Code, r.Enhanced = filters.Reject, 554, "5.7.1"
		r.Enhanced, text = enhanced('5', r.Enhanced, text)
		r.Message = orDefault(text, "Access denied")
	case up == "DEFER":
		r.Verdict, r.Code, r.Enhanced = filters.Tempfail, 450, "4.7.1"
		r.Enhanced, text = enhanced('4', r.Enhanced, text)
		r.Message = orDefault(text, "Service unavailable, try again later")
	case up == "DEFER_IF_PERMIT" || up == "DEFER_IF_REJECT":
		// No opinion now; the pipeline applies the deferral at the end
		// of the stage (filters.Result.DeferIfPermit, DeferIfReject).
		rep := &filters.Reply{Code: 450}
		rep.Enhanced, text = enhanced('4', "4.7.1", text)
		rep.Text = orDefault(text, "Service unavailable")
		if !printable(rep.Text) {
			return r, fmt.Errorf("reply text with control characters: %q", action)
		}
		if up == "DEFER_IF_PERMIT" {
			r.DeferIfPermit = rep
		} else {
			r.DeferIfReject = rep
		}
	case up == "HOLD" || up == "DISCARD":
		r.Verdict, r.Hold = filters.Quarantine, true
	case up == "PREPEND":
		name, _, ok := strings.Cut(text, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || !printable(text) {
			return r, fmt.Errorf("PREPEND without a header field: %q", action)
		}
		r.HeaderFields = []string{text}
	case up == "WARN" || up == "INFO":
	case up == "REDIRECT" || up == "BCC":
		addr, err := envelopeAddress(text)
		if err != nil {
			return r, fmt.Errorf("%s: %v", up, err)
		}
		if up == "REDIRECT" {
			r.Envelope = &filters.EnvelopeChange{Redirect: addr}
		} else {
			r.Envelope = &filters.EnvelopeChange{Bcc: []string{addr}}
		}
	case up == "FILTER":
		r.Reason += " (ignored: Postern has no content-filter transports; use a milter)"
	case up == "DELAY" || up == "FREEZE":
		r.Reason += " (ignored: not an action of Postfix 3.x, nor of Postern)"
	case len(word) == 3 && (word[0] == '4' || word[0] == '5') && isDigits(word):
		code, _ := strconv.Atoi(word)
		r.Code = code
		r.Verdict = filters.Reject
		r.Enhanced = "5.7.1"
		if word[0] == '4' {
			r.Verdict, r.Enhanced = filters.Tempfail, "4.7.1"
		}
		r.Enhanced, text = enhanced(word[0], r.Enhanced, text)
		r.Message = orDefault(text, "Access denied")
	default:
		return r, fmt.Errorf("unknown action %q", action)
	}
	if r.Message != "" && !printable(r.Message) {
		return r, fmt.Errorf("reply text with control characters: %q", action)
	}
	return r, nil
}

// enhanced takes an RFC 3463 code off the start of text when its class
// is class, as access(5) allows ("DEFER_IF_PERMIT 4.2.0 Greylisted");
// else def stays and text is unchanged.
func enhanced(class byte, def, text string) (string, string) {
	if m := enhancedAtStart.FindString(text); m != "" && m[0] == class {
		return strings.TrimSpace(m), strings.TrimSpace(text[len(m):])
	}
	return def, text
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// printable: no control characters (a reply or header text must be one
// line).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' && s[i] != '\t' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// maxAddress bounds an address a policy server gives: RFC 5321 4.5.3.1
// allows a 64-octet local part and a 255-octet domain.
const maxAddress = 64 + 1 + 255

// envelopeAddress checks the user@domain of a REDIRECT or BCC (in angle
// brackets or not): one word, a local part, a domain name or address
// literal. Whether it can be delivered to is the router's to say.
func envelopeAddress(text string) (string, error) {
	a := text
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = a[1 : len(a)-1]
	}
	at := strings.LastIndexByte(a, '@')
	switch {
	case a == "":
		return "", errors.New("no address")
	case len(a) > maxAddress:
		return "", fmt.Errorf("address too long: %.40q...", a)
	case at <= 0 || at == len(a)-1:
		return "", fmt.Errorf("%q is not user@domain", text)
	case strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }):
		return "", fmt.Errorf("%q is not one address", text)
	}
	domain := a[at+1:]
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return a, nil
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") ||
			strings.ContainsFunc(label, notHostnameChar) {
			return "", fmt.Errorf("%q: bad domain", text)
		}
	}
	return a, nil
}

// notHostnameChar: not a letter, digit or hyphen (RFC 1123 2.1), nor
// non-ASCII (an internationalized name, RFC 6531).
func notHostnameChar(r rune) bool {
	return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80)
}
