package deliver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/internal/atomicfile"
)

// SieveMemoryFile is the file in the account's home where Sieve's vacation
// and duplicate tests remember what they have seen (Pigeonhole keeps the
// same memory in ~/.dovecot.lda-dupes).
const SieveMemoryFile = ".postern.sieve-dupes"

// maxSieveMemory bounds the entries kept; the ones that expire first go
// when it is reached.
const maxSieveMemory = 10000

// SieveMemory is a small persistent set of keys with expiry times, one
// per account, for the Sieve vacation (RFC 5230 section 4.2) and duplicate
// (RFC 7352) tests. Keys are stored as SHA-256 hashes, one "EXPIRY HASH"
// line each, under an exclusive flock, so that concurrent deliveries to
// the same account see each other's records.
type SieveMemory struct {
	Path string
	Now  func() time.Time
}

func (m *SieveMemory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Seen reports whether key was recorded and has not expired.
func (m *SieveMemory) Seen(key string) (bool, error) {
	var seen bool
	err := m.locked(func(entries map[string]int64) bool {
		_, seen = entries[hashKey(key)]
		return false
	})
	return seen, err
}

// Record remembers key for ttl (replacing an earlier record of it).
func (m *SieveMemory) Record(key string, ttl time.Duration) error {
	return m.locked(func(entries map[string]int64) bool {
		entries[hashKey(key)] = m.now().Add(ttl).Unix()
		return true
	})
}

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

// locked runs fn over the unexpired entries while holding the lock file;
// when fn reports a change, the file is rewritten atomically.
func (m *SieveMemory) locked(fn func(map[string]int64) bool) error {
	lock, err := os.OpenFile(m.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sieve memory: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("sieve memory: lock: %w", err)
	}
	entries, expired, err := m.read()
	if err != nil {
		return err
	}
	if !fn(entries) && !expired {
		return nil
	}
	return m.write(entries)
}

// read loads the file, dropping expired entries and lines it cannot
// read (a hand-edited or damaged file costs memory, not the delivery).
func (m *SieveMemory) read() (map[string]int64, bool, error) {
	entries := map[string]int64{}
	b, err := os.ReadFile(m.Path)
	if os.IsNotExist(err) {
		return entries, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("sieve memory: %w", err)
	}
	now := m.now().Unix()
	dropped := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		exp, key, ok := strings.Cut(sc.Text(), " ")
		t, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || len(key) != 32 || t <= now {
			dropped = true
			continue
		}
		entries[key] = t
	}
	return entries, dropped, nil
}

func (m *SieveMemory) write(entries map[string]int64) error {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	// Latest expiry first, so that the cap drops the ones due soonest.
	sort.Slice(keys, func(i, j int) bool {
		if entries[keys[i]] != entries[keys[j]] {
			return entries[keys[i]] > entries[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) > maxSieveMemory {
		keys = keys[:maxSieveMemory]
	}
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%d %s\n", entries[k], k)
	}
	if err := os.MkdirAll(filepath.Dir(m.Path), 0o700); err != nil {
		return fmt.Errorf("sieve memory: %w", err)
	}
	if err := atomicfile.Write(m.Path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("sieve memory: %w", err)
	}
	return nil
}
