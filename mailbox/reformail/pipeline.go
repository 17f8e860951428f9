package reformail

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"postern/mailbox/mime"
)

// sink receives the reformatted message: each header line (unfolded lines
// joined by "\n", no ending), then the end of the header (the blank line),
// then the body in pieces. A body line may come in several pieces; start is
// set on its first and end on its last. Returning errStop ends reading.
type sink interface {
	header(line string) error
	endOfHeader() error
	body(piece []byte, start, end bool) error
}

// errStop lets a sink say it has seen all it needs.
var errStop = fmt.Errorf("reformail: stop")

// env is what the pipeline needs from the outside world.
type env struct {
	now      func() time.Time
	hostname string
}

// pipeline reads one message from lr and feeds it, reformatted by o's
// header options and -f, to s.
type pipeline struct {
	o      *options
	lr     *lineReader
	editor *headerEditor
	env    env
}

func newPipeline(o *options, lr *lineReader, e env) *pipeline {
	return &pipeline{o: o, lr: lr, editor: newHeaderEditor(o), env: e}
}

// skipBlankLines consumes empty lines before the message, as Courier does,
// and returns the first other line.
func (p *pipeline) skipBlankLines() ([]byte, bool, error) {
	for {
		line, ok, err := p.lr.line(maxHeaderLine)
		if err != nil || !ok {
			return nil, false, err
		}
		if len(line) > 0 {
			return line, true, nil
		}
	}
}

// run streams the message through to s.
func (p *pipeline) run(s sink) error {
	first, ok, err := p.skipBlankLines()
	if err != nil || !ok {
		return err
	}
	quote, unquote := false, false
	var generated []string // lines that come before the message's own header
	firstIsFromLine := bytes.HasPrefix(first, []byte("From "))
	switch {
	case p.o.from == fromRemove && firstIsFromLine:
		// -f0: the From_ line's address becomes the only Return-Path:.
		p.editor.replace = append(p.editor.replace, "Return-Path: <"+fromLineAddress(first)+">")
		unquote = true
		next, ok, err := p.lr.line(maxHeaderLine)
		if err != nil || !ok {
			// Courier writes nothing for a message that is only a From_ line.
			return err
		}
		first = next
		if len(first) == 0 {
			// An empty header. (Courier loses the body's first line here.)
			first = nil
		}
	case p.o.from == fromAdd && !firstIsFromLine:
		// -f1 needs the whole header to choose the From_ line's address.
		header, err := p.readHeaderBlock(first)
		if err != nil {
			return err
		}
		generated = append(generated, "From "+returnAddress(header)+" "+p.env.now().Format("Mon Jan _2 15:04:05 2006"))
		generated = append(generated, header...)
		quote = true
		first = nil
	}
	for _, line := range generated {
		if err := p.header(s, line); err != nil {
			return err
		}
	}
	if first != nil {
		if err := p.streamHeader(s, first); err != nil {
			return err
		}
	}
	for _, line := range p.editor.trailer() {
		if err := s.header(line); err != nil {
			return err
		}
	}
	if err := s.endOfHeader(); err != nil {
		return err
	}
	return p.streamBody(s, quote, unquote)
}

func (p *pipeline) header(s sink, line string) error {
	if out, keep := p.editor.edit(line); keep {
		return s.header(out)
	}
	return nil
}

// nextField reads one logical header line starting with first: the lines
// after it that start with white space are its continuation. It returns
// done when the header ended (blank line or end of input).
func (p *pipeline) nextField(first []byte) (field string, next []byte, done bool, err error) {
	var b strings.Builder
	b.Write(first)
	for {
		line, ok, err := p.lr.line(maxHeaderLine)
		if err != nil {
			return "", nil, false, err
		}
		if !ok || len(line) == 0 {
			return b.String(), nil, true, nil
		}
		if !isSpace(line[0]) {
			return b.String(), line, false, nil
		}
		if b.Len()+len(line) > maxHeaderLine {
			return "", nil, false, fmt.Errorf("header field of more than %d bytes: %w", maxHeaderLine, ErrHeaderTooLong)
		}
		b.WriteByte('\n')
		b.Write(line)
	}
}

func (p *pipeline) streamHeader(s sink, line []byte) error {
	for {
		field, next, done, err := p.nextField(line)
		if err != nil {
			return err
		}
		if err := p.header(s, field); err != nil {
			return err
		}
		if done {
			return nil
		}
		line = next
	}
}

// readHeaderBlock reads the whole header (for -f1), bounded by maxHeaderBlock.
func (p *pipeline) readHeaderBlock(first []byte) ([]string, error) {
	var fields []string
	total := 0
	line := first
	for {
		field, next, done, err := p.nextField(line)
		if err != nil {
			return nil, err
		}
		total += len(field) + 1
		if total > maxHeaderBlock {
			return nil, fmt.Errorf("header of more than %d bytes: %w", maxHeaderBlock, ErrHeaderTooLong)
		}
		fields = append(fields, field)
		if done {
			return fields, nil
		}
		line = next
	}
}

// streamBody copies the body. With -f1 a line that is ">"* then "From " gets
// one more ">" (mboxrd quoting); with -f0 such a line loses one.
func (p *pipeline) streamBody(s sink, quote, unquote bool) error {
	pendingCR := false
	start := true
	for {
		piece, end, ok, err := p.lr.chunk(&pendingCR)
		if err != nil || !ok {
			return err
		}
		if start && (quote || unquote) {
			rest := bytes.TrimLeft(piece, ">")
			if bytes.HasPrefix(rest, []byte("From ")) {
				if quote {
					if err := s.body([]byte(">"), true, false); err != nil {
						return err
					}
					if err := s.body(piece, false, end); err != nil {
						return err
					}
					start = end
					continue
				}
				if len(rest) < len(piece) {
					piece = piece[1:]
				}
			}
		}
		if err := s.body(piece, start, end); err != nil {
			return err
		}
		start = end
	}
}

// fromLineAddress is the envelope sender of an mbox "From " line: the first
// word after "From ", without angle brackets.
func fromLineAddress(line []byte) string {
	rest := bytes.TrimLeft(line[len("From "):], " \t\v\f\r")
	rest = bytes.TrimPrefix(rest, []byte("<"))
	end := bytes.IndexFunc(rest, func(r rune) bool { return r == '>' || r < 128 && isSpace(byte(r)) })
	if end >= 0 {
		rest = rest[:end]
	}
	return string(rest)
}

// returnAddress chooses the address for the From_ line that -f1 writes: the
// last Return-Path: or Errors-To: field (quoted ">Return-Path:" forms
// count too), else From:, else "root".
func returnAddress(fields []string) string {
	var returnPath, from string
	haveReturnPath := false
	for _, f := range fields {
		key := fieldKey(f)
		value := f[len(key):]
		switch key {
		case "return-path:", ">return-path:", "errors-to:", ">errors-to:":
			returnPath, haveReturnPath = value, true
		case "from:":
			from = value
		}
	}
	if !haveReturnPath {
		returnPath = from
	}
	for _, a := range mime.ParseAddressList(strings.ReplaceAll(returnPath, "\n", " ")) {
		if a.Group || a.Mailbox == "" || a.Mailbox == mime.MissingMailbox {
			continue
		}
		if a.Host == "" || a.Host == mime.MissingDomain {
			return a.Mailbox
		}
		return a.Mailbox + "@" + a.Host
	}
	return "root"
}
