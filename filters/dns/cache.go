package dns

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

// cacheEntry holds either a positive answer or a negative error (a kind
// matching ErrNotFound).
type cacheEntry struct {
	key     cacheKey
	answer  *Answer
	err     error
	expires time.Time
}

// lruCache is a size-bounded least-recently-used cache of answers. Expired
// entries are dropped when they are looked at; the size bound keeps memory
// flat whatever the traffic.
type lruCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used
	items map[cacheKey]*list.Element
}

func newLRUCache(max int) *lruCache {
	return &lruCache{max: max, order: list.New(), items: make(map[cacheKey]*list.Element)}
}

func (c *lruCache) get(k cacheKey, now time.Time) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return cacheEntry{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return cacheEntry{}, false
	}
	c.order.MoveToFront(el)
	return *e, true
}

func (c *lruCache) put(e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		*el.Value.(*cacheEntry) = e
		c.order.MoveToFront(el)
		return
	}
	c.items[e.key] = c.order.PushFront(&e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

func (c *lruCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *lruCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.items)
}
