package rules

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makedat builds a database that gdbmfetch reads, from a directory source.
func TestMakedatFeedsGdbmfetch(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "10-vip"), []byte("# senders we like\nboss@example.org\tvip\n"), 0o644)
	os.WriteFile(filepath.Join(src, "20-block"), []byte("spam.example\tblock\nkeyonly\n"), 0o644)
	db := filepath.Join(dir, "senders.dat")
	var out, errb bytes.Buffer
	if code := MakedatMain([]string{"-src=" + src, "-file=" + db}, &out, &errb); code != 0 {
		t.Fatalf("makedat: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "3 keys") {
		t.Fatalf("makedat said %q", out.String())
	}
	prog, err := Parse("f", []byte(`gdbmopen("`+db+`", "R")
A=gdbmfetch("boss@example.org")
B=gdbmfetch("user@spam.example", "D")
C=gdbmfetch("nobody@else.example", "", "none")
echo "$A $B $C"
`))
	if err != nil {
		t.Fatal(err)
	}
	var echo bytes.Buffer
	if _, err := prog.Run(context.Background(), NewMessage([]byte("Subject: x\n\nbody\n")), Env{Embedded: true, Stdout: &echo, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(echo.String()); got != "vip block none" {
		t.Fatalf("gdbmfetch through makedat's database: %q", got)
	}
	if code := MakedatMain([]string{"-src=" + filepath.Join(dir, "missing"), "-file=" + db}, &out, &errb); code == 0 {
		t.Fatal("missing source accepted")
	}
}
