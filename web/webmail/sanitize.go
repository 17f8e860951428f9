package webmail

import (
	"net/url"
	"regexp"

	"github.com/microcosm-cc/bluemonday"
)

// newHTMLPolicy is what HTML mail may keep: text structure and formatting,
// lists, tables, links that open in a new tab without telling their target
// where they were found (rel="noopener noreferrer"), and images only when
// they are inside the message (data: URIs, and cid: references to its
// parts, which rewriteCIDs then points at /mail/inline). Everything else goes: script,
// style sheets and style attributes, event handlers, forms, frames,
// objects, and every URL that would make the browser fetch something
// (remote images, backgrounds) or act (javascript:, relative links into
// this site). The page's Content-Security-Policy blocks the same a second
// time.
func newHTMLPolicy() *bluemonday.Policy {
	p := textPolicy()
	p.AllowAttrs("alt").Matching(bluemonday.Paragraph).OnElements("img")
	p.AllowAttrs("width", "height").Matching(bluemonday.NumberOrPercent).OnElements("img")
	p.AllowAttrs("src").OnElements("img")
	p.AllowDataURIImages()
	// cid: (RFC 2392) passes here for rewriteCIDs to resolve or blank; a
	// cid: link that passes too loses its href there.
	p.AllowURLSchemeWithCustomPolicy("cid", func(*url.URL) bool { return true })
	// The schemes above are allowed for every URL attribute, src too: an
	// image from anywhere but the message itself loses its address here.
	p.RewriteSrc(func(u *url.URL) {
		if u.Scheme != "data" && u.Scheme != "cid" {
			*u = url.URL{Scheme: "about", Opaque: "blank"}
		}
	})
	return p
}

// newComposePolicy is what HTML the user composes (and the HTML quoted
// in a reply or forward) may keep before it is sent: the text structure
// and links of newHTMLPolicy, no images at all (a pasted image, a data:
// URI or a remote one, is dropped: it would be a tracking pixel or a
// hidden attachment), no style attributes, and a blockquote may say it
// is a citation (type="cite", as mail clients mark a quoted message).
func newComposePolicy() *bluemonday.Policy {
	p := textPolicy()
	p.AllowAttrs("type").Matching(regexp.MustCompile(`^cite$`)).OnElements("blockquote")
	return p
}

// textPolicy is the part of the policies shared by mail shown and mail
// composed: formatting, lists, tables and links, nothing that fetches.
func textPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "div", "span", "b", "i", "u", "em", "strong", "small", "big",
		"s", "strike", "del", "ins", "sub", "sup", "code", "pre", "tt", "kbd", "samp", "var",
		"blockquote", "q", "cite", "abbr", "address", "hr", "center", "font",
		"h1", "h2", "h3", "h4", "h5", "h6")
	p.AllowLists()
	p.AllowTables()
	p.AllowAttrs("dir").Matching(bluemonday.Direction).Globally()
	p.AllowAttrs("lang").Matching(regexp.MustCompile(`^[a-zA-Z]{2,8}(-[a-zA-Z0-9]{1,8})*$`)).Globally()
	p.AllowAttrs("title").Matching(bluemonday.Paragraph).Globally()
	p.AllowAttrs("align").Matching(regexp.MustCompile(`^(?i)(left|right|center|justify)$`)).Globally()

	p.AllowAttrs("href").OnElements("a")
	p.AllowURLSchemes("http", "https", "mailto")
	p.AllowRelativeURLs(false) // a relative link would lead into the webmail itself
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true) // also adds rel="noopener"
	return p
}
