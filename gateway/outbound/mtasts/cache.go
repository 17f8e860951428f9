package mtasts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// cache holds the policies fetched, in memory and, when dir is set, in one
// JSON file per domain so that they survive a restart (RFC 8461 section
// 3.3: a cached policy stays valid until max_age, and that is what protects
// against later stripping of the TXT record).
type cache struct {
	dir string // "" keeps policies in memory only
	log *slog.Logger

	mu       sync.Mutex
	policies map[string]*Policy // by lower-case domain
}

// cacheFile is the on-disk form of one domain's policy.
type cacheFile struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Mode    Mode      `json:"mode"`
	MX      []string  `json:"mx,omitempty"`
	MaxAge  int64     `json:"max_age"` // seconds
}

const (
	cacheFileSuffix = ".json"
	tempFilePrefix  = ".tmp-"
	maxCacheFile    = 4 * maxPolicySize // generous: the JSON of the largest policy
)

// newCache makes the cache and, with a directory, loads the policies in it:
// expired ones, unreadable ones and temporary files left by a crash are
// removed.
func newCache(dir string, now time.Time, log *slog.Logger) (*cache, error) {
	c := &cache{dir: dir, log: log, policies: map[string]*Policy{}}
	if dir == "" {
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	for _, entry := range entries {
		name := entry.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, tempFilePrefix) && entry.Type().IsRegular():
			os.Remove(path) // an interrupted write
			continue
		case !strings.HasSuffix(name, cacheFileSuffix) || !entry.Type().IsRegular():
			continue // not ours
		}
		domain, err := normalizeDomain(strings.TrimSuffix(name, cacheFileSuffix))
		if err != nil || domain+cacheFileSuffix != name {
			continue // not ours either: we only write normalized names
		}
		policy, err := readCacheFile(path, domain)
		if err != nil {
			log.Warn("mta-sts: dropping unreadable cached policy", "file", path, "err", err)
			os.Remove(path)
			continue
		}
		if policy.expired(now) {
			os.Remove(path)
			continue
		}
		c.policies[domain] = policy
	}
	return c, nil
}

// readCacheFile reads and checks one cache file as carefully as a fetched
// policy: the directory may have been edited by hand.
func readCacheFile(path, domain string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCacheFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCacheFile)
	}
	var cf cacheFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return nil, err
	}
	if cf.Domain != domain {
		return nil, fmt.Errorf("holds domain %q", cf.Domain)
	}
	if !validID(cf.ID) {
		return nil, fmt.Errorf("bad id %q", cf.ID)
	}
	switch cf.Mode {
	case ModeEnforce, ModeTesting, ModeNone:
	default:
		return nil, fmt.Errorf("bad mode %q", cf.Mode)
	}
	if len(cf.MX) == 0 && cf.Mode != ModeNone {
		return nil, fmt.Errorf("mode %s without mx", cf.Mode)
	}
	for _, pattern := range cf.MX {
		if normalized, err := normalizePattern(pattern); err != nil || normalized != pattern {
			return nil, fmt.Errorf("bad mx %q", pattern)
		}
	}
	if cf.MaxAge < 0 || cf.MaxAge > int64(maxMaxAge/time.Second) {
		return nil, fmt.Errorf("bad max_age %d", cf.MaxAge)
	}
	if cf.Fetched.IsZero() {
		return nil, errors.New("no fetch time")
	}
	return &Policy{
		Mode:    cf.Mode,
		MX:      cf.MX,
		MaxAge:  time.Duration(cf.MaxAge) * time.Second,
		ID:      cf.ID,
		Fetched: cf.Fetched,
	}, nil
}

// get returns the unexpired cached policy of domain, or nil. An expired one
// is forgotten, and its file removed.
func (c *cache) get(domain string, now time.Time) *Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	policy := c.policies[domain]
	if policy == nil {
		return nil
	}
	if policy.expired(now) {
		delete(c.policies, domain)
		c.removeFile(domain)
		return nil
	}
	return policy
}

// put caches a freshly fetched policy of domain, replacing any other, and
// writes it to disk. Expired policies of other domains are dropped at the
// same time, so that the map does not keep every domain ever seen. A
// policy that cannot be written is still cached in memory.
func (c *cache) put(domain string, policy *Policy, now time.Time) {
	c.mu.Lock()
	for d, p := range c.policies {
		if p.expired(now) {
			delete(c.policies, d)
			c.removeFile(d)
		}
	}
	if policy.expired(now) {
		// max_age 0: usable for the delivery that fetched it, nothing more.
		delete(c.policies, domain)
		c.removeFile(domain)
		c.mu.Unlock()
		return
	}
	c.policies[domain] = policy
	c.mu.Unlock()

	if c.dir == "" {
		return
	}
	if err := c.writeFile(domain, policy); err != nil {
		c.log.Warn("mta-sts: cannot save policy, keeping it in memory only", "domain", domain, "err", err)
	}
}

// removeFile deletes the cache file of domain, if any.
func (c *cache) removeFile(domain string) {
	if c.dir == "" {
		return
	}
	err := os.Remove(filepath.Join(c.dir, domain+cacheFileSuffix))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("mta-sts: cannot remove expired policy", "domain", domain, "err", err)
	}
}

// writeFile stores policy as DIR/DOMAIN.json atomically: write a temporary
// file in the same directory, fsync it, rename it over the old one, fsync
// the directory. domain has been through normalizeDomain, so the name
// stays inside the directory.
func (c *cache) writeFile(domain string, policy *Policy) (err error) {
	data, err := json.Marshal(cacheFile{
		Domain:  domain,
		ID:      policy.ID,
		Fetched: policy.Fetched.UTC(),
		Mode:    policy.Mode,
		MX:      policy.MX,
		MaxAge:  int64(policy.MaxAge / time.Second),
	})
	if err != nil {
		return fmt.Errorf("mta-sts cache %s: %w", domain, err)
	}
	f, err := os.CreateTemp(c.dir, tempFilePrefix+domain+"-*")
	if err != nil {
		return fmt.Errorf("mta-sts cache %s: %w", domain, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(c.dir, domain+cacheFileSuffix))
	}
	if err == nil {
		err = syncDir(c.dir)
	}
	if err != nil {
		return fmt.Errorf("mta-sts cache %s: %w", domain, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
