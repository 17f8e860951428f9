package dirfact

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFactHoldsUntilTheDirectoryChanges(t *testing.T) {
	dir := t.TempDir()
	stat := func() os.FileInfo {
		t.Helper()
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	var c Cache
	st := stat()
	c.Remember(dir, st, time.Now())
	if c.Holds(dir, stat()) {
		t.Fatal("a directory changed just now was remembered: a change in the same clock tick would go unseen")
	}
	c.Remember(dir, st, time.Now().Add(Settle+time.Second))
	if !c.Holds(dir, stat()) {
		t.Fatal("a settled, unchanged directory's fact does not hold")
	}
	time.Sleep(50 * time.Millisecond) // past the file system's timestamp tick
	if err := os.WriteFile(filepath.Join(dir, ".courier"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Holds(dir, stat()) {
		t.Fatal("the fact still holds after a file was created in the directory")
	}
	c.Remember(dir, stat(), time.Now().Add(Settle+time.Second))
	time.Sleep(50 * time.Millisecond)
	if err := os.Remove(filepath.Join(dir, ".courier")); err != nil {
		t.Fatal(err)
	}
	if c.Holds(dir, stat()) {
		t.Fatal("the fact still holds after a file was removed from the directory")
	}
	c.Remember(dir, stat(), time.Now().Add(Settle+time.Second))
	c.Forget(dir)
	if c.Holds(dir, stat()) {
		t.Fatal("a forgotten fact holds")
	}
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	fst, _ := os.Stat(file)
	c.Remember(file, fst, time.Now().Add(Settle+time.Second))
	if c.Holds(file, fst) {
		t.Fatal("a fact about a regular file was remembered")
	}
}
