package mailbot

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzMessage feeds arbitrary messages to the header reader, the answering
// policy and the reply builder in every format: nothing may panic.
func FuzzMessage(f *testing.F) {
	f.Add([]byte(lunch))
	f.Add([]byte("From: \"a, b\" <a@b>, (c) d@e\r\nTo: :;\r\n\tx\r\nList-Id: x\r\n\r\nbody"))
	f.Add([]byte(" leading fold\nFrom:\nReply-To: <>\n\n>From x\n"))
	dir := f.TempDir()
	text := filepath.Join(dir, "t")
	os.WriteFile(text, []byte("away\n"), 0o644)
	cfg := testConfig(nil)
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, mode := range []string{"reply", "replyall", "replydsn", "forward", "forwardatt"} {
			code := Run(context.Background(), cfg, []string{"-n", "-T", mode, "-a", "-S", "%F %f %d %{%Y}d %S %i %%", "-t", text}, bytes.NewReader(msg), io.Discard, io.Discard)
			if code != 0 {
				t.Fatalf("%s: exit %d", mode, code)
			}
		}
	})
}
