package webmail

import (
	"html"
	"net/url"
	"strings"
	"unicode"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Bounds of htmlToText's output: quotes and lists deeper than this are
// written at this depth, so that a hostile nesting cannot make every
// line kilobytes long.
const (
	maxTextQuoteDepth = 10
	maxTextListDepth  = 8
)

// htmlToText is the text/plain version of an HTML body (the alternative
// sent beside a composed HTML message, RFC 2046 5.1.4): paragraphs and
// headings are separated by a blank line, line breaks and block ends end
// a line, list items start with "- " (indented two spaces a level),
// links are written "text <url>", quotations get "> " a level, and
// script, style and the document head say nothing. It reads the HTML
// with a tokenizer, in one pass and without recursion, whatever the
// nesting.
func htmlToText(s string) string {
	w := &textWriter{}
	z := xhtml.NewTokenizer(strings.NewReader(s))
	skip := 0 // inside script, style, head, title: their text is not the message
	pre := 0
	var links []linkStart
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case xhtml.TextToken:
			if skip == 0 {
				w.text(tok.Data, pre > 0)
			}
		case xhtml.StartTagToken, xhtml.SelfClosingTagToken:
			selfClosing := tt == xhtml.SelfClosingTagToken
			switch tok.DataAtom {
			case atom.Script, atom.Style, atom.Head, atom.Title, atom.Template, atom.Noscript, atom.Textarea, atom.Select:
				if !selfClosing {
					skip++
				}
			case atom.Br:
				w.lineBreak()
			case atom.Hr:
				w.block(true)
				w.text("----", true)
				w.block(true)
			case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Table, atom.Address, atom.Center:
				w.block(true)
			case atom.Pre:
				w.block(true)
				pre++
			case atom.Div, atom.Tr, atom.Dt, atom.Dd, atom.Section, atom.Article, atom.Header, atom.Footer:
				w.block(false)
			case atom.Blockquote:
				w.block(true)
				w.quote++
			case atom.Ul, atom.Ol:
				w.block(w.lists == 0)
				w.lists++
			case atom.Li:
				w.block(false)
				w.marker = true
			case atom.Td, atom.Th:
				if w.line.Len() > 0 {
					w.space = true
				}
			case atom.A:
				if !selfClosing {
					links = append(links, linkStart{href: linkTarget(tok), at: w.line.Len(), lines: w.lines})
				}
			case atom.Img:
				for _, a := range tok.Attr {
					if a.Key == "alt" && strings.TrimSpace(a.Val) != "" {
						w.text("["+a.Val+"]", false)
					}
				}
			}
		case xhtml.EndTagToken:
			switch tok.DataAtom {
			case atom.Script, atom.Style, atom.Head, atom.Title, atom.Template, atom.Noscript, atom.Textarea, atom.Select:
				if skip > 0 {
					skip--
				}
			case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Table, atom.Address, atom.Center:
				w.block(true)
			case atom.Pre:
				w.block(true)
				if pre > 0 {
					pre--
				}
			case atom.Div, atom.Tr, atom.Dt, atom.Dd, atom.Li, atom.Section, atom.Article, atom.Header, atom.Footer:
				w.block(false)
			case atom.Blockquote:
				w.block(true)
				if w.quote > 0 {
					w.quote--
				}
			case atom.Ul, atom.Ol:
				if w.lists > 0 {
					w.lists--
				}
				w.block(w.lists == 0)
			case atom.A:
				if n := len(links); n > 0 {
					l := links[n-1]
					links = links[:n-1]
					w.endLink(l)
				}
			}
		}
	}
	w.block(false)
	out := strings.TrimRight(w.out.String(), "\n")
	return strings.ToValidUTF8(out, "") + "\n"
}

type linkStart struct {
	href  string
	at    int // where the link's text starts in the line
	lines int // on which line (w.lines) it started
}

// linkTarget is the address an <a> leads to when it is one a reader can
// follow from a text (http, https, mailto); "" otherwise.
func linkTarget(tok xhtml.Token) string {
	for _, a := range tok.Attr {
		if a.Key != "href" {
			continue
		}
		u, err := url.Parse(strings.TrimSpace(a.Val))
		if err != nil {
			return ""
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https", "mailto":
			return strings.Map(func(r rune) rune {
				if unicode.IsSpace(r) || unicode.IsControl(r) {
					return -1
				}
				return r
			}, u.String())
		}
	}
	return ""
}

