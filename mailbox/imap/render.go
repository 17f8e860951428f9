package imap

import (
	stdmime "mime"
	"strconv"
	"strings"

	"postern/mailbox/mime"
)

// Rendering of mailbox/mime values as IMAP ENVELOPE, BODY and BODYSTRUCTURE
// (RFC 3501 section 7.4.2).

// appendEnvelope writes ("date" "subject" (from) (sender) (reply-to) (to)
// (cc) (bcc) "in-reply-to" "message-id").
func appendEnvelope(b []byte, env *mime.Envelope) []byte {
	if env == nil {
		env = &mime.Envelope{}
	}
	b = append(b, '(')
	b = appendNString(b, env.Date)
	b = append(b, ' ')
	b = appendNString(b, env.Subject)
	for _, list := range [][]mime.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = append(b, ' ')
		b = appendAddressList(b, list)
	}
	b = append(b, ' ')
	b = appendNString(b, env.InReplyTo)
	b = append(b, ' ')
	b = appendNString(b, env.MessageID)
	return append(b, ')')
}

func appendNString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "NIL"...)
	}
	return appendString(b, s)
}

func appendAddressList(b []byte, list []mime.Address) []byte {
	if len(list) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range list {
		b = append(b, '(')
		b = appendNString(b, encodeWord(a.Name))
		b = append(b, ' ')
		b = appendNString(b, a.ADL)
		b = append(b, ' ')
		if a.Group && a.Host == "" && a.Mailbox == "" {
			b = append(b, "NIL NIL"...) // end of group
		} else if a.Group && a.Host == "" {
			b = appendNString(b, a.Mailbox) // start of group: its name
			b = append(b, " NIL"...)
		} else {
			b = appendNString(b, a.Mailbox)
			b = append(b, ' ')
			b = appendNString(b, a.Host)
		}
		b = append(b, ')')
	}
	return append(b, ')')
}

// encodeWord re-encodes a decoded display name as an RFC 2047 word when it
// is not plain ASCII, since IMAP4rev1 strings are 7-bit.
func encodeWord(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] < 0x20 {
			return stdmime.BEncoding.Encode("utf-8", s)
		}
	}
	return s
}

// appendBodyStructure writes BODY (ext=false) or BODYSTRUCTURE (ext=true).
func appendBodyStructure(b []byte, p *mime.Part, ext bool, depth int) []byte {
	if depth > 64 {
		// The parser bounds depth already; this keeps the renderer safe
		// on its own.
		return append(b, `("application" "octet-stream" NIL NIL NIL "7BIT" 0)`...)
	}
	if p.Type == "multipart" && len(p.Children) > 0 {
		b = append(b, '(')
		for _, c := range p.Children {
			b = appendBodyStructure(b, c, ext, depth+1)
		}
		b = append(b, ' ')
		b = appendString(b, strings.ToUpper(p.Subtype))
		if ext {
			b = append(b, ' ')
			b = appendParams(b, p.Params)
			b = append(b, ' ')
			b = appendDisposition(b, p)
			b = append(b, ' ')
			b = appendLanguage(b, p.Language)
			b = append(b, ' ')
			b = appendNString(b, p.Location)
		}
		return append(b, ')')
	}
	typ, sub := p.Type, p.Subtype
	if typ == "multipart" { // a multipart without parts: show it as opaque
		typ, sub = "application", "octet-stream"
	}
	if typ == "" {
		typ, sub = "text", "plain"
	}
	b = append(b, '(')
	b = appendString(b, strings.ToUpper(typ))
	b = append(b, ' ')
	b = appendString(b, strings.ToUpper(sub))
	b = append(b, ' ')
	b = appendParams(b, p.Params)
	b = append(b, ' ')
	b = appendNString(b, p.ID)
	b = append(b, ' ')
	b = appendNString(b, p.Description)
	b = append(b, ' ')
	enc := p.Encoding
	if enc == "" {
		enc = "7BIT"
	}
	b = appendString(b, enc)
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.Size, 10)
	switch {
	case p.Message != nil && typ == "message":
		b = append(b, ' ')
		b = appendEnvelope(b, p.Message.Envelope)
		b = append(b, ' ')
		b = appendBodyStructure(b, p.Message, ext, depth+1)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	case typ == "text":
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	}
	if ext {
		b = append(b, ' ')
		b = appendNString(b, p.MD5)
		b = append(b, ' ')
		b = appendDisposition(b, p)
		b = append(b, ' ')
		b = appendLanguage(b, p.Language)
		b = append(b, ' ')
		b = appendNString(b, p.Location)
	}
	return append(b, ')')
}

func appendParams(b []byte, params []mime.Param) []byte {
	if len(params) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for i, p := range params {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendString(b, strings.ToUpper(p.Name))
		b = append(b, ' ')
		b = appendString(b, encodeWord(p.Value))
	}
	return append(b, ')')
}

func appendDisposition(b []byte, p *mime.Part) []byte {
	if p.Disposition == "" {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	b = appendString(b, strings.ToUpper(p.Disposition))
	b = append(b, ' ')
	b = appendParams(b, p.DispParams)
	return append(b, ')')
}

func appendLanguage(b []byte, langs []string) []byte {
	switch len(langs) {
	case 0:
		return append(b, "NIL"...)
	case 1:
		return appendString(b, langs[0])
	}
	b = append(b, '(')
	for i, l := range langs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendString(b, l)
	}
	return append(b, ')')
}
