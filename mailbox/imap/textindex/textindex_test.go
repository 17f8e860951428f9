package textindex

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const (
	fieldBody   Field = 0
	fieldHeader Field = 1
)

// corpus is a folder's worth of documents kept in memory, the truth the
// index is checked against.
type corpus struct {
	docs map[uint32]Doc
	live []Message
	// loads counts calls of load, to check what Update reads.
	loads atomic.Int64
}

var vocabulary = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima " +
	"straße café naïve ÆØÅ ελληνικά кириллица 日本語 zebracrossing quux frobnicate")

func randomText(rng *rand.Rand, words int) string {
	var b strings.Builder
	for i := 0; i < words; i++ {
		if i > 0 {
			b.WriteByte(" \n\t-"[rng.IntN(4)])
		}
		w := vocabulary[rng.IntN(len(vocabulary))]
		if rng.IntN(4) == 0 {
			w += fmt.Sprint(rng.IntN(1000))
		}
		b.WriteString(w)
	}
	return strings.ToLower(b.String())
}

func newCorpus(rng *rand.Rand, n int) *corpus {
	c := &corpus{docs: map[uint32]Doc{}}
	uid := uint32(0)
	for i := 0; i < n; i++ {
		uid += 1 + uint32(rng.IntN(3))
		c.addDoc(rng, uid)
	}
	return c
}

func (c *corpus) addDoc(rng *rand.Rand, uid uint32) {
	key := fmt.Sprintf("%d.M%dP1.test", uid, rng.Int())
	d := Doc{UID: uid, Key: key, Text: [][]string{{randomText(rng, 5+rng.IntN(60))}, {randomText(rng, 4), randomText(rng, 3)}}}
	c.docs[uid] = d
	c.live = append(c.live, Message{UID: uid, Key: key})
}

func (c *corpus) load(m Message) (Doc, bool) {
	c.loads.Add(1)
	d, ok := c.docs[m.UID]
	return d, ok && d.Key == m.Key
}

// contains is the unindexed matcher.
func (d Doc) contains(q string, fields ...Field) bool {
	for _, f := range fields {
		for _, p := range d.Text[f] {
			if strings.Contains(p, q) {
				return true
			}
		}
	}
	return false
}

