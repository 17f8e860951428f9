package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// table is a module over a map that counts how often it is asked, and can
// be made to fail for now.
type table struct {
	mu       sync.Mutex
	pw       map[string]string
	calls    int
	down     bool
	setCalls int
}

func (t *table) Name() string { return "table" }

func (t *table) ask(name string) (*Account, string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if t.down {
		return nil, "", ErrTemporary
	}
	pw, ok := t.pw[name]
	if !ok {
		return nil, "", ErrNoSuchUser
	}
	return &Account{Name: name, UID: 7, Options: map[string]string{"x": "1"}, Module: "table"}, pw, nil
}

func (t *table) Lookup(_ context.Context, name string) (*Account, error) {
	a, _, err := t.ask(name)
	return a, err
}

func (t *table) Authenticate(_ context.Context, _, name, password string) (*Account, error) {
	a, pw, err := t.ask(name)
	if err != nil {
		return nil, err
	}
	if pw != password {
		return nil, ErrBadPassword
	}
	return a, nil
}

func (t *table) SetPassword(_ context.Context, a *Account, _, pw string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setCalls++
	t.pw[a.Name] = pw
	return nil
}

func (t *table) count() int { t.mu.Lock(); defer t.mu.Unlock(); return t.calls }

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time           { return c.t }
func (c *fakeClock) add(d time.Duration)      { c.t = c.t.Add(d) }
func newClock() *fakeClock                    { return &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }
func cached(m Module, cfg CacheConfig) *Cache { return NewCache(m, cfg).(*Cache) }

func TestCacheLookups(t *testing.T) {
	tb := &table{pw: map[string]string{"alice": "pw"}}
	clk := newClock()
	c := cached(tb, CacheConfig{TTL: time.Minute, NegativeTTL: 10 * time.Second, Size: 100})
	c.now = clk.now
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		a, err := c.Lookup(ctx, "alice")
		if err != nil || a.UID != 7 {
			t.Fatalf("lookup %d: %+v %v", i, a, err)
		}
		a.Options["x"] = "changed by a caller"
	}
	if tb.count() != 1 {
		t.Fatalf("module asked %d times for three lookups within the TTL, want 1", tb.count())
	}
	if a, _ := c.Lookup(ctx, "alice"); a.Options["x"] != "1" {
		t.Fatal("a caller's change reached the cached account")
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Lookup(ctx, "nobody"); !errors.Is(err, ErrNoSuchUser) {
			t.Fatalf("unknown: %v", err)
		}
	}
	if tb.count() != 2 {
		t.Fatalf("module asked %d times, want 2 (the unknown name once)", tb.count())
	}
	clk.add(11 * time.Second) // the negative entry expired, the positive one not
	c.Lookup(ctx, "nobody")
	c.Lookup(ctx, "alice")
	if tb.count() != 3 {
		t.Fatalf("after the negative TTL: %d calls, want 3", tb.count())
	}
	clk.add(time.Minute)
	c.Lookup(ctx, "alice")
	if tb.count() != 4 {
		t.Fatalf("after the TTL: %d calls, want 4", tb.count())
	}
	// A temporary failure is never kept.
	tb.mu.Lock()
	tb.down = true
	tb.mu.Unlock()
	for i := 0; i < 2; i++ {
		if _, err := c.Lookup(ctx, "bob"); !errors.Is(err, ErrTemporary) {
			t.Fatalf("backend down: %v", err)
		}
	}
	if tb.count() != 6 {
		t.Fatalf("temporary failures: %d calls, want 6 (each asked)", tb.count())
	}
	if h, m := c.Stats(); h == 0 || m == 0 {
		t.Errorf("stats %d hits %d misses", h, m)
	}
}

func TestCacheLogins(t *testing.T) {
	tb := &table{pw: map[string]string{"alice": "right"}}
	clk := newClock()
	c := cached(tb, CacheConfig{TTL: time.Minute, NegativeTTL: time.Minute, Size: 100})
	c.now = clk.now
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		if _, err := c.Authenticate(ctx, "imap", "alice", "right"); err != nil {
			t.Fatal(err)
		}
	}
	if tb.count() != 1 {
		t.Fatalf("three logins: %d calls, want 1", tb.count())
	}
	// A wrong password is asked every time, and never answered from the
	// right one's entry.
	for i := 0; i < 2; i++ {
		if _, err := c.Authenticate(ctx, "imap", "alice", "wrong"); !errors.Is(err, ErrBadPassword) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if tb.count() != 3 {
		t.Fatalf("two wrong passwords: %d calls, want 3", tb.count())
	}
	// Another service is its own entry (per-service passwords).
	c.Authenticate(ctx, "pop3", "alice", "right")
	if tb.count() != 4 {
		t.Fatalf("another service: %d calls, want 4", tb.count())
	}
	// An unknown name is kept, whatever password comes with it.
	c.Authenticate(ctx, "imap", "ghost", "a")
	if _, err := c.Authenticate(ctx, "imap", "ghost", "b"); !errors.Is(err, ErrNoSuchUser) || tb.count() != 5 {
		t.Fatalf("unknown name again: %v, %d calls, want ErrNoSuchUser and 5", err, tb.count())
	}
	// A password changed through Postern is forgotten at once: the old
	// one stops working, the new one works.
	ps := SetterOf(c)
	if ps == nil {
		t.Fatal("SetterOf: nil for a module that changes passwords")
	}
	a, _ := c.Lookup(ctx, "alice")
	if err := ps.SetPassword(ctx, a, "imap", "new"); err != nil || tb.setCalls != 1 {
		t.Fatalf("SetPassword: %v, %d calls", err, tb.setCalls)
	}
	if _, err := c.Authenticate(ctx, "imap", "alice", "right"); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("old password after the change: %v", err)
	}
	if _, err := c.Authenticate(ctx, "imap", "alice", "new"); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestCacheSizeAndPassThrough(t *testing.T) {
	tb := &table{pw: map[string]string{"a": "1", "b": "1", "c": "1"}}
	c := cached(tb, CacheConfig{TTL: time.Hour, Size: 2})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		c.Lookup(ctx, n)
	}
	c.Lookup(ctx, "a") // the oldest went to make room for c
	if tb.count() != 4 {
		t.Fatalf("%d calls, want 4", tb.count())
	}
	if n := len(c.entries); n > 2 {
		t.Fatalf("%d entries, want at most 2", n)
	}
	if NewCache(tb, CacheConfig{}) != Module(tb) {
		t.Error("a disabled cache wraps the module")
	}
	if Base(c) != Module(tb) || Base(tb) != Module(tb) || c.Name() != "table" {
		t.Error("Base or Name")
	}
	type plain struct{ Module }
	if SetterOf(cached(plain{tb}, CacheConfig{TTL: time.Hour, Size: 1})) != nil {
		t.Error("SetterOf: a setter for a module that cannot change passwords")
	}
}
