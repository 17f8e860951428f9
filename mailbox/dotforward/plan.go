package dotforward

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// Recipient is the message's recipient and where the message already went.
type Recipient struct {
	// Address is the recipient's own address (Courier's DTLINE,
	// "Delivered-To: alice@example.test").
	Address string
	// DeliveredTo are the addresses of the message's Delivered-To header
	// fields: every recipient it has already been delivered to.
	DeliveredTo []string
}

// Plan is what dotforward prints and how it exits.
type Plan struct {
	// Instructions are dot-courier(5) lines: "|command", a mailbox path,
	// "!address, address" (the "!" is Courier's legacy forwarding mark,
	// which it prints too).
	Instructions []string
	// DeliverHere is set when .forward names the recipient's own address
	// (sendmail's "\alice" to keep a copy): dotforward exits 0, and the
	// .courier lines after "|| dotforward" deliver the local copy.
	DeliverHere bool
	// Dropped are the addresses left out because the message was already
	// delivered to them (Delivered-To): a forwarding loop.
	Dropped []string
}

// Exit codes of dotforward (dot-courier(5): 0 goes on with the next
// instruction, 99 stops after the printed instructions ran).
const (
	ExitContinue = 0
	ExitStop     = 99
	ExitTempFail = 75 // EX_TEMPFAIL
	ExitNoUser   = 67 // EX_NOUSER, Courier's answer to a bad :include:
)

// ExitCode is 0 when the recipient keeps a copy, 99 otherwise.
func (p Plan) ExitCode() int {
	if p.DeliverHere {
		return ExitContinue
	}
	return ExitStop
}

// Output is the instructions, one per line.
func (p Plan) Output() string {
	var b strings.Builder
	for _, in := range p.Instructions {
		b.WriteString(in)
		b.WriteByte('\n')
	}
	return b.String()
}

// MakePlan turns .forward entries into instructions for r. A name without
// a domain ("joe", "\alice") is at the recipient's domain. Addresses are
// compared without regard to case.
func MakePlan(entries []Entry, r Recipient) Plan {
	me := strings.ToLower(r.Address)
	domain := ""
	if i := strings.LastIndexByte(me, '@'); i >= 0 {
		domain = me[i+1:]
	}
	seen := map[string]bool{}
	for _, d := range r.DeliveredTo {
		seen[strings.ToLower(d)] = true
	}
	var p Plan
	var group []string
	groupID, groupLen := -1, 0
	flush := func() {
		if len(group) > 0 {
			p.Instructions = append(p.Instructions, "!"+strings.Join(group, ", "))
		}
		group, groupLen = nil, 0
	}
	printed := map[string]bool{}
	for _, e := range entries {
		if e.Group != groupID {
			flush()
			groupID = e.Group
		}
		switch e.Kind {
		case Program:
			p.Instructions = append(p.Instructions, "|"+e.Value)
		case Mailbox:
			p.Instructions = append(p.Instructions, e.Value)
		case Address:
			addr := e.Value
			if !strings.Contains(addr, "@") && domain != "" {
				addr += "@" + domain
			}
			key := strings.ToLower(addr)
			switch {
			case key == me:
				p.DeliverHere = true
			case seen[key]:
				p.Dropped = append(p.Dropped, addr)
			case printed[key]:
				// Named twice: one copy is enough.
			default:
				printed[key] = true
				if groupLen+len(addr) > maxForwardLine {
					// Keep each line well inside what the .courier
					// reader takes (4096 bytes): names get a domain
					// added, so a line can grow.
					flush()
				}
				group = append(group, addr)
				groupLen += len(addr) + 2
			}
		}
	}
	flush()
	if len(p.Instructions) == 0 && len(p.Dropped) > 0 {
		// Every destination already had the message: it came round a
		// loop of forwards. Keep it here rather than drop it (Courier's
		// dotforward would exit 99 with nothing to do, and the message
		// would be gone).
		p.DeliverHere = true
	}
	return p
}

// maxForwardLine is the length at which a forwarding line is split.
const maxForwardLine = 2048

// ParseDTLINE returns the address of a DTLINE value ("Delivered-To:
// alice@example.test\n"), or "" when it holds none.
func ParseDTLINE(v string) string {
	_, addr, ok := strings.Cut(v, ":")
	if !ok {
		return ""
	}
	return strings.Trim(strings.TrimSpace(addr), "<>")
}

// maxHeaderBytes bounds how much of a message's header is read for
// Delivered-To fields.
const maxHeaderBytes = 1 << 20

// ErrHeaderTooLarge is returned by ReadDeliveredTo for a header larger
// than it reads.
var ErrHeaderTooLarge = errors.New("dotforward: message header larger than 1 MiB")

// ReadDeliveredTo reads a message's header (up to the first empty line)
// and returns the addresses of its Delivered-To fields, in order.
func ReadDeliveredTo(r io.Reader) ([]string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderBytes+1))
	var out []string
	read := 0
	for {
		line, err := br.ReadString('\n')
		read += len(line)
		if read > maxHeaderBytes {
			return nil, ErrHeaderTooLarge
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			if err != nil && err != io.EOF {
				return nil, err
			}
			return out, nil // the end of the header, or of the input
		}
		if name, value, ok := strings.Cut(trimmed, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Delivered-To") {
			if a := strings.Trim(strings.TrimSpace(value), "<>"); a != "" {
				out = append(out, a)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
