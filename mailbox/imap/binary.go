package imap

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"postern/mailbox/mime"
)

// BINARY (RFC 3516; its FETCH side is part of IMAP4rev2, RFC 9051 6.4.5):
// FETCH BINARY[part]<partial>, BINARY.PEEK[part]<partial> and
// BINARY.SIZE[part] return a body part with its Content-Transfer-Encoding
// undone (mime.Decoded), as a literal8 ("~{n}") when it holds a NUL, else
// as an ordinary literal. APPEND takes its message as a literal8 too
// (cmd_append.go). A part in an encoding mime cannot undo fails the FETCH
// with NO [UNKNOWN-CTE] (RFC 3516 4.3).

// binaryAttRest reads the section and, for BINARY and BINARY.PEEK, the
// partial range after an attribute name: section-binary = "[" [section-part]
// "]", part numbers only (no HEADER, TEXT or MIME).
func (d *decoder) binaryAttRest(name string) (fetchItem, error) {
	it := fetchItem{name: "BINARY[", peek: name == "BINARY.PEEK"}
	if name == "BINARY.SIZE" {
		it.name = "BINARY.SIZE["
	}
	if err := d.expect('[', "'[' after "+name); err != nil {
		return it, err
	}
	spec, err := d.readWhileMaybe(func(c byte) bool { return isDigit(c) || c == '.' })
	if err != nil {
		return it, err
	}
	if spec != "" {
		for _, n := range strings.Split(spec, ".") {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 || len(n) > 9 {
				return it, syntaxErr("invalid section part number")
			}
			if len(it.section.Path) >= maxSectionPath {
				return it, syntaxErr("section nesting too deep")
			}
			it.section.Path = append(it.section.Path, v)
		}
	}
	if err := d.expect(']', "']'"); err != nil {
		return it, err
	}
	it.label = spec
	if it.name == "BINARY[" {
		return it, d.partial(&it)
	}
	return it, nil
}

// binary returns the decoded content of a BINARY item's part, decoding it
// once per message however many items name it.
func (msg *loadedMessage) binary(it *fetchItem) ([]byte, error) {
	if data, ok := msg.decoded[it.label]; ok {
		return data, nil
	}
	data, err := mime.Decoded(bytes.NewReader(msg.data), msg.root, it.section.Path)
	if err != nil {
		return nil, fmt.Errorf("imap: fetch BINARY[%s]: %w", it.label, err)
	}
	if msg.decoded == nil {
		msg.decoded = map[string][]byte{}
	}
	msg.decoded[it.label] = data
	return data, nil
}

// decodeBinaryItems decodes every BINARY section a FETCH asks of a message
// before its response is begun, so that a part in an unknown encoding can
// still be refused (errors.Is mime.ErrUnknownEncoding) without a broken
// response line.
func (msg *loadedMessage) decodeBinaryItems(items []fetchItem) error {
	for k := range items {
		if it := &items[k]; it.name == "BINARY[" || it.name == "BINARY.SIZE[" {
			if _, err := msg.binary(it); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeBinaryItem appends "BINARY[part]<start> data" or
// "BINARY.SIZE[part] n".
func (s *session) writeBinaryItem(it *fetchItem, msg *loadedMessage) error {
	data, err := msg.binary(it)
	if err != nil {
		return err
	}
	w := s.w
	if it.name == "BINARY.SIZE[" {
		w.raw("BINARY.SIZE[").raw(it.label).raw("] ").num(uint64(len(data)))
		return nil
	}
	w.raw("BINARY[").raw(it.label).byte(']')
	data = it.cut(w, data)
	w.byte(' ')
	if bytes.IndexByte(data, 0) >= 0 {
		// RFC 3516 4.2: NUL cannot travel in a literal; literal8 it is.
		w.byte('~')
	}
	w.literal(data)
	return nil
}