func openTest(t *testing.T, dir string, segBytes int) *Index {
	t.Helper()
	ix, err := Open(dir, Options{SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// checkQueries runs queries over c and fails on a false negative; it
// returns the number of candidates and of true matches.
func checkQueries(t *testing.T, ix *Index, validity uint32, c *corpus, queries []string, fields ...Field) (cands, matches int) {
	t.Helper()
	sr := ix.Searcher(validity, c.live)
	defer sr.Close()
	for _, q := range queries {
		got := sr.Candidates(q, fields...)
		if len(q) < 3 {
			if got != nil {
				t.Fatalf("query %q shorter than a trigram gave a filter", q)
			}
			continue
		}
		for i, m := range c.live {
			want := c.docs[m.UID].contains(q, fields...)
			if want && !got[i] {
				t.Fatalf("false negative: query %q, uid %d, text %q", q, m.UID, c.docs[m.UID].Text)
			}
			if got[i] {
				cands++
			}
			if want {
				matches++
			}
		}
	}
	return cands, matches
}

// queriesFrom picks substrings of the corpus (any byte offsets, so also
// cutting UTF-8 sequences), plus strings found nowhere.
func queriesFrom(rng *rand.Rand, c *corpus, n int) []string {
	var qs []string
	for len(qs) < n {
		m := c.live[rng.IntN(len(c.live))]
		d := c.docs[m.UID]
		f := rng.IntN(len(d.Text))
		p := d.Text[f][rng.IntN(len(d.Text[f]))]
		if len(p) < 2 {
			continue
		}
		a := rng.IntN(len(p) - 1)
		b := min(len(p), a+1+rng.IntN(15))
		qs = append(qs, p[a:b])
	}
	// A long query: more trigrams than are looked up.
	var long strings.Builder
	for _, m := range c.live[:10] {
		long.WriteString(c.docs[m.UID].Text[0][0])
	}
	long.WriteString(c.docs[c.live[10].UID].Text[0][0])
	return append(qs, "xyzzy", "zebracrossinh", "日本人", "ab", "", c.docs[c.live[10].UID].Text[0][0], long.String()[:min(long.Len(), 4000)])
}

func TestCandidatesAreASupersetOfMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newCorpus(rng, largeBuild+100)    // a builder with the direct table
	ix := openTest(t, t.TempDir(), 16<<10) // small segments: several, merged
	st, err := update(ix, 7, c.live, c.load)
	if err != nil {
		t.Fatal(err)
	}
	if st.Indexed != len(c.live) {
		t.Fatalf("indexed %d of %d", st.Indexed, len(c.live))
	}
	if st.Merged == 0 || st.Segments < 2 {
		t.Fatalf("want several segments and merges with 4 KiB segments, got %+v", st)
	}
	qs := queriesFrom(rng, c, 300)
	for _, fields := range [][]Field{{fieldBody}, {fieldHeader}, {fieldBody, fieldHeader}} {
		cands, matches := checkQueries(t, ix, 7, c, qs, fields...)
		// The filter must filter: the random words make trigram matches a
		// loose but real bound.
		if cands > 3*matches+len(qs)*len(c.live)/10 {
			t.Errorf("fields %v: %d candidates for %d matches: the index hardly filters", fields, cands, matches)
		}
	}
	// A query in no document has no candidate at all here.
	sr := ix.Searcher(7, c.live)
	defer sr.Close()
	for i, ok := range sr.Candidates("qqqzzz", fieldBody) {
		if ok {
			t.Fatalf("uid %d is a candidate for a trigram nobody has", c.live[i].UID)
		}
	}
	// A second Update reads nothing.
	c.loads.Store(0)
	if st, err := update(ix, 7, c.live, c.load); err != nil || st.Indexed != 0 || c.loads.Load() != 0 {
		t.Fatalf("second update: %+v, %d loads, %v", st, c.loads.Load(), err)
	}
}

func TestNewMessagesAreIndexedAndReopenKeepsTheIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := newCorpus(rng, 200)
	dir := t.TempDir()
	ix := openTest(t, dir, 2<<10)
	if _, err := update(ix, 1, c.live, c.load); err != nil {
		t.Fatal(err)
	}
	next := c.live[len(c.live)-1].UID
	for i := 0; i < 40; i++ { // one at a time, as mail arrives between searches
		next++
		c.addDoc(rng, next)
		st, err := update(ix, 1, c.live, c.load)
		if err != nil || st.Indexed != 1 {
			t.Fatalf("update %d: %+v %v", i, st, err)
		}
		if st.Segments > 40 {
			t.Fatalf("%d segments: merges do not keep up", st.Segments)
		}
	}
	checkQueries(t, ix, 1, c, queriesFrom(rng, c, 200), fieldBody, fieldHeader)
	ix.Close()

	ix2 := openTest(t, dir, 2<<10)
	c.loads.Store(0)
	if st, err := update(ix2, 1, c.live, c.load); err != nil || st.Indexed != 0 {
		t.Fatalf("after reopen: %+v %v (%d loads)", st, err, c.loads.Load())
	}
	checkQueries(t, ix2, 1, c, queriesFrom(rng, c, 200), fieldBody)
}

func TestUIDValidityAndKeyChangesReindex(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := newCorpus(rng, 50)
	ix := openTest(t, t.TempDir(), 0)
	if _, err := update(ix, 1, c.live, c.load); err != nil {
		t.Fatal(err)
	}
	// Not yet updated for the new UIDVALIDITY: nothing is covered.
	sr := ix.Searcher(2, c.live)
	if n := sr.Unindexed(); n != len(c.live) {
		t.Fatalf("%d unindexed under a new UIDVALIDITY, want all %d", n, len(c.live))
	}
	sr.Close()
	st, err := update(ix, 2, c.live, c.load)
	if err != nil || st.Indexed != len(c.live) || st.Segments != 1 {
		t.Fatalf("new UIDVALIDITY: %+v %v", st, err)
	}
	// UID 1's file is replaced by another message under the same UID
	// (a rebuilt UID list): the old text must not hide the new one.
	m := c.live[0]
	d := Doc{UID: m.UID, Key: m.Key + "x", Text: [][]string{{"replacement text"}, {""}}}
	c.docs[m.UID] = d
	c.live[0].Key = d.Key
	if st, err := update(ix, 2, c.live, c.load); err != nil || st.Indexed != 1 {
		t.Fatalf("new key: %+v %v", st, err)
	}
	sr = ix.Searcher(2, c.live)
	defer sr.Close()
	if got := sr.Candidates("replacement", fieldBody); !got[0] {
		t.Fatal("the message under a new key is not found")
	}
}

func TestExpungedMessagesAreCompactedAway(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	c := newCorpus(rng, 300)
	dir := t.TempDir()
	ix := openTest(t, dir, 4<<10)
	if _, err := update(ix, 1, c.live, c.load); err != nil {
		t.Fatal(err)
	}
	// Expunge two thirds, keeping the highest UID (the view's end).
	var kept []Message
	for i, m := range c.live {
		if i%3 == 0 || i == len(c.live)-1 {
			kept = append(kept, m)
		} else {
			delete(c.docs, m.UID)
		}
	}
	c.live = kept
	st, err := update(ix, 1, c.live, c.load)
	if err != nil || st.Indexed != 0 || st.Merged == 0 || st.Segments != 1 {
		t.Fatalf("after expunge: %+v %v", st, err)
	}
	ix.mu.Lock()
	ndocs := len(ix.segs[0].uids)
	ix.mu.Unlock()
	if ndocs != len(c.live) {
		t.Fatalf("compacted segment holds %d documents, want the %d live", ndocs, len(c.live))
	}
	checkQueries(t, ix, 1, c, queriesFrom(rng, c, 100), fieldBody, fieldHeader)
	// A view that ends below newer messages does not count them as dead.
	ix2 := ix
	short := c.live[:1]
	if st, err := update(ix2, 1, short, c.load); err != nil || st.Merged != 0 {
		t.Fatalf("an old view compacted the index: %+v %v", st, err)
	}
}

func TestLongDocumentsAreAlwaysCandidates(t *testing.T) {
	c := &corpus{docs: map[uint32]Doc{}}
	big := strings.Repeat("a", MaxDocText) + "needle"
	c.docs[1] = Doc{UID: 1, Key: "k1", Text: [][]string{{big}}}
	c.docs[2] = Doc{UID: 2, Key: "k2", Text: [][]string{{"short"}}}
	c.docs[3] = Doc{UID: 3, Key: "k3", Text: [][]string{{"short"}}, Truncated: true}
	c.live = []Message{{1, "k1"}, {2, "k2"}, {3, "k3"}}
	ix := openTest(t, t.TempDir(), 0)
	if _, err := update(ix, 1, c.live, c.load); err != nil {
		t.Fatal(err)
	}
	sr := ix.Searcher(1, c.live)
	defer sr.Close()
	if got := sr.Candidates("needle", fieldBody); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("candidates %v, want the long and the truncated document", got)
	}
}

