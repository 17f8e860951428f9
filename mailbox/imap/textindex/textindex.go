// Package textindex is a per-folder substring index on disk for IMAP
// SEARCH BODY and TEXT.
//
// IMAP's BODY and TEXT keys match a case-insensitive substring
// (RFC 3501 6.4.4), so a word index would miss "ebra" in "zebra". This
// index keeps byte trigrams instead: for each document (a message), the
// set of 3-byte sequences of its lowercased text, per field (body,
// header). A query of three bytes or more can only occur in a document
// that holds every trigram of the query, so the intersection of those
// trigrams' posting lists is a superset of the matches; the caller checks
// each candidate against the real text. Shorter queries give no filter.
//
// The index must never give a false negative: a document it has not seen,
// whose text exceeded MaxDocText, or whose segment turned out damaged is
// always a candidate.
//
// On disk it is a directory (DirName) of immutable segment files, each
// written to a temporary name and renamed into place; new documents go
// into small segments that are merged, size-tiered, when four of a size
// class exist. A segment records the folder's UIDVALIDITY and, per
// document, a hash of the message's Maildir key, so a new UIDVALIDITY or
// a UID that now names another file is re-indexed. Queries read only the
// term blocks and posting lists they need (pread); each list carries a
// CRC. One process owns the directory, by an exclusive flock on its lock
// file; Open fails with ErrLocked in any other. docs/imap-index.md
// describes the format.
package textindex

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// DirName is the index directory inside a folder's directory.
const DirName = "postern-imaptext"

// MaxDocText bounds the text indexed per document (all fields together).
// A longer document is recorded without trigrams and is a candidate for
// every query.
const MaxDocText = 1 << 20

// maxFields bounds the fields of a document (the field is a key's top byte).
const maxFields = 8

// Tuning.
const (
	defaultSegmentBytes = 8 << 20 // posting bytes buffered before a segment is written
	mergeFanIn          = 4       // segments of one size class merged together
	maxListsRead        = 4       // posting lists intersected per field and segment
	largeBuild          = 1024    // documents to index from which a builder gets a direct table
	maxTrigramsLooked   = 64      // trigrams of a query looked up per field and segment
)

// ErrLocked: another process owns the index directory.
var ErrLocked = errors.New("textindex: index in use by another process")

// Field numbers a part of a document; each field has its own trigrams.
type Field uint8

// Doc is one document to index: Text[f] holds the pieces of field f, each
// already lowercased exactly as the matcher lowercases what it compares.
// Trigrams are taken within each piece.
type Doc struct {
	UID       uint32
	Key       string
	Text      [][]string
	Truncated bool // the caller could not give the whole text: always a candidate
}

// Message names a live message of the folder: its UID and Maildir key.
// Lists of messages are in ascending UID order.
type Message struct {
	UID uint32
	Key string
}

// Options tune an Index.
type Options struct {
	Logger *slog.Logger
	// SegmentBytes is how many posting bytes are buffered before a segment
	// is written (default 8 MiB); tests make it small.
	SegmentBytes int
	// LoadWorkers is how many documents Update loads at once (default
	// GOMAXPROCS); the load function must allow it.
	LoadWorkers int
}

// Index is one folder's text index, safe for concurrent use.
type Index struct {
	dir  string
	log  *slog.Logger
	opt  Options
	lock *os.File

	buildMu sync.Mutex // one Update (and its merges) at a time

	mu      sync.Mutex
	segs    []*segment // oldest first
	nextGen uint64
	closed  bool
}

