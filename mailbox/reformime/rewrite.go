package reformime

import (
	"bytes"
	"fmt"
	"strings"

	"postern/mailbox/makemime"
)

// autoconverted is the field Courier adds where -r changed an encoding;
// the version is Courier's, so that filters that look for it still match.
const autoconverted = "X-Mime-Autoconverted: from %s to %s by reformime (maildrop 2.9.3)\n"

// rewriteMessage is -r, -r7 and -r8: the message written again with
// complete MIME headers (RFC 2045 4, 5, 6): a MIME-Version, a Content-Type
// with a charset for text, a Content-Transfer-Encoding that matches the
// content, fresh delimiters in every multipart; -r7 turns 8-bit text into
// quoted-printable, -r8 quoted-printable into 8bit.
func (r *runner) rewriteMessage() int {
	r.rewritePart(r.root, true)
	return 0
}

// header fields the rewrite writes itself.
func isMIMEField(name string) bool {
	switch strings.ToLower(name) {
	case "mime-version", "content-type", "content-transfer-encoding":
		return true
	}
	return false
}

func (r *runner) rewritePart(p *Part, top bool) {
	var block bytes.Buffer
	if top {
		block.WriteString("Mime-Version: 1.0\n")
	}
	block.WriteString("Content-Type: " + r.contentTypeValue(p) + "\n")

	body := r.body(p)
	var newBody []byte
	var autoconv string
	// A multipart without sections is written as a leaf.
	leaf := len(p.Children) == 0
	if leaf {
		cte, conv, out := r.rewriteEncoding(p, body)
		newBody = out
		block.WriteString("Content-Transfer-Encoding: " + cte + "\n")
		autoconv = conv
	}

	// The other fields keep their order. The MIME fields go first in a
	// section of a multipart; in a message, where its MIME-Version was, or
	// at the end.
	at := -1
	if top {
		at = len(p.Header)
		for i, f := range p.Header {
			if !f.noColon && strings.EqualFold(f.Name, "mime-version") {
				at = i
				break
			}
		}
	} else {
		at = 0
	}
	written := false
	for i, f := range p.Header {
		if i == at {
			r.out.Write(block.Bytes())
			written = true
		}
		if isMIMEField(f.Name) && !f.noColon {
			continue
		}
		if f.noColon {
			r.out.WriteString(f.Name + ": \n")
			continue
		}
		r.out.Write(bytes.ReplaceAll(f.Raw, []byte("\r\n"), []byte("\n")))
		if len(f.Raw) > 0 && f.Raw[len(f.Raw)-1] != '\n' {
			r.out.WriteString("\n")
		}
	}
	if !written {
		r.out.Write(block.Bytes())
	}
	r.out.WriteString(autoconv)
	r.out.WriteString("\n")

	switch {
	case leaf:
		r.out.Write(newBody)
		if top && p.Parent == nil && len(newBody) > 0 && newBody[len(newBody)-1] != '\n' {
			r.out.WriteString("\n")
		}
	case p.rfc822:
		for _, c := range p.Children {
			r.rewritePart(c, true)
		}
	default:
		r.out.WriteString(preamble + "\n")
		for _, c := range p.Children {
			fmt.Fprintf(r.out, "--%s\n", p.newBoundary)
			r.rewritePart(c, false)
			r.out.WriteString("\n")
		}
		fmt.Fprintf(r.out, "--%s--\n", p.newBoundary)
	}
}

// contentTypeValue is the rewritten Content-Type: the type, a new
// boundary for a multipart, a charset for text, the other parameters.
func (r *runner) contentTypeValue(p *Part) string {
	var b strings.Builder
	b.WriteString(p.ContentType)
	multi := p.IsMultipart() && len(p.Children) > 0
	if multi {
		r.seq++
		p.newBoundary = fmt.Sprintf("=_%s-%d-%d-%04d-%d", r.cfg.Hostname, r.cfg.PID, r.cfg.Now().Unix(), 1, r.seq+1)
	}
	hasCharset := false
	for _, pr := range p.rawParams {
		if pr.Name == "boundary" {
			continue
		}
		v := pr.Value
		if pr.Name == "charset" {
			v = strings.ToLower(v)
			hasCharset = true
		}
		b.WriteString("; " + pr.Name + "=" + quoteParam(v))
	}
	if !hasCharset && (p.charset != "" || strings.HasPrefix(p.ContentType, "text/")) {
		cs := r.opt.charset
		if p.charset != "" {
			cs = strings.ToLower(p.charset)
		}
		b.WriteString("; charset=" + quoteParam(cs))
	}
	if multi {
		b.WriteString(`; boundary="` + p.newBoundary + `"`)
	}
	return b.String()
}

// quoteParam quotes a parameter value that is not a token (RFC 2045 5.1).
func quoteParam(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t()<>@,;:\\\"/[]?=.'%") {
		return v
	}
	return `"` + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`) + `"`
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// rewriteEncoding decides a leaf's transfer encoding and body.
func (r *runner) rewriteEncoding(p *Part, body []byte) (cte, conv string, out []byte) {
	declared := p.CTE
	switch declared {
	case "base64", "x-uuencode", "x-uue":
		return declared, "", body
	case "quoted-printable":
		if r.opt.rewrite == 8 {
			dec := decodeQP(body)
			to := "8bit"
			if !has8bit(dec) {
				to = "7bit"
			}
			return to, fmt.Sprintf(autoconverted, declared, to), dec
		}
		return declared, "", body
	}
	eight := has8bit(body)
	if eight && r.opt.rewrite == 7 {
		from := declared
		if from == "" || from == "7bit" {
			from = "8bit"
		}
		return "quoted-printable", fmt.Sprintf(autoconverted, from, "quoted-printable"), makemime.EncodeQP(body)
	}
	switch {
	case declared == "":
		if eight {
			return "8bit", "", body
		}
		return "7bit", "", body
	case (declared == "8bit" || declared == "raw" || declared == "binary") && !eight:
		return "7bit", fmt.Sprintf(autoconverted, declared, "7bit"), body
	}
	return declared, "", body
}
