package mailbot

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"postern/mailbox/mime"
)

// maxMessage bounds how much of the original message mailbot keeps for
// quoting and forwarding; the rest is read and dropped.
const maxMessage = 16 << 20

// field is one header field as it appeared: name, and value with folding.
type field struct {
	name  string
	value string // after the colon, leading white space removed, folds kept
}

// original is the message being answered.
type original struct {
	fields    []field
	rawHeader []byte // the header block as received, LF line ends
	body      []byte // up to maxMessage
	truncated bool
}

// readOriginal reads the message from r: the header parsed into fields,
// the body kept up to maxMessage.
func readOriginal(r io.Reader) (*original, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	m := &original{}
	var header bytes.Buffer
	total := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read message: %w", err)
		}
		total += len(line)
		if total > maxMessage {
			return nil, fmt.Errorf("read message: header larger than %d bytes", maxMessage)
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			break
		}
		header.WriteString(trimmed + "\n")
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && len(m.fields) > 0 {
			m.fields[len(m.fields)-1].value += "\n" + trimmed
		} else if name, value, ok := strings.Cut(trimmed, ":"); ok {
			m.fields = append(m.fields, field{name: strings.TrimSpace(name), value: strings.TrimLeft(value, " \t")})
		}
		if err == io.EOF {
			break
		}
	}
	m.rawHeader = header.Bytes()
	body, err := io.ReadAll(io.LimitReader(br, maxMessage))
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	m.body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	// Read the rest so that the writer into our pipe ends cleanly.
	if n, _ := io.Copy(io.Discard, br); n > 0 {
		m.truncated = true
	}
	return m, nil
}

// get returns the first field's value, unfolded, or "".
func (m *original) get(name string) string {
	for _, f := range m.fields {
		if strings.EqualFold(f.name, name) {
			return unfold(f.value)
		}
	}
	return ""
}

func (m *original) has(name string) bool {
	for _, f := range m.fields {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

func unfold(v string) string {
	v = strings.ReplaceAll(v, "\n", "")
	return strings.TrimSpace(v)
}

// addresses returns the bare addresses (local@domain) of a header value.
func addresses(value string) []string {
	var out []string
	for _, a := range mime.ParseAddressList(value) {
		if a.Group || a.Mailbox == "" || a.Mailbox == mime.MissingMailbox {
			continue
		}
		if a.Host == "" || a.Host == mime.MissingDomain {
			out = append(out, a.Mailbox)
			continue
		}
		out = append(out, a.Mailbox+"@"+a.Host)
	}
	return out
}

// displayName is the sender's name for the salutation's %F: the phrase of
// the first From: address, else its address.
func (m *original) displayName() string {
	for _, a := range mime.ParseAddressList(m.get("From")) {
		if a.Group {
			continue
		}
		if a.Name != "" {
			return a.Name
		}
		if a.Host != "" && a.Host != mime.MissingDomain {
			return a.Mailbox + "@" + a.Host
		}
		return a.Mailbox
	}
	return ""
}

// isPlainText reports whether the body can be quoted: text/plain, or no
// Content-Type at all (RFC 2045 5.2).
func (m *original) isPlainText() bool {
	ct := strings.ToLower(m.get("Content-Type"))
	return ct == "" || strings.HasPrefix(ct, "text/plain")
}