// Open opens (creating it) the index directory dir and its segments. A
// segment that fails its checks is deleted; its documents are indexed
// again by the next Update.
func Open(dir string, opt Options) (*Index, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = defaultSegmentBytes
	}
	if opt.LoadWorkers <= 0 {
		opt.LoadWorkers = runtime.GOMAXPROCS(0)
	}
	// Mkdir, not MkdirAll: a folder deleted meanwhile must not come back.
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("textindex %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("textindex %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("textindex %s: %w", dir, ErrLocked)
	}
	ix := &Index{dir: dir, log: opt.Logger, opt: opt, lock: lock, nextGen: 1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("textindex %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(path) // left by a crash
			continue
		}
		gen, ok := segmentGen(name)
		if !ok {
			continue
		}
		ix.nextGen = max(ix.nextGen, gen+1)
		s, err := openSegmentFile(path, gen)
		if err != nil {
			ix.log.Warn("textindex: segment dropped", "path", path, "err", err)
			os.Remove(path)
			continue
		}
		ix.segs = append(ix.segs, s)
	}
	slices.SortFunc(ix.segs, func(a, b *segment) int { return cmpUint64(a.gen, b.gen) })
	return ix, nil
}

func cmpUint64(a, b uint64) int { return cmp.Compare(a, b) }

// segmentGen parses "GGGGGGGGGGGGGGGG.seg" (16 hex digits).
func segmentGen(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	g, err := strconv.ParseUint(hex, 16, 64)
	return g, err == nil
}

func (ix *Index) segPath(gen uint64) string {
	return filepath.Join(ix.dir, fmt.Sprintf("%016x.seg", gen))
}

// Close releases the segments and the directory lock.
func (ix *Index) Close() error {
	ix.buildMu.Lock()
	defer ix.buildMu.Unlock()
	ix.mu.Lock()
	segs := ix.segs
	ix.segs, ix.closed = nil, true
	ix.mu.Unlock()
	for _, s := range segs {
		s.retire()
	}
	if ix.lock != nil {
		err := ix.lock.Close()
		ix.lock = nil
		return err
	}
	return nil
}

// acquire returns the current segments with a reference each.
func (ix *Index) acquire() []*segment {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	segs := slices.Clone(ix.segs)
	for _, s := range segs {
		s.acquire()
	}
	return segs
}

func releaseAll(segs []*segment) {
	for _, s := range segs {
		s.release()
	}
}

// replace swaps the segments old for add in the list and deletes old's
// files; readers that hold them finish first.
func (ix *Index) replace(old []*segment, add *segment) {
	ix.mu.Lock()
	ix.segs = slices.DeleteFunc(ix.segs, func(s *segment) bool { return slices.Contains(old, s) })
	if add != nil {
		ix.segs = append(ix.segs, add)
		slices.SortFunc(ix.segs, func(a, b *segment) int { return cmpUint64(a.gen, b.gen) })
	}
	ix.mu.Unlock()
	for _, s := range old {
		os.Remove(s.path)
		s.retire()
	}
}

// keyHash is what a segment keeps of a message's Maildir key: its
// CRC-32C, which the CPU computes (a search hashes every key of the view).
func keyHash(key string, buf *[]byte) uint32 {
	*buf = append((*buf)[:0], key...)
	return crc32.Checksum(*buf, castagnoli)
}

// coverage returns, for each message of live, the index in segs of the
// newest usable segment that indexed it under the same key (or -1), and
// whether that segment recorded it without trigrams (too long); and how
// many documents of the segments are dead: at or below live's highest UID
// but not in live.
func coverage(segs []*segment, validity uint32, live []Message, hashes []uint32) (cover []int16, truncated []bool, dead int) {
	cover = make([]int16, len(live))
	truncated = make([]bool, len(live))
	for i := range cover {
		cover[i] = -1
	}
	for j := len(segs) - 1; j >= 0; j-- {
		s := segs[j]
		if s.validity != validity || s.bad.Load() {
			continue
		}
		a := 0
		for i := range live {
			u := live[i].UID
			for a < len(s.uids) && s.uids[a] < u {
				a++
				dead++
			}
			if a == len(s.uids) {
				break
			}
			if s.uids[a] == u {
				if cover[i] < 0 && s.keys[a] == hashes[i] {
					cover[i] = int16(j)
					truncated[i] = s.flags[a]&flagTruncated != 0
				}
				a++
			}
		}
	}
	return cover, truncated, dead
}

// keyHashes hashes the keys of live (touching every key string: a few
// milliseconds for 100,000, so once per search).
func keyHashes(live []Message) []uint32 {
	hashes := make([]uint32, len(live))
	var buf []byte
	for i := range live {
		hashes[i] = keyHash(live[i].Key, &buf)
	}
	return hashes
}

