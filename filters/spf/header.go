package spf

import (
	"strings"
)

// ReceivedSPF renders res as a Received-SPF header field (RFC 7208 section
// 9.1), without the trailing CRLF:
//
//	Received-SPF: pass (mx.example.org: domain of a@example.com designates
//	 192.0.2.1 as permitted sender) client-ip=192.0.2.1;
//	 envelope-from="a@example.com"; helo=mail.example.com;
//	 receiver=mx.example.org; mechanism="ip4:192.0.2.0/24"; identity=mailfrom
//
// (shown folded; the field is returned on one line). receiver is our host
// name; empty omits it.
func ReceivedSPF(res Result, receiver string) string {
	var b strings.Builder
	b.WriteString("Received-SPF: ")
	b.WriteString(res.Code.String())
	b.WriteString(" (")
	if receiver != "" {
		b.WriteString(commentText(receiver))
		b.WriteString(": ")
	}
	b.WriteString(commentText(resultComment(res)))
	b.WriteString(")")
	pairs := [][2]string{}
	if res.IP.IsValid() {
		pairs = append(pairs, [2]string{"client-ip", res.IP.String()})
	}
	if res.Identity == IdentityMailFrom {
		pairs = append(pairs, [2]string{"envelope-from", res.Sender})
	}
	if res.Helo != "" {
		pairs = append(pairs, [2]string{"helo", res.Helo})
	}
	if receiver != "" {
		pairs = append(pairs, [2]string{"receiver", receiver})
	}
	if res.Mechanism != "" && res.Code != TempError && res.Code != PermError {
		pairs = append(pairs, [2]string{"mechanism", res.Mechanism})
	}
	if (res.Code == TempError || res.Code == PermError) && res.Reason != "" {
		pairs = append(pairs, [2]string{"problem", res.Reason})
	}
	if res.Identity != "" {
		pairs = append(pairs, [2]string{"identity", res.Identity})
	}
	for i, kv := range pairs {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString("; ")
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(value(kv[1]))
	}
	return b.String()
}

// AuthenticationResults renders res as the spf method of an
// Authentication-Results header field (RFC 8601 section 2.7.2, RFC 7208
// section 9.2): "spf=pass smtp.mailfrom=example.com" or
// "spf=none smtp.helo=mail.example.com". The caller writes the authserv-id
// and joins it with the other methods.
func AuthenticationResults(res Result) string {
	var b strings.Builder
	b.WriteString("spf=")
	b.WriteString(res.Code.String())
	if res.Code == Fail && res.Explanation != "" {
		b.WriteString(" (")
		b.WriteString(commentText(res.Explanation))
		b.WriteString(")")
	}
	if res.Identity == IdentityHELO {
		b.WriteString(" smtp.helo=")
		b.WriteString(value(res.Helo))
	} else {
		// RFC 8601 section 2.7.2: the domain part of RFC5321.MailFrom.
		b.WriteString(" smtp.mailfrom=")
		b.WriteString(value(res.Domain))
	}
	return b.String()
}

func resultComment(res Result) string {
	who := "domain of " + res.Sender
	if res.Identity == IdentityHELO {
		who = "domain of " + res.Helo
	}
	ip := res.IP.String()
	switch res.Code {
	case Pass:
		return who + " designates " + ip + " as permitted sender"
	case Fail:
		return who + " does not designate " + ip + " as permitted sender"
	case SoftFail:
		return "domain of transitioning " + strings.TrimPrefix(who, "domain of ") + " does not designate " + ip + " as permitted sender"
	case Neutral:
		return ip + " is neither permitted nor denied by " + who
	case None:
		return who + " does not publish an SPF policy"
	case TempError:
		return "temporary error in processing during lookup of " + res.Domain
	default:
		return "permanent error in processing " + who
	}
}

// commentText makes s safe inside a header comment (RFC 5322 section 3.2.2):
// parentheses and backslashes are quoted, control characters dropped.
func commentText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f || c >= 0x80:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// value writes a dot-atom as is and anything else as a quoted-string (RFC
// 5322 section 3.2.4).
func value(s string) string {
	if isDotAtom(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f || c >= 0x80:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '.' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
