package websession

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// Persister is where sessions are kept beyond the process: the server's
// state store (filters/state: bbolt, or Redis shared by several nodes)
// has these methods.
type Persister interface {
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// Keys in the Persister, under the store's prefix ("websession:NAME:"):
//
//	s:HASH   a session: its record, expiring when its idle time runs out.
//	         HASH is the SHA-256 of the cookie's value, so that a copy of
//	         the store does not hold anything a browser could present.
//	g:LOGIN  the login's generation: EndLogin (a password change) sets it
//	         to the time it ran; a session whose gen is older is over,
//	         wherever it is held.
type record struct {
	Login   string            `json:"login"`
	CSRF    string            `json:"csrf"`
	Created time.Time         `json:"created"`
	Seen    time.Time         `json:"seen"`
	Gen     int64             `json:"gen"`
	Values  map[string]string `json:"values,omitempty"`
}

const (
	// saveEvery: a request rewrites the stored copy only when the last
	// write is older, so that a busy session costs few writes; the stored
	// copy's idle time is at most this much shorter than the real one.
	saveEvery   = time.Minute
	persistWait = 2 * time.Second
)

func (st *Store) sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return st.prefix + "s:" + hex.EncodeToString(sum[:])
}

func (st *Store) genKey(login string) string { return st.prefix + "g:" + login }

// save writes s to the Persister, to expire when its idle time or its
// life runs out.
func (st *Store) save(s *Session) {
	if st.persist == nil {
		return
	}
	s.mu.Lock()
	rec := record{Login: s.Login, CSRF: s.CSRF, Created: s.Created, Seen: s.seen, Gen: s.gen, Values: make(map[string]string, len(s.values))}
	for k, v := range s.values {
		rec.Values[k] = v
	}
	s.saved = s.seen
	s.mu.Unlock()
	ttl := min(st.idle, st.max-rec.Seen.Sub(rec.Created))
	if ttl <= 0 {
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), persistWait)
	defer cancel()
	if err := st.persist.Set(ctx, st.sessionKey(s.id), b, ttl); err != nil {
		// The session goes on in this process; only a restart or another
		// node would not know it.
		st.log.Warn("websession: session not stored", "login", s.Login, "err", err)
	}
}

// load reads the session whose cookie value is id from the Persister and
// keeps it in memory, or returns nil.
func (st *Store) load(id string) *Session {
	ctx, cancel := context.WithTimeout(context.Background(), persistWait)
	defer cancel()
	b, found, err := st.persist.Get(ctx, st.sessionKey(id))
	if err != nil {
		st.log.Warn("websession: stored sessions unavailable", "err", err)
		return nil
	}
	if !found {
		return nil
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil || rec.Login == "" || rec.CSRF == "" {
		st.log.Warn("websession: a stored session is unreadable; dropped", "err", err)
		st.forget(id)
		return nil
	}
	s := &Session{id: id, Login: rec.Login, CSRF: rec.CSRF, Created: rec.Created, st: st,
		seen: rec.Seen, saved: rec.Seen, gen: rec.Gen, values: rec.Values}
	st.mu.Lock()
	if cur := st.sessions[id]; cur != nil {
		s = cur // loaded meanwhile by another request
	} else {
		st.sessions[id] = s
	}
	st.mu.Unlock()
	return s
}

// forget removes the stored copy of the session id.
func (st *Store) forget(id string) {
	if st.persist == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), persistWait)
	defer cancel()
	if err := st.persist.Delete(ctx, st.sessionKey(id)); err != nil {
		st.log.Warn("websession: stored session not removed", "err", err)
	}
}

// current reports whether s is of its login's current generation: not
// ended by an EndLogin on this node or another. When the store cannot
// say, a session this process already holds goes on.
func (st *Store) current(s *Session) bool {
	if st.persist == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), persistWait)
	defer cancel()
	b, found, err := st.persist.Get(ctx, st.genKey(s.Login))
	if err != nil || !found {
		return true
	}
	gen, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen >= gen
}

// endGeneration ends, in the Persister, every session of login started
// before now except keep, which joins the new generation.
func (st *Store) endGeneration(login string, keep *Session) {
	if st.persist == nil {
		return
	}
	gen := st.now().UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), persistWait)
	defer cancel()
	// Sessions live at most max, so the mark need not outlive them.
	if err := st.persist.Set(ctx, st.genKey(login), []byte(strconv.FormatInt(gen, 10)), st.max); err != nil {
		st.log.Error("websession: the end of the login's other sessions was not stored; they end on this node only", "login", login, "err", err)
	}
	if keep != nil {
		keep.mu.Lock()
		keep.gen = gen
		keep.mu.Unlock()
		st.save(keep)
	}
}