// Stats says what an Update did.
type Stats struct {
	Indexed  int // documents read and added
	Segments int // segments after the update
	Merged   int // merges done
}

// Update brings the index up to date with live, the folder's messages in
// ascending UID order: segments of another UIDVALIDITY or found damaged
// are dropped, each message not indexed under its key is loaded with load
// (ok false: skip it, it stays a candidate; called from several goroutines
// at once, see Options.LoadWorkers) and added, and segments are
// merged. When more than half of the indexed documents at or below the
// highest live UID are no longer live (expunged), everything is merged
// into one segment without them. Errors leave the index usable: what was
// not written is simply not indexed.
//
// The returned Searcher (never nil; Close it) answers queries over live
// with the updated index.
func (ix *Index) Update(validity uint32, live []Message, load func(Message) (Doc, bool)) (*Searcher, Stats, error) {
	hashes := keyHashes(live)
	st, err := ix.update(validity, live, hashes, load)
	return ix.searcher(validity, live, hashes), st, err
}

func (ix *Index) update(validity uint32, live []Message, hashes []uint32, load func(Message) (Doc, bool)) (Stats, error) {
	var st Stats
	ix.buildMu.Lock()
	defer ix.buildMu.Unlock()
	if !slices.IsSortedFunc(live, func(a, b Message) int { return cmpUint32(a.UID, b.UID) }) {
		return st, errors.New("textindex: messages not in UID order")
	}
	ix.mu.Lock()
	if ix.closed {
		ix.mu.Unlock()
		return st, errors.New("textindex: closed")
	}
	var drop []*segment
	for _, s := range ix.segs {
		if s.validity != validity || s.bad.Load() {
			drop = append(drop, s)
		}
	}
	ix.mu.Unlock()
	if len(drop) > 0 {
		ix.replace(drop, nil)
	}

	segs := ix.acquire()
	cover, _, dead := coverage(segs, validity, live, hashes)
	var maxLive uint32
	if len(live) > 0 {
		maxLive = live[len(live)-1].UID
	}
	indexed := 0
	for _, s := range segs {
		// Documents at or below maxLive.
		indexed += sort.Search(len(s.uids), func(k int) bool { return s.uids[k] > maxLive })
	}
	releaseAll(segs)

	var missing []Message
	for i, m := range live {
		if cover[i] < 0 {
			missing = append(missing, m)
		}
	}
	var b *builder
	flush := func() error {
		if b == nil || len(b.docs) == 0 {
			return nil
		}
		err := ix.writeBuilder(b, validity)
		b = nil
		return err
	}
	loads, stop := ix.loadAll(missing, load)
	defer stop()
	for batch := range loads {
		for i, d := range batch.docs {
			if !batch.ok[i] {
				continue
			}
			d.UID, d.Key = batch.msgs[i].UID, batch.msgs[i].Key
			if b == nil {
				b = newBuilder(len(missing) >= largeBuild)
			}
			b.add(d)
			st.Indexed++
			if b.bytes >= ix.opt.SegmentBytes {
				if err := flush(); err != nil {
					return st, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}

	if dead > 0 && dead*2 > indexed {
		liveSet := func(u uint32) bool {
			if u > maxLive {
				return true
			}
			_, ok := slices.BinarySearchFunc(live, u, func(m Message, u uint32) int { return cmpUint32(m.UID, u) })
			return ok
		}
		if err := ix.mergeSegments(ix.acquire(), liveSet, validity); err != nil {
			return st, err
		}
		st.Merged++
	}
	for {
		group := ix.pickMerge()
		if group == nil {
			break
		}
		if err := ix.mergeSegments(group, nil, validity); err != nil {
			return st, err
		}
		st.Merged++
	}
	ix.mu.Lock()
	st.Segments = len(ix.segs)
	ix.mu.Unlock()
	return st, nil
}

// loadBatch is a run of consecutive messages loaded for indexing.
type loadBatch struct {
	msgs []Message
	docs []Doc
	ok   []bool
}

// loadBatchSize: messages loaded together, in parallel, while the previous
// batch is added to the builder.
const loadBatchSize = 256

// loadAll loads msgs with load, LoadWorkers at a time, and delivers them
// in order, batch by batch. stop ends the loading early; the goroutines
// are gone when it returns.
func (ix *Index) loadAll(msgs []Message, load func(Message) (Doc, bool)) (<-chan *loadBatch, func()) {
	out := make(chan *loadBatch, 1)
	done := make(chan struct{})
	finished := make(chan struct{})
	workers := ix.opt.LoadWorkers
	go func() {
		defer close(finished)
		defer close(out)
		for start := 0; start < len(msgs); start += loadBatchSize {
			part := msgs[start:min(len(msgs), start+loadBatchSize)]
			batch := &loadBatch{msgs: part, docs: make([]Doc, len(part)), ok: make([]bool, len(part))}
			var next atomic.Int64
			var wg sync.WaitGroup
			for range min(workers, len(part)) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= len(part) {
							return
						}
						batch.docs[i], batch.ok[i] = load(part[i])
					}
				}()
			}
			wg.Wait()
			select {
			case out <- batch:
			case <-done:
				return
			}
		}
	}()
	return out, func() {
		close(done)
		<-finished
	}
}

