package mime

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse and then exercises everything a
// FETCH or SEARCH would on the result: every section of every part, the
// envelope, the text and the dates. Nothing may panic, hang, or produce a
// tree whose offsets lie outside the message.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := bytes.NewReader(msg)
		root, err := Parse(r, int64(len(msg)))
		if err != nil {
			t.Fatalf("Parse of in-memory message failed: %v", err)
		}
		checkOffsets(t, root, 0, int64(len(msg)))
		whole, err := Section(r, root, SectionSpec{})
		if err != nil || !bytes.Equal(whole, msg) {
			t.Fatalf("BODY[] differs from the message (%v)", err)
		}
		var walk func(p *Part, path []int, depth int)
		walk = func(p *Part, path []int, depth int) {
			if depth > 4 {
				return
			}
			for _, spec := range []string{"", "MIME", "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"} {
				if _, err := Section(r, root, SectionSpec{Path: path, Specifier: spec, Fields: []string{"Subject", "From"}}); err != nil {
					t.Fatalf("Section %v %s: %v", path, spec, err)
				}
			}
			if _, err := Decoded(r, root, path); err != nil && !errors.Is(err, ErrUnknownEncoding) {
				t.Fatalf("Decoded %v: %v", path, err)
			}
			if p.Envelope != nil {
				_ = DecodeHeaderValue(p.Envelope.Subject)
				_, _ = ParseDate(p.Envelope.Date)
			}
			target := p
			if p.Message != nil {
				target = p.Message
			}
			for i := range target.Children {
				walk(target.Children[i], append(append([]int(nil), path...), i+1), depth+1)
			}
		}
		walk(root, nil, 0)
		if _, err := root.Text(r); err != nil {
			t.Fatalf("Text: %v", err)
		}
	})
}
