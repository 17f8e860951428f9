package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// CacheConfig is the "authcache" setting: how long the answers of a
// module that asks a database or a directory (SQL, LDAP, PAM) are kept,
// as Dovecot's auth_cache_ttl and auth_cache_negative_ttl. The zero value
// keeps nothing.
type CacheConfig struct {
	TTL         time.Duration // an account found, and a login that succeeded
	NegativeTTL time.Duration // "no such user"
	Size        int           // most entries; the oldest go first
}

// Enabled reports whether the configuration caches anything.
func (c CacheConfig) Enabled() bool { return c.Size > 0 && (c.TTL > 0 || c.NegativeTTL > 0) }

// Cache keeps a module's recent answers, so that an MX asking for the same
// recipients, or clients logging in every few minutes, do not each cost a
// database query. What it keeps: accounts Lookup found (TTL), names no
// module record has (NegativeTTL), and logins that succeeded, under a keyed
// hash of the password (TTL): the password itself is never held. A wrong
// password is never cached, nor a temporary failure: each goes to the
// module again. A password changed through Postern (SetterOf) forgets the
// account at once; one changed in the database directly keeps working
// until its entry expires, as with Dovecot's cache. A reload starts empty.
// Safe for concurrent use.
type Cache struct {
	m   Module
	cfg CacheConfig
	key [32]byte // for the password digests
	now func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	order   []cacheKey // insertion order, for eviction
	hits    atomic.Int64
	misses  atomic.Int64
}

type cacheKey struct {
	kind    byte // 'l' lookup, 'a' login
	service string
	name    string
	digest  [32]byte
}

type cacheEntry struct {
	acct    *Account // nil: no such user
	expires time.Time
}

// NewCache wraps m. With cfg not Enabled it returns m itself.
func NewCache(m Module, cfg CacheConfig) Module {
	if !cfg.Enabled() {
		return m
	}
	c := &Cache{m: m, cfg: cfg, now: time.Now, entries: make(map[cacheKey]cacheEntry)}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("auth: no randomness for the cache key: " + err.Error())
	}
	return c
}

// Name is the wrapped module's.
func (c *Cache) Name() string { return c.m.Name() }

// Config returns the cache's settings.
func (c *Cache) Config() CacheConfig { return c.cfg }

// Unwrap returns the wrapped module.
func (c *Cache) Unwrap() Module { return c.m }

// Stats returns how many answers came from the cache and how many from the
// module.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// Lookup answers from the cache, or asks the module and keeps its answer.
func (c *Cache) Lookup(ctx context.Context, name string) (*Account, error) {
	k := cacheKey{kind: 'l', name: name}
	if a, err, ok := c.get(k); ok {
		return a, err
	}
	a, err := c.m.Lookup(ctx, name)
	c.put(k, a, err)
	return clone(a), err
}

// Authenticate answers a login from the cache when the same name, service
// and password succeeded within TTL, or the name was unknown within
// NegativeTTL; otherwise it asks the module.
func (c *Cache) Authenticate(ctx context.Context, service, name, password string) (*Account, error) {
	mac := hmac.New(sha256.New, c.key[:])
	mac.Write([]byte(password))
	k := cacheKey{kind: 'a', service: service, name: name}
	copy(k.digest[:], mac.Sum(nil))
	if a, err, ok := c.get(k); ok {
		return a, err
	}
	if _, err, ok := c.get(cacheKey{kind: 'l', name: name}); ok && errors.Is(err, ErrNoSuchUser) {
		return nil, err
	}
	a, err := c.m.Authenticate(ctx, service, name, password)
	if errors.Is(err, ErrNoSuchUser) {
		c.put(cacheKey{kind: 'l', name: name}, nil, err)
	} else {
		c.put(k, a, err)
	}
	return clone(a), err
}

// Flush drops every entry (a reload).
func (c *Cache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.order = nil
}

// Forget drops what the cache holds for the account name, under any of
// the names it was asked by (its password changed).
func (c *Cache) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if k.name == name || e.acct != nil && e.acct.Name == name {
			delete(c.entries, k)
		}
	}
}

func (c *Cache) get(k cacheKey) (*Account, error, bool) {
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !c.now().Before(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return nil, nil, false
	}
	c.hits.Add(1)
	if e.acct == nil {
		return nil, ErrNoSuchUser, true
	}
	return clone(e.acct), nil, true
}

// put keeps an answer worth keeping: an account, or "no such user".
func (c *Cache) put(k cacheKey, a *Account, err error) {
	var ttl time.Duration
	switch {
	case err == nil && a != nil:
		ttl = c.cfg.TTL
	case errors.Is(err, ErrNoSuchUser):
		ttl, a = c.cfg.NegativeTTL, nil
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[k]; !exists {
		for len(c.entries) >= c.cfg.Size && len(c.order) > 0 {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, k)
		if len(c.order) > 2*c.cfg.Size { // drop keys whose entries went already
			live := c.order[:0]
			for _, o := range c.order {
				if _, ok := c.entries[o]; ok {
					live = append(live, o)
				}
			}
			c.order = live
		}
	}
	c.entries[k] = cacheEntry{acct: clone(a), expires: c.now().Add(ttl)}
}

// clone copies an account, so that no caller can change the cached one.
func clone(a *Account) *Account {
	if a == nil {
		return nil
	}
	b := *a
	b.Options = maps.Clone(a.Options)
	b.Fields = maps.Clone(a.Fields)
	return &b
}

// Base returns the module m wraps (a Cache's), or m.
func Base(m Module) Module {
	if c, ok := m.(*Cache); ok {
		return c.m
	}
	return m
}

// SetterOf returns what changes passwords in m's module, or nil when it
// cannot: the module's own SetPassword, followed, for a cached module, by
// forgetting the account.
func SetterOf(m Module) PasswordSetter {
	ps, ok := Base(m).(PasswordSetter)
	if !ok {
		return nil
	}
	c, _ := m.(*Cache)
	return forgettingSetter{ps, c}
}

type forgettingSetter struct {
	ps PasswordSetter
	c  *Cache
}

func (f forgettingSetter) SetPassword(ctx context.Context, a *Account, service, newPassword string) error {
	err := f.ps.SetPassword(ctx, a, service, newPassword)
	if f.c != nil {
		f.c.Forget(a.Name)
	}
	return err
}