// writeBuilder writes b as a new segment and adds it to the list.
func (ix *Index) writeBuilder(b *builder, validity uint32) error {
	ix.mu.Lock()
	gen := ix.nextGen
	ix.nextGen++
	ix.mu.Unlock()
	path := ix.segPath(gen)
	if err := b.write(path+".tmp", path, validity); err != nil {
		return fmt.Errorf("textindex %s: write: %w", ix.dir, err)
	}
	s, err := openSegmentFile(path, gen)
	if err != nil {
		os.Remove(path)
		return err
	}
	ix.replace(nil, s)
	return nil
}

// level is a segment's size class: four merged segments of one level make
// one of the next.
func level(docs int) int {
	l := 0
	for docs >= mergeFanIn {
		docs /= mergeFanIn
		l++
	}
	return l
}

// pickMerge returns (acquired) the segments of the lowest size class that
// has mergeFanIn of them, or nil.
func (ix *Index) pickMerge() []*segment {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	byLevel := map[int][]*segment{}
	best := -1
	for _, s := range ix.segs {
		l := level(len(s.uids))
		byLevel[l] = append(byLevel[l], s)
		if len(byLevel[l]) >= mergeFanIn && (best < 0 || l < best) {
			best = l
		}
	}
	if best < 0 {
		return nil
	}
	group := byLevel[best]
	for _, s := range group {
		s.acquire()
	}
	return group
}

// mergeSegments merges group (acquired; released here) into one segment.
func (ix *Index) mergeSegments(group []*segment, keep func(uint32) bool, validity uint32) error {
	defer releaseAll(group)
	if len(group) == 0 {
		return nil
	}
	ix.mu.Lock()
	gen := ix.nextGen
	ix.nextGen++
	ix.mu.Unlock()
	path := ix.segPath(gen)
	ndocs, err := merge(group, keep, validity, path+".tmp", path)
	if err != nil {
		return fmt.Errorf("textindex %s: merge: %w", ix.dir, err)
	}
	var s *segment
	if ndocs > 0 {
		if s, err = openSegmentFile(path, gen); err != nil {
			os.Remove(path)
			return err
		}
	} else {
		os.Remove(path)
	}
	ix.replace(group, s)
	return nil
}

// Searcher answers queries over one list of live messages; Close it.
type Searcher struct {
	segs  []*segment
	live  []Message
	cover []int16
	// truncated: the covering segment recorded the message without
	// trigrams.
	truncated []bool
}

// Searcher prepares queries for live (ascending UIDs) with the folder's
// current UIDVALIDITY.
func (ix *Index) Searcher(validity uint32, live []Message) *Searcher {
	return ix.searcher(validity, live, keyHashes(live))
}

