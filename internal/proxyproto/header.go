// Package proxyproto reads the PROXY protocol header (v1 and v2) that a
// trusted front end (HAProxy, a load balancer) puts before a connection's
// own bytes, so that a server sees the real client's address
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt). The SMTP
// engine reads it itself (gateway/smtpd); Listener does it for the
// other protocols.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Header is what a PROXY protocol header says
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
type Header struct {
	Local    bool // LOCAL (v2) or UNKNOWN (v1): keep the connection's own addresses
	Src, Dst netip.AddrPort
}

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const maxProxyV1 = 107 // the longest v1 line, CRLF included

// ReadHeader reads a v1 or v2 header from the start of a connection.
// Anything malformed is an error and the caller drops the connection.
func ReadHeader(br *bufio.Reader) (Header, error) {
	first, err := br.Peek(1)
	if err != nil {
		return Header{}, fmt.Errorf("proxy header: %w", err)
	}
	if first[0] == 'P' {
		var line []byte
		for len(line) < maxProxyV1 {
			b, err := br.ReadByte()
			if err != nil {
				return Header{}, fmt.Errorf("proxy v1 header: %w", err)
			}
			line = append(line, b)
			if b == '\n' {
				return parseProxyV1(line)
			}
		}
		return Header{}, errors.New("proxy v1 header: too long")
	}
	hdr, err := br.Peek(16)
	if err != nil {
		return Header{}, fmt.Errorf("proxy v2 header: %w", err)
	}
	if !bytes.Equal(hdr[:12], proxyV2Sig) {
		return Header{}, errors.New("proxy header: missing")
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	buf := make([]byte, 16+n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return Header{}, fmt.Errorf("proxy v2 header: %w", err)
	}
	return parseProxyV2(buf)
}

// parseProxyV1 parses "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
func parseProxyV1(line []byte) (Header, error) {
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return Header{}, errors.New("proxy v1 header: no CRLF")
	}
	f := strings.Split(s, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return Header{}, errors.New("proxy v1 header: bad prefix")
	}
	if f[1] == "UNKNOWN" {
		return Header{Local: true}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return Header{}, errors.New("proxy v1 header: bad fields")
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sport, err3 := parsePort(f[4])
	dport, err4 := parsePort(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Header{}, fmt.Errorf("proxy v1 header: %w", err)
	}
	want4 := f[1] == "TCP4"
	if src.Is4() != want4 || dst.Is4() != want4 || src.Zone() != "" || dst.Zone() != "" {
		return Header{}, errors.New("proxy v1 header: address family mismatch")
	}
	return Header{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("bad port %q", s)
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

// parseProxyV2 parses a whole binary header (signature, 4 fixed bytes,
// addresses and TLVs, which are ignored).
func parseProxyV2(b []byte) (Header, error) {
	if len(b) < 16 || !bytes.Equal(b[:12], proxyV2Sig) {
		return Header{}, errors.New("proxy v2 header: bad signature")
	}
	if b[12]>>4 != 2 {
		return Header{}, fmt.Errorf("proxy v2 header: version %d", b[12]>>4)
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) != 16+n {
		return Header{}, errors.New("proxy v2 header: bad length")
	}
	body := b[16:]
	switch b[12] & 0xF {
	case 0: // LOCAL: health checks from the proxy itself
		return Header{Local: true}, nil
	case 1: // PROXY
	default:
		return Header{}, fmt.Errorf("proxy v2 header: command %d", b[12]&0xF)
	}
	switch b[13] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return Header{}, errors.New("proxy v2 header: short IPv4 block")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		return Header{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12])),
		}, nil
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return Header{}, errors.New("proxy v2 header: short IPv6 block")
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		return Header{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36])),
		}, nil
	case 0x00, 0x31, 0x32: // UNSPEC, UNIX: no usable addresses
		return Header{Local: true}, nil
	default:
		return Header{}, fmt.Errorf("proxy v2 header: unsupported family 0x%02x", b[13])
	}
}
