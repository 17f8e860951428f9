package mime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadMessage reads testdata/name; with crlf, bare LFs become CRLF, the
// form messages have on the wire and in most Maildirs.
func loadMessage(t testing.TB, name string, crlf bool) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if crlf {
		b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	return b
}

func mustParse(t testing.TB, msg []byte) *Part {
	t.Helper()
	p, err := Parse(bytes.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// structure renders a part tree compactly, in the order of IMAP's
// BODYSTRUCTURE fields, so tests can state whole trees in one string.
func structure(p *Part) string {
	var b strings.Builder
	writeStructure(&b, p)
	return b.String()
}

func writeStructure(b *strings.Builder, p *Part) {
	b.WriteString("(")
	if p.Type == "multipart" {
		for _, c := range p.Children {
			writeStructure(b, c)
		}
		fmt.Fprintf(b, " %s", p.Subtype)
		b.WriteString(")")
		return
	}
	fmt.Fprintf(b, "%s/%s", p.Type, p.Subtype)
	for _, prm := range p.Params {
		fmt.Fprintf(b, " %s=%s", prm.Name, prm.Value)
	}
	fmt.Fprintf(b, " %s %d", p.Encoding, p.Size)
	if p.Message != nil {
		fmt.Fprintf(b, " env:%q ", p.Message.Envelope.Subject)
		writeStructure(b, p.Message)
	}
	if p.Type == "text" || p.Message != nil {
		fmt.Fprintf(b, " %d", p.Lines)
	}
	b.WriteString(")")
}

// checkOffsets asserts the invariants every tree must keep, whatever the
// input: offsets ordered and inside the message, children inside their
// parent, Size matching the offsets.
func checkOffsets(t testing.TB, p *Part, lo, hi int64) {
	t.Helper()
	if !(lo <= p.HeaderStart && p.HeaderStart <= p.BodyStart && p.BodyStart <= p.End && p.End <= hi) {
		t.Fatalf("bad offsets %d %d %d outside [%d,%d] for %s/%s", p.HeaderStart, p.BodyStart, p.End, lo, hi, p.Type, p.Subtype)
	}
	if p.Size != p.End-p.BodyStart {
		t.Fatalf("Size %d != End-BodyStart %d", p.Size, p.End-p.BodyStart)
	}
	if p.Lines < 0 {
		t.Fatalf("negative Lines %d", p.Lines)
	}
	if p.Type == "multipart" && len(p.Children) == 0 {
		t.Fatalf("multipart without children")
	}
	prev := p.BodyStart
	for _, c := range p.Children {
		checkOffsets(t, c, prev, p.End)
		prev = c.End
	}
	if p.Message != nil {
		checkOffsets(t, p.Message, p.BodyStart, p.End)
		if p.Message.Envelope == nil {
			t.Fatalf("embedded message without envelope")
		}
	}
}