func (ix *Index) searcher(validity uint32, live []Message, hashes []uint32) *Searcher {
	segs := ix.acquire()
	sr := &Searcher{segs: segs, live: live}
	sr.cover, sr.truncated, _ = coverage(segs, validity, live, hashes)
	return sr
}

// Close releases the segments.
func (sr *Searcher) Close() {
	releaseAll(sr.segs)
	sr.segs = nil
}

// Unindexed counts the live messages the index does not cover.
func (sr *Searcher) Unindexed() int {
	n := 0
	for _, c := range sr.cover {
		if c < 0 {
			n++
		}
	}
	return n
}

// Candidates returns, per live message, whether it may contain query (a
// lowercased search string) in one of fields. nil means no filter: the
// query is shorter than a trigram. A message is a candidate when the
// index does not cover it, when its text was too long to index, when its
// segment cannot be read, or when its segment lists it under every
// trigram of the query in one of the fields.
func (sr *Searcher) Candidates(query string, fields ...Field) []bool {
	if len(query) < 3 {
		return nil
	}
	// Per segment that covers something: the candidate UIDs, or bad.
	type segResult struct {
		uids []uint32
		bad  bool
		done bool
	}
	results := make([]segResult, len(sr.segs))
	out := make([]bool, len(sr.live))
	for i, c := range sr.cover {
		if c < 0 || sr.truncated[i] {
			out[i] = true
			continue
		}
		r := &results[c]
		if !r.done {
			r.done = true
			uids, err := sr.segs[c].candidates(query, fields)
			if err != nil {
				sr.segs[c].bad.Store(true) // the next Update drops it
				r.bad = true
			}
			r.uids = uids
		}
		if r.bad {
			out[i] = true
			continue
		}
		_, out[i] = slices.BinarySearch(r.uids, sr.live[i].UID)
	}
	return out
}

// candidates returns the UIDs of s that hold every trigram of query in
// one of fields (ascending), intersecting at most maxListsRead lists per
// field, rarest first.
func (s *segment) candidates(query string, fields []Field) ([]uint32, error) {
	var all []uint32
	for _, f := range fields {
		uids, err := s.fieldCandidates(query, f)
		if err != nil {
			return nil, err
		}
		all = append(all, uids...)
	}
	if len(fields) > 1 {
		slices.Sort(all)
		all = slices.Compact(all)
	}
	return all, nil
}

func (s *segment) fieldCandidates(query string, f Field) ([]uint32, error) {
	keys := make([]uint32, 0, len(query)-2)
	for i := 0; i+3 <= len(query); i++ {
		keys = append(keys, uint32(f)<<24|uint32(query[i])<<16|uint32(query[i+1])<<8|uint32(query[i+2]))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) > maxTrigramsLooked {
		// Any subset of the trigrams still gives a superset; a long query
		// costs a bounded number of reads.
		step := len(keys) / maxTrigramsLooked
		for i := range maxTrigramsLooked {
			keys[i] = keys[i*step]
		}
		keys = keys[:maxTrigramsLooked]
	}
	terms := make([]termEntry, 0, len(keys))
	for _, k := range keys {
		t, found, err := s.lookup(k)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, nil // a trigram no document of this segment has
		}
		terms = append(terms, t)
	}
	slices.SortFunc(terms, func(a, b termEntry) int { return cmpUint32(a.count, b.count) })
	var cand []uint32
	for n, t := range terms {
		if n >= maxListsRead || (n > 0 && uint64(t.count) > 16*uint64(len(cand))+1024) {
			break // reading more costs more than checking the candidates
		}
		list, err := s.postingList(t)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			cand = list
		} else {
			cand = intersect(cand, list)
		}
		if len(cand) == 0 {
			break
		}
	}
	return cand, nil
}

// intersect returns the UIDs in both a and b (ascending), in a's storage.
func intersect(a, b []uint32) []uint32 {
	out := a[:0]
	j := 0
	for _, u := range a {
		for j < len(b) && b[j] < u {
			j++
		}
		if j == len(b) {
			break
		}
		if b[j] == u {
			out = append(out, u)
		}
	}
	return out
}
