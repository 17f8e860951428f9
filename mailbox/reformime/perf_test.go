package reformime

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestHostileInputIsLinear: a long header full of stray "=?" and a body
// of many short lines are handled quickly (no quadratic scans).
func TestHostileInputIsLinear(t *testing.T) {
	msg := "Subject: " + strings.Repeat("=?a?", 200000) + "\nMime-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
		strings.Repeat("--b\n\nx\n", 1000) + strings.Repeat("line\n", 200000)
	start := time.Now()
	for _, args := range [][]string{{"-u"}, {"-r7"}, {"-i"}} {
		Run(context.Background(), Config{Env: []string{"LANG=C.UTF-8"}}, args, bytes.NewReader([]byte(msg)), io.Discard, io.Discard)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}
