package dmarc

import (
	"bufio"
	"io"
	"strings"

	"postern/filters/dkim"
)

// FailureOptions is a parsed fo= tag (RFC 7489 section 6.3): which
// failures the domain wants a failure report (ruf=) for.
type FailureOptions struct {
	All  bool // "0": every underlying mechanism failed to give an aligned pass (the default)
	Any  bool // "1": any underlying mechanism failed to give an aligned pass
	DKIM bool // "d": a DKIM signature failed evaluation, aligned or not
	SPF  bool // "s": SPF failed evaluation, aligned or not
}

// maxFailureOptions bounds the fo= values read.
const maxFailureOptions = 16

// ParseFailureOptions reads fo= as section 6.3 writes it: a
// colon-separated list of 0, 1, d and s. Unknown values are ignored; an
// empty or wholly unknown tag means the default, 0.
func ParseFailureOptions(fo string) FailureOptions {
	var o FailureOptions
	for i, v := range strings.Split(fo, ":") {
		if i >= maxFailureOptions {
			break
		}
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "0":
			o.All = true
		case "1":
			o.Any = true
		case "d":
			o.DKIM = true
		case "s":
			o.SPF = true
		}
	}
	if o == (FailureOptions{}) {
		o.All = true
	}
	return o
}

// String renders o in the fo= syntax.
func (o FailureOptions) String() string {
	var v []string
	for _, x := range []struct {
		on bool
		s  string
	}{{o.All, "0"}, {o.Any, "1"}, {o.DKIM, "d"}, {o.SPF, "s"}} {
		if x.on {
			v = append(v, x.s)
		}
	}
	return strings.Join(v, ":")
}

// Wants reports whether a message with this outcome is to be reported
// under o. Postern reports only messages that failed DMARC (never
// passing mail, however fo= reads: a failure report is about a failure
// the domain can act on, and a pass is no reason to send a stranger's
// headers away), so "0" and "1" both hold for every failing message;
// "d" needs a DKIM signature that did not verify (a message without
// signatures is not reported under d alone), and "s" an SPF result of
// fail or softfail.
func (o FailureOptions) Wants(ev Evaluation, spfResult string, sigs []dkim.SignatureResult) bool {
	if ev.Status != Fail {
		return false
	}
	if o.All || o.Any {
		return true // section 6.3: nothing aligned passed
	}
	if o.DKIM {
		for _, s := range sigs {
			if s.Result == "fail" || s.Result == "permerror" || s.Result == "neutral" {
				return true
			}
		}
	}
	if o.SPF && (spfResult == "fail" || spfResult == "softfail") {
		return true
	}
	return false
}

// Failure is what a failure report needs of one message that failed
// DMARC (RFC 7489 section 7.3, RFC 6591): the observation, the original
// header section (never the body), and the authentication results the
// session produced.
type Failure struct {
	Observation
	// MailFrom is the MAIL FROM address, "" for the null sender.
	MailFrom string
	// Header is the message's header section, at most
	// MaxFailureHeaderBytes, ending at a line boundary.
	Header []byte
	// AuthResults are the RFC 8601 resinfos of this transaction (spf=,
	// dkim=, dmarc=, ...).
	AuthResults []string
	// SPFAlignedDomain and DKIMAlignedDomain say which identifiers were
	// in the From domain (aligned, whether or not they passed).
	SPFAlignedDomain, DKIMAlignedDomain bool
}

// FailureRecorder takes the failures to report. RecordDMARCFailure is
// called on the SMTP path: it must not block (the reports are sent after
// the transaction, by the recorder's own worker).
type FailureRecorder interface {
	RecordDMARCFailure(Failure)
}

// MaxFailureHeaderBytes bounds the header section a failure report
// carries.
const MaxFailureHeaderBytes = 64 << 10

// ReadHeader returns the header section of a message up to max bytes, cut
// at the last whole line (a partial header is still useful to the domain;
// a partial line is not), with CRLF line ends and without the blank line
// that ends it.
func ReadHeader(r io.Reader, max int) []byte {
	br := bufio.NewReader(io.LimitReader(r, int64(max)))
	var out []byte
	read := 0
	for {
		line, err := br.ReadBytes('\n')
		read += len(line)
		if err != nil && (read >= max || len(line) == 0) {
			return out // the limit cut this line, or the input ended
		}
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			return out
		}
		out = append(out, text...)
		out = append(out, '\r', '\n')
		if err != nil {
			return out // a message without a body and without a last newline
		}
	}
}