// textWriter collects the text: the line being filled, and the lines
// done with their quote prefixes.
type textWriter struct {
	out       strings.Builder
	line      strings.Builder
	lines     int  // lines written so far
	quote     int  // blockquote depth
	lastQuote int  // the depth of the last line written
	lists     int  // list depth
	marker    bool // the next text starts a list item
	item      bool // the line is (a continuation of) a list item
	space     bool // a space is due before the next word
	blank     bool // a blank line is due before the next line
	started   bool // a line has been written
}

func (w *textWriter) prefix() string {
	q := min(w.quote, maxTextQuoteDepth)
	return strings.Repeat("> ", q)
}

// text adds text to the line: white space collapsed to one space, or
// kept as it is in <pre>.
func (w *textWriter) text(s string, pre bool) {
	if pre {
		for i, part := range strings.Split(s, "\n") {
			if i > 0 {
				w.lineBreak()
			}
			if part != "" {
				w.start()
				w.line.WriteString(strings.TrimRight(part, "\r"))
			}
		}
		return
	}
	for _, r := range s {
		if unicode.IsSpace(r) {
			if w.line.Len() > 0 {
				w.space = true
			}
			continue
		}
		w.start()
		if w.space {
			w.line.WriteByte(' ')
			w.space = false
		}
		w.line.WriteRune(r)
	}
}

// start begins the line when it is empty: a list item's marker or its
// continuation's indent.
func (w *textWriter) start() {
	if w.line.Len() > 0 {
		return
	}
	w.space = false
	if w.lists > 0 {
		indent := strings.Repeat("  ", min(w.lists, maxTextListDepth)-1)
		if w.marker {
			w.line.WriteString(indent + "- ")
			w.marker, w.item = false, true
		} else if w.item {
			w.line.WriteString(indent + "  ")
		}
	}
}

// lineBreak ends the line; a break on an empty line is an empty line.
func (w *textWriter) lineBreak() {
	if w.line.Len() == 0 {
		if w.started {
			w.writeLine("")
		}
		return
	}
	w.flush()
}

// block ends the line at a block's edge; a paragraph's edge leaves a
// blank line before whatever comes next.
func (w *textWriter) block(paragraph bool) {
	w.flush()
	w.item = w.item && w.lists > 0
	if paragraph {
		w.blank = true
	}
}

func (w *textWriter) flush() {
	if w.line.Len() == 0 {
		return
	}
	if w.blank && w.started {
		// The blank line between two depths of quoting belongs to the
		// outer one.
		q := w.quote
		w.quote = min(w.quote, w.lastQuote)
		w.writeLine("")
		w.quote = q
	}
	w.writeLine(w.line.String())
	w.line.Reset()
	w.space = false
}

func (w *textWriter) writeLine(s string) {
	p := w.prefix()
	if s == "" {
		p = strings.TrimRight(p, " ")
	}
	w.out.WriteString(p + s + "\n")
	w.lines++
	w.lastQuote = w.quote
	w.started = true
	w.blank = false
}

// endLink writes the link's address after its text, unless the text is
// the address already (or the link has no text: then the address alone).
func (w *textWriter) endLink(l linkStart) {
	if l.href == "" {
		return
	}
	label := ""
	if l.lines == w.lines && l.at <= w.line.Len() {
		label = strings.TrimSpace(w.line.String()[l.at:])
	}
	shown := strings.TrimPrefix(l.href, "mailto:")
	if label == l.href || label == shown || (l.lines == w.lines && strings.Contains(label, shown)) {
		return
	}
	if label == "" && l.lines == w.lines {
		w.text(shown, false)
		return
	}
	if w.line.Len() > 0 {
		w.space = true
	}
	w.text("<"+shown+">", false)
}

// textToHTML is plain text as HTML, for quoting a text message in an
// HTML reply: escaped, its lines kept.
func textToHTML(s string) string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = html.EscapeString(l)
	}
	return "<div>" + strings.Join(lines, "<br>\n") + "</div>"
}
