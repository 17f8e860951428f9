package deliver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSieveMemoryExpiry(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := &SieveMemory{Path: filepath.Join(t.TempDir(), SieveMemoryFile), Now: func() time.Time { return now }}
	if seen, err := m.Seen("vacation alice bob"); err != nil || seen {
		t.Fatalf("fresh memory: seen=%v err=%v", seen, err)
	}
	if err := m.Record("vacation alice bob", 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if seen, _ := m.Seen("vacation alice bob"); !seen {
		t.Fatal("recorded key not seen")
	}
	if seen, _ := m.Seen("vacation alice carol"); seen {
		t.Fatal("another key seen")
	}
	now = now.Add(7*24*time.Hour - time.Second)
	if seen, _ := m.Seen("vacation alice bob"); !seen {
		t.Fatal("key forgotten before its expiry")
	}
	now = now.Add(2 * time.Second)
	if seen, _ := m.Seen("vacation alice bob"); seen {
		t.Fatal("key still seen after its expiry")
	}
	// The expired entry is gone from the file, not only ignored.
	b, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(b))) != 0 {
		t.Fatalf("expired entry kept: %q", b)
	}
}

func TestSieveMemoryDamagedFile(t *testing.T) {
	m := &SieveMemory{Path: filepath.Join(t.TempDir(), SieveMemoryFile)}
	if err := os.WriteFile(m.Path, []byte("garbage\n12 short\n\x00\x01 zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Record("k", time.Hour); err != nil {
		t.Fatal(err)
	}
	if seen, err := m.Seen("k"); err != nil || !seen {
		t.Fatalf("seen=%v err=%v", seen, err)
	}
	b, _ := os.ReadFile(m.Path)
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Fatalf("damaged lines kept: %q", b)
	}
}

func TestSieveMemoryConcurrent(t *testing.T) {
	m := &SieveMemory{Path: filepath.Join(t.TempDir(), SieveMemoryFile)}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := m.Record(fmt.Sprint("key", i), time.Hour); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < 20; i++ {
		if seen, err := m.Seen(fmt.Sprint("key", i)); err != nil || !seen {
			t.Fatalf("key%d lost by a concurrent writer (seen=%v err=%v)", i, seen, err)
		}
	}
}
