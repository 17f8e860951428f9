package mailbot

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// content is the autoresponse text with its MIME header fields.
type content struct {
	header string // Content-Type: … lines, each ending in "\n"
	body   []byte
}

// loadContent reads -t (flowed text), -m (MIME part) or the -l draft.
func loadContent(o *options) (*content, bool, error) {
	flowed := fmt.Sprintf("Content-Type: text/plain; format=flowed; delsp=yes; charset=%q\n", o.charset)
	switch {
	case o.textFile != "":
		b, err := os.ReadFile(o.textFile)
		if err != nil {
			return nil, false, fmt.Errorf("mailbot: %w", err)
		}
		return &content{header: flowed, body: b}, true, nil
	case o.mimeFile != "":
		b, err := os.ReadFile(o.mimeFile)
		if err != nil {
			return nil, false, fmt.Errorf("mailbot: %w", err)
		}
		c := splitMIMEPart(b, false)
		if !strings.HasPrefix(strings.ToLower(headerValue(c.header, "Content-Type")), "text/plain") {
			return nil, false, fmt.Errorf("mailbot: %s must specify text/plain MIME type", o.mimeFile)
		}
		return c, true, nil
	default:
		path, err := newestDraft(o.draftMaildir)
		if err != nil || path == "" {
			return nil, false, err // no draft: nothing to send, as Courier
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, false, fmt.Errorf("mailbot: draft: %w", err)
		}
		c := splitMIMEPart(b, true)
		if c.header == "" {
			c.header = flowed
		}
		return c, true, nil
	}
}

// splitMIMEPart separates a MIME part's header from its body, dropping
// Content-Transfer-Encoding (the reply says 8bit). With onlyContent, only
// Content-* fields are kept (a draft's From:, To:… are not ours).
func splitMIMEPart(b []byte, onlyContent bool) *content {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	head, body, found := bytes.Cut(b, []byte("\n\n"))
	if !found {
		head, body = b, nil
	}
	var out strings.Builder
	keep := false
	for _, line := range strings.Split(string(head), "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := strings.Cut(line, ":")
			name = strings.ToLower(strings.TrimSpace(name))
			keep = name != "content-transfer-encoding" && (!onlyContent || strings.HasPrefix(name, "content-"))
		}
		if keep {
			out.WriteString(line + "\n")
		}
	}
	return &content{header: out.String(), body: body}
}

func headerValue(header, name string) string {
	for _, line := range strings.Split(header, "\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// newestDraft is the most recent message in the maildir's new/ and cur/
// (by modification time, then name), skipping those marked deleted.
func newestDraft(dir string) (string, error) {
	type cand struct {
		path string
		name string
		mod  time.Time
	}
	var all []cand
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || e.IsDir() {
				continue
			}
			if _, flags, ok := strings.Cut(name, ":2,"); ok && strings.Contains(flags, "T") {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			all = append(all, cand{filepath.Join(dir, sub, name), name, info.ModTime()})
		}
	}
	if len(all) == 0 {
		return "", nil
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].mod.Equal(all[j].mod) {
			return all[i].mod.After(all[j].mod)
		}
		return all[i].name < all[j].name
	})
	return all[0].path, nil
}

// replyAddress is who the reply goes to: Reply-To:, else From:; with -e
// Errors-To: or Return-Path: first.
func replyAddress(m *original, envelope bool) string {
	if envelope {
		for _, h := range []string{"Errors-To", "Return-Path"} {
			if v := m.get(h); v != "" && len(addresses(v)) > 0 {
				return v
			}
		}
	}
	if v := m.get("Reply-To"); v != "" {
		return v
	}
	return m.get("From")
}

// replySubject is "Re: " and the original subject, unless it has one.
func replySubject(s string) string {
	if len(s) >= 3 && strings.EqualFold(s[:3], "re:") {
		return s
	}
	return "Re: " + s
}

// salutation expands -S: %% %n %C %N %i %f %F %S %d %{fmt}d.
func salutation(format string, m *original, sender string, loc *time.Location) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteByte('\n')
		case 'C':
			b.WriteString(m.get("X-Newsgroup"))
		case 'N':
			b.WriteString(m.get("Newsgroups"))
		case 'i':
			b.WriteString(m.get("Message-ID"))
		case 'f':
			b.WriteString(sender)
		case 'F':
			b.WriteString(m.displayName())
		case 'S':
			b.WriteString(m.get("Subject"))
		case 'd':
			b.WriteString(formatDate(m.get("Date"), "Mon, 02 Jan 2006 15:04:05 -0700", loc))
		case '{':
			end := strings.Index(format[i:], "}d")
			if end < 0 {
				b.WriteString("%{")
				continue
			}
			b.WriteString(formatDate(m.get("Date"), strftimeLayout(format[i+1:i+end]), loc))
			i += end + 1
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

func formatDate(raw, layout string, loc *time.Location) string {
	for _, l := range []string{time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700", time.RFC1123} {
		if t, err := time.Parse(l, strings.TrimSpace(strings.Split(raw, " (")[0])); err == nil {
			return t.In(loc).Format(layout)
		}
	}
	return raw
}

// strftimeLayout turns the common strftime conversions into a Go layout.
func strftimeLayout(f string) string {
	r := strings.NewReplacer("%a", "Mon", "%A", "Monday", "%d", "02", "%e", "_2", "%b", "Jan", "%B", "January",
		"%m", "01", "%Y", "2006", "%y", "06", "%H", "15", "%I", "03", "%M", "04", "%S", "05", "%p", "PM",
		"%z", "-0700", "%Z", "MST", "%%", "%")
	return r.Replace(f)
}

// quote prefixes each line of a plain-text body for a reply (RFC 3676 4.5:
// a quoted line starts with ">", one space after the last ">" of a new
// quote level).
func quote(body []byte) string {
	text := strings.TrimRight(string(body), "\n")
	if text == "" {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, ">") {
			b.WriteString(">" + line + "\n")
		} else {
			b.WriteString("> " + line + "\n")
		}
	}
	return b.String()
}

func newBoundary(host string) string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return "=_" + host + "-" + hex.EncodeToString(r[:])
}
