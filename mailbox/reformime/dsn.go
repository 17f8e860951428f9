package reformime

import (
	"bytes"
	"fmt"
	"strings"
)

// printDSN is -d and -D: the recipients of a delivery status notification
// (RFC 3464, was RFC 1894), one "action address" line each. With -D the
// Original-Recipient is shown where there is one. Exit status 1 when the
// message is not a multipart/report with a message/delivery-status part.
func (r *runner) printDSN() int {
	if r.root.ContentType != "multipart/report" {
		return 1
	}
	var status *Part
	for _, c := range r.root.Children {
		if c.ContentType == "message/delivery-status" {
			status = c
			break
		}
	}
	if status == nil {
		return 1
	}
	body := decodeBody(status.CTE, r.body(status))
	type field struct{ name, value string }
	var block []field
	flush := func() {
		var action, final, original string
		var hasAction, hasFinal, hasOriginal bool
		for _, f := range block {
			switch strings.ToLower(f.name) {
			case "action":
				action, hasAction = f.value, true
			case "final-recipient":
				final, hasFinal = f.value, true
			case "original-recipient":
				original, hasOriginal = f.value, true
			}
		}
		block = block[:0]
		rcpt, ok := final, hasFinal
		if r.opt.dsn == 2 && hasOriginal {
			rcpt, ok = original, true
		}
		if !hasAction || !ok {
			return
		}
		typ, addr, found := strings.Cut(rcpt, ";")
		if !found || !strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
			return
		}
		fmt.Fprintf(r.out, "%s %s\n", strings.ToLower(action), strings.TrimLeft(addr, " \t"))
	}
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		if len(line) == 0 {
			break
		}
		if line[len(line)-1] != '\n' {
			break // as Courier does, a last line without its newline is not read
		}
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			flush()
			continue
		}
		if (text[0] == ' ' || text[0] == '\t') && len(block) > 0 {
			block[len(block)-1].value += "\n" + text
			continue
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok {
			continue
		}
		block = append(block, field{strings.TrimSpace(name), strings.TrimLeft(value, " \t")})
	}
	flush()
	return 0
}
