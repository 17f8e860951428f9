package makemime

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzArgs: any option file (read through "@-") and any command line built
// from it either runs or is refused, and never hangs or panics. Files are
// read and written only in a temporary directory.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{
		"-c\ntext/plain\ntext.txt\n",
		"#c\n  -c\n\tauto\n\n-a\n  X-Y: z\n-N\nn.txt\n-C\nutf-8\ntext.txt\n",
		"-j\n(\n-m\nmultipart/alternative\n(\n-c\ntext/plain\ntext.txt\n)\n)\n(\n-c\ntext/html\n-e\nbase64\ntext.txt\n)\n",
		"-m\nmultipart/mixed\n-o\nout\n(\n-c\ntext/plain\n-\n)\n-\ninline\n",
		"-j\ncoll.txt\ntext.txt\n",
		"-c\ntext/plain\n(\n(\n(\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "text.txt"), []byte("h\xe9llo\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "coll.txt"), []byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n"), 0o644)
		cfg := Config{Dir: dir, Confined: true}
		Run(context.Background(), cfg, []string{"@-"}, strings.NewReader(s), io.Discard, io.Discard)
		Run(context.Background(), cfg, strings.Split(s, "\n"), strings.NewReader(s), io.Discard, io.Discard)
	})
}
