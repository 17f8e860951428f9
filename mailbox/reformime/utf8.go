package reformime

import (
	"fmt"
	"strings"

	"postern/mailbox/mime"
)

// toUTF8 is -u: every section's header fields, RFC 2047-decoded, and the
// text of its text/* body, decoded and converted to UTF-8, one after the
// other, for a search to read.
func (r *runner) toUTF8() int {
	stop := false
	var walk func(p *Part)
	walk = func(p *Part) {
		if stop {
			return
		}
		for _, f := range p.Header {
			fmt.Fprintf(r.out, "%s: %s\n", f.Name, decodeWords(unfoldSpace(f.Value), "utf-8"))
		}
		if len(p.Children) == 0 && !p.IsMultipart() && (strings.HasPrefix(p.ContentType, "text/") || strings.HasPrefix(p.ContentType, "message/")) {
			cs := r.opt.charset
			if v, ok := p.Param("charset"); ok && v != "" {
				cs = v
			} else if p.charset != "" {
				cs = p.charset
			}
			if !isUTF8Name(cs) && lookupCharset(cs) == nil {
				// Courier's conversion fails on a charset it does not
				// know, and that ends the output.
				stop = true
				return
			}
			r.out.WriteString(validUTF8(mime.ToUTF8(cs, decodeBody(p.CTE, r.body(p)))))
		}
		for _, c := range p.Children {
			walk(c)
		}
	}
	walk(r.root)
	return 0
}

// validUTF8 drops the bytes that are not UTF-8, as Courier's conversion
// does.
func validUTF8(s string) string {
	return strings.ToValidUTF8(s, "")
}

// unfoldSpace joins folded lines with a space, as -u shows them.
func unfoldSpace(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", " ")
}
