package dmarc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

// Errors of FromDomain, for errors.Is; DMARC reports them as permerror.
var (
	ErrNoFrom          = errors.New("dmarc: message has no From header field")
	ErrMultipleFrom    = errors.New("dmarc: message has more than one From header field")
	ErrMultipleAuthors = errors.New("dmarc: From names authors in different domains")
	ErrBadFrom         = errors.New("dmarc: From header field cannot be parsed")
	ErrHeaderTooLarge  = errors.New("dmarc: header section too large")
)

// DefaultMaxHeaderBytes bounds the header section read for From.
const DefaultMaxHeaderBytes = 1 << 20

// maxAuthors bounds the addresses looked at in one From field.
const maxAuthors = 50

// ReadFromField reads the header section of a message (CRLF or LF line
// endings) up to max bytes and returns the unfolded values of its From
// fields.
func ReadFromField(r io.Reader, max int) ([]string, error) {
	if max <= 0 {
		max = DefaultMaxHeaderBytes
	}
	br := bufio.NewReader(io.LimitReader(r, int64(max)+1))
	var fields []string
	var cur *strings.Builder
	inFrom := false
	read := 0
	for {
		line, err := br.ReadString('\n')
		read += len(line)
		if read > max {
			return nil, ErrHeaderTooLarge
		}
		text := strings.TrimRight(line, "\r\n")
		if text == "" && (err == nil || line == "") {
			break // blank line or end of input
		}
		if text != "" && (text[0] == ' ' || text[0] == '\t') {
			if inFrom {
				cur.WriteString(text) // unfold: drop the CRLF only (RFC 5322 section 2.2.3)
			}
		} else {
			if inFrom {
				fields = append(fields, cur.String())
			}
			name, value, ok := strings.Cut(text, ":")
			inFrom = ok && strings.EqualFold(strings.TrimRight(name, " \t"), "From")
			if inFrom {
				cur = &strings.Builder{}
				cur.WriteString(value)
			}
		}
		if err != nil {
			if err != io.EOF {
				return nil, fmt.Errorf("dmarc: reading header: %w", err)
			}
			break
		}
	}
	if inFrom {
		fields = append(fields, cur.String())
	}
	return fields, nil
}

// FromDomain returns the author domain of a message from its From fields
// (RFC 7489 section 6.6.1): exactly one From field is required; if it
// names several authors they must share one domain. The domain is lower
// case, in A-label form for DNS.
func FromDomain(fromFields []string) (string, error) {
	switch len(fromFields) {
	case 0:
		return "", ErrNoFrom
	case 1:
	default:
		return "", ErrMultipleFrom
	}
	parser := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		// Display names in unknown charsets do not matter here; do not
		// fail the address over them.
		CharsetReader: func(_ string, in io.Reader) (io.Reader, error) { return in, nil },
	}}
	addrs, err := parser.ParseList(fromFields[0])
	if err != nil || len(addrs) == 0 {
		if err == nil {
			err = errors.New("no address")
		}
		return "", fmt.Errorf("%w: %v", ErrBadFrom, err)
	}
	if len(addrs) > maxAuthors {
		addrs = addrs[:maxAuthors]
	}
	domain := ""
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 || at == len(a.Address)-1 {
			return "", fmt.Errorf("%w: %q has no domain", ErrBadFrom, clip(a.Address))
		}
		d := normalizeDomain(a.Address[at+1:])
		if !isASCII(d) {
			ascii, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", fmt.Errorf("%w: domain %q: %v", ErrBadFrom, clip(d), err)
			}
			d = ascii
		}
		if strings.HasPrefix(d, "[") {
			return "", fmt.Errorf("%w: %q is an address literal, not a domain", ErrBadFrom, clip(d))
		}
		if domain != "" && d != domain {
			return "", ErrMultipleAuthors
		}
		domain = d
	}
	return domain, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
