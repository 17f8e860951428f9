package reformime

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReformime: any input parses, every section's offsets lie inside the
// message and in order, and the options that read a message (-i, -e on
// every section, -r7, -r8, -u, -d) finish without panicking.
func FuzzReformime(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*.eml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		root := Parse(msg)
		var walk func(p *Part, id string)
		ids := []string{}
		walk = func(p *Part, id string) {
			ids = append(ids, id)
			start, body, end, lines, bodyLines := p.Pos()
			if start < 0 || start > body || body > int64(len(msg)) || end > int64(len(msg)) || lines < bodyLines || bodyLines < 0 {
				t.Fatalf("section %s: start %d body %d end %d lines %d/%d in %d bytes", id, start, body, end, lines, bodyLines, len(msg))
			}
			for i, c := range p.Children {
				walk(c, id+"."+string(rune('0'+i%10)))
			}
		}
		walk(root, "1")
		cfg := Config{Env: []string{"LANG=C.UTF-8"}, Now: time.Now, Hostname: "h", PID: 1, Dir: t.TempDir()}
		for _, args := range [][]string{{"-i"}, {"-e", "-s", "1"}, {"-r7"}, {"-r8"}, {"-u"}, {"-d"}} {
			Run(context.Background(), cfg, args, bytes.NewReader(msg), io.Discard, io.Discard)
		}
	})
}

// FuzzHeaderText: -h, -H, -o and -O take any text.
func FuzzHeaderText(f *testing.F) {
	for _, s := range []string{"=?iso-8859-1?Q?H=F3la?= x", `"Bob, B" <b@y>, g: a@b;`, "a é b", "=?utf-8?B?====?=", "=?x?q?=?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, opt := range []string{"-h", "-H", "-o", "-O"} {
			var out bytes.Buffer
			if code := Run(context.Background(), Config{}, []string{opt, s}, bytes.NewReader(nil), &out, io.Discard); code != 0 {
				t.Fatalf("%s %q: exit %d", opt, s, code)
			}
		}
	})
}
