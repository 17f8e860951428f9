package maildir

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzCourierKeywords: any :list and update file read without a crash;
// what is read is valid keywords, sorted, and survives Merge and a second
// read unchanged.
func FuzzCourierKeywords(f *testing.F) {
	f.Add([]byte("a\nb\n\nK1:0 1\nK2:1\n"), []byte("x\ny\n"))
	f.Add([]byte("\n\n:\nK:9 -1 x\n"), []byte(""))
	f.Add([]byte("(bad\n$ok\n\nK:0 1 1 0\n"), []byte("\\Seen\nfoo bar\nFoo\nfoo\n"))
	f.Fuzz(func(t *testing.T, list, update []byte) {
		dir := t.TempDir()
		kw := filepath.Join(dir, courierKwDir)
		os.MkdirAll(kw, 0o700)
		os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
		os.WriteFile(filepath.Join(kw, ":list"), list, 0o644)
		os.WriteFile(filepath.Join(kw, "K1"), update, 0o644)
		now := time.Now()
		ck, err := ReadCourierKeywords(dir, true, now)
		if err != nil {
			return // a :list line over the scanner's limit
		}
		for k, set := range ck.Sets {
			for i, n := range set {
				if ValidKeyword(n) != nil || i > 0 && set[i-1] >= n {
					t.Fatalf("%s: set %q", k, set)
				}
			}
		}
		if err := ck.Merge(now); err != nil {
			t.Fatal(err)
		}
		again, err := ReadCourierKeywords(dir, true, now)
		if err != nil {
			t.Fatal(err)
		}
		for k, set := range ck.Sets {
			if len(set) > 0 && courierSetKey(again.Sets[k]) != courierSetKey(set) {
				t.Fatalf("%s: %q after merge, %q before", k, again.Sets[k], set)
			}
		}
	})
}
