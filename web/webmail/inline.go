package webmail

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/html"

	pmime "postern/mailbox/mime"
)

// Inline images of HTML mail (RFC 2392): an HTML part's <img
// src="cid:X"> names the part of the same message whose Content-ID is
// <X>, typically a sibling under multipart/related (RFC 2387). The
// sanitizer keeps cid: sources (and only those, besides data:); after it,
// rewriteCIDs points each at /mail/inline for that part, or at
// about:blank when the message has no such image. Every other address
// stays blocked, so no image from outside the message is fetched.

// inlineTypes are the image types shown inline. SVG is not among them: it
// is a document that may carry script.
var inlineTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
}

// maxCIDLen bounds a Content-ID taken from a cid: URL.
const maxCIDLen = 998

// normalizeContentID is a Content-ID header's msg-id without its angle
// brackets and blanks (RFC 2045 7, RFC 5322 3.6.4).
func normalizeContentID(raw string) string {
	s := strings.TrimSpace(raw)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	return strings.TrimSpace(s)
}

// cidOfURL is the Content-ID a cid: URL names, its %hh escapes undone
// (RFC 2392 2); ok is false for any other URL.
func cidOfURL(src string) (string, bool) {
	src = strings.TrimSpace(src)
	if len(src) < 4 || !strings.EqualFold(src[:4], "cid:") {
		return "", false
	}
	id, err := url.PathUnescape(src[4:])
	if err != nil || id == "" || len(id) > maxCIDLen {
		return "", false
	}
	return id, true
}

// inlineImages maps the Content-IDs of a message's images that may be
// shown inline to their part paths. Embedded messages are not searched:
// a cid: URL names a part of its own message.
func inlineImages(root *pmime.Part) map[string][]int {
	out := map[string][]int{}
	var walk func(p *pmime.Part, path []int)
	walk = func(p *pmime.Part, path []int) {
		if len(p.Children) > 0 {
			for i, c := range p.Children {
				walk(c, append(append([]int(nil), path...), i+1))
			}
			return
		}
		if p.ID == "" || p.Truncated || !inlineTypes[p.Type+"/"+p.Subtype] {
			return
		}
		if id := normalizeContentID(p.ID); id != "" {
			if _, seen := out[id]; !seen { // the first part with an ID wins
				out[id] = path
			}
		}
	}
	if len(root.Children) == 0 {
		walk(root, []int{1})
	} else {
		walk(root, nil)
	}
	return out
}

// rewriteCIDs rewrites the cid: references of sanitized HTML: an <img>
// source that resolve knows becomes the address it returns, any other
// cid: source becomes about:blank, and a cid: link loses its href.
// Everything else is passed on byte for byte.
func rewriteCIDs(sanitized string, resolve func(cid string) (string, bool)) string {
	if !strings.Contains(strings.ToLower(sanitized), "cid:") {
		return sanitized
	}
	var b strings.Builder
	z := html.NewTokenizer(strings.NewReader(sanitized))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		raw := z.Raw()
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			b.Write(raw)
			continue
		}
		tok := z.Token()
		changed := false
		attrs := tok.Attr[:0]
		for _, a := range tok.Attr {
			switch {
			case tok.Data == "img" && a.Key == "src":
				if id, ok := cidOfURL(a.Val); ok || strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "cid:") {
					a.Val = "about:blank"
					if ok {
						if u, found := resolve(id); found {
							a.Val = u
						}
					}
					changed = true
				}
			case a.Key == "href" || a.Key == "cite" || a.Key == "src":
				if strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "cid:") {
					changed = true
					continue // a cid: link leads nowhere a browser can go
				}
			}
			attrs = append(attrs, a)
		}
		if !changed {
			b.Write(raw)
			continue
		}
		tok.Attr = attrs
		b.WriteString(tok.String())
	}
	return b.String()
}

// inline serves an image of a message for an HTML part's <img>: only the
// image types in inlineTypes, of a part with a Content-ID, under the
// same sandbox as attachments.
func (h *Handler) inline(w http.ResponseWriter, r *http.Request) {
	u := h.session(w, r)
	if u == nil {
		return
	}
	v := r.URL.Query()
	path, ok := parsePartPath(v.Get("part"))
	if !ok {
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	om, ok := h.openMessage(w, r, u, v)
	if !ok {
		return
	}
	defer om.file.Close()
	p := om.root.Find(path)
	if p == nil || len(p.Children) > 0 || p.ID == "" || p.Truncated || !inlineTypes[p.Type+"/"+p.Subtype] {
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	data, err := pmime.Decoded(om.file, om.root, path)
	if err != nil {
		h.log.Warn("webmail: read inline image", "user", u.s.Login, "folder", om.folder, "uid", om.m.UID, "err", err)
		http.Error(w, "image cannot be read", http.StatusNotFound)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", p.Type+"/"+p.Subtype)
	disp := mime.FormatMediaType("inline", map[string]string{"filename": partFilename(p, path)})
	if disp == "" {
		disp = "inline"
	}
	hd.Set("Content-Disposition", disp)
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}