// segmentFiles lists the index's segment files.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDamagedSegmentsGiveNoFalseNegatives(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	c := newCorpus(rng, 300)
	qs := queriesFrom(rng, c, 100)
	for _, damage := range []string{"posting", "terms", "truncate", "magic", "header", "docs", "empty"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			ix, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := update(ix, 1, c.live, c.load); err != nil || st.Segments != 1 {
				t.Fatalf("%+v %v", st, err)
			}
			seg := ix.segs[0]
			path := seg.path
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "posting": // found only when a query reads the list
				for i := int(seg.postings); i < int(seg.termsOff); i++ {
					data[i] ^= 0x55
				}
			case "terms":
				data[seg.termsOff+5] ^= 1
			case "truncate":
				data = data[:len(data)-7]
			case "magic":
				data[0] = 'X'
			case "header":
				data[hDocs] ^= 1
			case "docs":
				data[headerSize+2] ^= 1
			case "empty":
				data = nil
			}
			if damage == "posting" {
				// Damaged under a running index: the open file is rewritten
				// in place.
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				cands, _ := checkQueries(t, ix, 1, c, qs, fieldBody)
				if cands == 0 {
					t.Fatal("no candidates at all")
				}
				if !seg.bad.Load() {
					t.Fatal("the damaged segment was not noticed")
				}
				c.loads.Store(0)
				st, err := update(ix, 1, c.live, c.load)
				if err != nil || st.Indexed != len(c.live) {
					t.Fatalf("rebuild after damage: %+v %v", st, err)
				}
				checkQueries(t, ix, 1, c, qs, fieldBody, fieldHeader)
				ix.Close()
				return
			}
			ix.Close()
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			ix = openTest(t, dir, 0)
			if n := len(ix.segs); n != 0 {
				t.Fatalf("the damaged segment was opened (%d segments)", n)
			}
			if files := segmentFiles(t, dir); len(files) != 0 {
				t.Fatalf("the damaged segment was kept: %v", files)
			}
			checkQueries(t, ix, 1, c, qs, fieldBody) // all unindexed: all candidates
			st, err := update(ix, 1, c.live, c.load)
			if err != nil || st.Indexed != len(c.live) {
				t.Fatalf("rebuild: %+v %v", st, err)
			}
			checkQueries(t, ix, 1, c, qs, fieldBody, fieldHeader)
		})
	}
}

func TestLeftoverTempFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "0000000000000009.seg.tmp")
	if err := os.WriteFile(tmp, []byte("half a segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	openTest(t, dir, 0)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file still there: %v", err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	ix := openTest(t, dir, 0)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	ix.Close()
	ix2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	ix2.Close()
}

func TestSearcherKeepsMergedSegmentsReadable(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	c := newCorpus(rng, 100)
	ix := openTest(t, t.TempDir(), 1<<10)
	if _, err := update(ix, 1, c.live[:50], c.load); err != nil {
		t.Fatal(err)
	}
	sr := ix.Searcher(1, c.live[:50])
	defer sr.Close()
	// Merges and compaction retire the segments sr holds.
	if _, err := update(ix, 1, c.live[90:], c.load); err != nil {
		t.Fatal(err)
	}
	full := &corpus{docs: c.docs, live: c.live[:50]}
	checkQueriesWith(t, sr, full, queriesFrom(rng, full, 50))
}

func checkQueriesWith(t *testing.T, sr *Searcher, c *corpus, qs []string) {
	t.Helper()
	for _, q := range qs {
		got := sr.Candidates(q, fieldBody)
		if got == nil {
			continue
		}
		for i, m := range c.live {
			if c.docs[m.UID].contains(q, fieldBody) && !got[i] {
				t.Fatalf("false negative for %q at uid %d", q, m.UID)
			}
		}
	}
	for _, s := range sr.segs {
		if s.bad.Load() {
			t.Fatalf("segment %s read as bad after a merge", s.path)
		}
	}
}

func TestEncodeListRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for n := 0; n < 200; n++ {
		var uids []uint32
		u := uint32(rng.IntN(1 << 20))
		dense := rng.IntN(2) == 0
		for i := 0; i < 1+rng.IntN(300); i++ {
			if dense {
				u += 1 + uint32(rng.IntN(3))
			} else {
				u += 1 + uint32(rng.IntN(100000))
			}
			uids = append(uids, u)
		}
		enc := encodeList(nil, uids)
		got, err := decodeList(enc, uint32(len(uids)))
		if err != nil || !slices.Equal(got, uids) {
			t.Fatalf("round trip (dense %v, kind %d): %v", dense, enc[0], err)
		}
	}
}

// update runs Update and closes its Searcher.
func update(ix *Index, validity uint32, live []Message, load func(Message) (Doc, bool)) (Stats, error) {
	sr, st, err := ix.Update(validity, live, load)
	sr.Close()
	return st, err
}
