package textindex

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
)

// docEntry is one row of a segment's doc table.
type docEntry struct {
	uid   uint32
	key   uint32
	flags byte
}

// builder collects the trigrams of new documents in memory, as delta
// lists per term, until they are written as a segment. Documents must
// come in ascending UID order.
type builder struct {
	terms  map[uint32]int32 // trigram key → index in lists
	lists  []pending
	docs   []docEntry
	bytes  int // posting bytes so far
	keyBuf []byte
	ascii  []int32 // see newBuilder; nil: the map only
}

type pending struct {
	last  uint32
	count uint32
	buf   []byte // uvarint differences, starting from 0
}

// newBuilder returns an empty builder; large gives it a direct table for
// the ASCII trigrams of fields 0 and 1 (16 MiB, about half the time of a
// map per trigram), worth it when many documents are to be indexed.
func newBuilder(large bool) *builder {
	b := &builder{terms: map[uint32]int32{}}
	if large {
		b.ascii = make([]int32, 2<<21) // index+1 in lists, by field<<21 | 7-bit bytes
	}
	return b
}

// add indexes d. A document with more than MaxDocText bytes of text (or
// marked Truncated) is recorded without postings: it stays a candidate for
// every query.
func (b *builder) add(d Doc) {
	e := docEntry{uid: d.UID, key: keyHash(d.Key, &b.keyBuf)}
	total := 0
	for _, pieces := range d.Text {
		for _, p := range pieces {
			total += len(p)
		}
	}
	if d.Truncated || total > MaxDocText || len(d.Text) > maxFields {
		e.flags |= flagTruncated
	}
	b.docs = append(b.docs, e)
	if e.flags&flagTruncated != 0 {
		return
	}
	uid := d.UID
	for f, pieces := range d.Text {
		field := uint32(f) << 24
		for _, p := range pieces {
			for i := 0; i+3 <= len(p); i++ {
				c0, c1, c2 := p[i], p[i+1], p[i+2]
				var idx int32
				if slot := uint32(f)<<21 | uint32(c0)<<14 | uint32(c1)<<7 | uint32(c2); b.ascii != nil && f < 2 && (c0|c1|c2) < 0x80 {
					idx = b.ascii[slot] - 1
					if idx < 0 {
						idx = int32(len(b.lists))
						b.lists = append(b.lists, pending{})
						b.terms[field|uint32(c0)<<16|uint32(c1)<<8|uint32(c2)] = idx
						b.ascii[slot] = idx + 1
					}
				} else {
					key := field | uint32(c0)<<16 | uint32(c1)<<8 | uint32(c2)
					var ok bool
					idx, ok = b.terms[key]
					if !ok {
						idx = int32(len(b.lists))
						b.lists = append(b.lists, pending{})
						b.terms[key] = idx
					}
				}
				l := &b.lists[idx]
				if l.last == uid {
					continue
				}
				n := len(l.buf)
				l.buf = binary.AppendUvarint(l.buf, uint64(uid-l.last))
				b.bytes += len(l.buf) - n
				l.last = uid
				l.count++
			}
		}
	}
}

// write writes the builder's documents as a segment file at path.
func (b *builder) write(tmp, path string, validity uint32) error {
	sw, err := newSegWriter(tmp, validity, b.docs)
	if err != nil {
		return err
	}
	keys := make([]uint32, 0, len(b.terms))
	for k := range b.terms {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var uids []uint32
	for _, k := range keys {
		l := &b.lists[b.terms[k]]
		uids = uids[:0]
		var uid uint32
		buf := l.buf
		for len(buf) > 0 {
			d, n := binary.Uvarint(buf)
			buf = buf[n:]
			uid += uint32(d)
			uids = append(uids, uid)
		}
		if err := sw.add(k, uids); err != nil {
			sw.abort()
			return err
		}
	}
	return sw.finish(path)
}

// segWriter streams a segment: header placeholder, doc table, posting
// lists; the term table is kept in memory and written last, then the
// header, then the file is renamed into place.
type segWriter struct {
	tmp      string
	f        *os.File
	w        *bufio.Writer
	validity uint32
	ndocs    int
	docsCRC  uint32
	off      uint64 // posting bytes written
	terms    []byte
	nterms   int
	enc      []byte
}

func newSegWriter(tmp string, validity uint32, docs []docEntry) (*segWriter, error) {
	if len(docs) > maxSegmentDocs {
		return nil, fmt.Errorf("textindex: %d documents in one segment", len(docs))
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	sw := &segWriter{tmp: tmp, f: f, w: bufio.NewWriterSize(f, 256<<10), validity: validity, ndocs: len(docs)}
	var zero [headerSize]byte
	sw.w.Write(zero[:])
	var row [docSize]byte
	for _, d := range docs {
		binary.LittleEndian.PutUint32(row[0:], d.uid)
		binary.LittleEndian.PutUint32(row[4:], d.key)
		row[8] = d.flags
		sw.docsCRC = crc32.Update(sw.docsCRC, castagnoli, row[:])
		sw.w.Write(row[:])
	}
	return sw, nil
}

// add writes the posting list of key (ascending keys, uids ascending and
// not empty).
func (sw *segWriter) add(key uint32, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	sw.enc = encodeList(sw.enc[:0], uids)
	if _, err := sw.w.Write(sw.enc); err != nil {
		return err
	}
	sw.terms = appendTerm(sw.terms, termEntry{key: key, count: uint32(len(uids)), off: sw.off,
		length: uint32(len(sw.enc)), crc: checksum(sw.enc)})
	sw.off += uint64(len(sw.enc))
	sw.nterms++
	return nil
}

func (sw *segWriter) abort() {
	sw.f.Close()
	os.Remove(sw.tmp)
}

// finish writes the term table and the header and renames the file to
// path. The file is not fsync'd: the index is a cache, and a file torn by
// a crash fails its size or CRC checks and is dropped.
func (sw *segWriter) finish(path string) error {
	if _, err := sw.w.Write(sw.terms); err != nil {
		sw.abort()
		return err
	}
	if err := sw.w.Flush(); err != nil {
		sw.abort()
		return err
	}
	postings := uint64(headerSize + sw.ndocs*docSize)
	termsOff := postings + sw.off
	var h [headerSize]byte
	copy(h[:], segMagic)
	le := binary.LittleEndian
	le.PutUint32(h[hValidity:], sw.validity)
	le.PutUint32(h[hDocs:], uint32(sw.ndocs))
	le.PutUint32(h[hTerms:], uint32(sw.nterms))
	le.PutUint64(h[hPostings:], postings)
	le.PutUint64(h[hTermsOff:], termsOff)
	le.PutUint64(h[hSize:], termsOff+uint64(len(sw.terms)))
	le.PutUint32(h[hDocsCRC:], sw.docsCRC)
	le.PutUint32(h[hTermsCRC:], checksum(sw.terms))
	le.PutUint32(h[hCRC:], checksum(h[:hCRC]))
	if _, err := sw.f.WriteAt(h[:], 0); err != nil {
		sw.abort()
		return err
	}
	if err := sw.f.Close(); err != nil {
		os.Remove(sw.tmp)
		return err
	}
	if err := os.Rename(sw.tmp, path); err != nil {
		os.Remove(sw.tmp)
		return err
	}
	return nil
}

// merge writes one segment holding the documents and posting lists of
// segs. A UID in several segments keeps the doc entry of the newest
// (segs are oldest first); its posting lists are joined, which can only
// add candidates. keep, when not nil, drops the UIDs it refuses (expunged
// messages).
func merge(segs []*segment, keep func(uint32) bool, validity uint32, tmp, path string) (int, error) {
	var docs []docEntry
	for _, s := range segs {
		for i, u := range s.uids {
			if keep == nil || keep(u) {
				docs = append(docs, docEntry{uid: u, key: s.keys[i], flags: s.flags[i]})
			}
		}
	}
	// Stable: for equal UIDs the newer segment's entry comes last.
	slices.SortStableFunc(docs, func(a, b docEntry) int { return cmpUint32(a.uid, b.uid) })
	out := docs[:0]
	for i, d := range docs {
		if i+1 < len(docs) && docs[i+1].uid == d.uid {
			continue
		}
		out = append(out, d)
	}
	docs = out
	live := func(u uint32) bool {
		_, ok := slices.BinarySearchFunc(docs, u, func(d docEntry, u uint32) int { return cmpUint32(d.uid, u) })
		return ok
	}
	sw, err := newSegWriter(tmp, validity, docs)
	if err != nil {
		return 0, err
	}
	readers := make([]*termReader, 0, len(segs))
	for _, s := range segs {
		tr := s.terms()
		ok, err := tr.advance()
		if err != nil {
			sw.abort()
			return 0, err
		}
		if ok {
			readers = append(readers, tr)
		}
	}
	var uids []uint32
	for len(readers) > 0 {
		key := readers[0].cur.key
		for _, tr := range readers[1:] {
			key = min(key, tr.cur.key)
		}
		uids = uids[:0]
		sorted := true
		for i := 0; i < len(readers); i++ {
			tr := readers[i]
			if tr.cur.key != key {
				continue
			}
			list, err := tr.list()
			if err != nil {
				sw.abort()
				return 0, err
			}
			for _, u := range list {
				if keep != nil && !live(u) {
					continue
				}
				if len(uids) > 0 && u <= uids[len(uids)-1] {
					sorted = false
				}
				uids = append(uids, u)
			}
			ok, err := tr.advance()
			if err != nil {
				sw.abort()
				return 0, err
			}
			if !ok {
				readers = slices.Delete(readers, i, i+1)
				i--
			}
		}
		if !sorted {
			slices.Sort(uids)
			uids = slices.Compact(uids)
		}
		if err := sw.add(key, uids); err != nil {
			sw.abort()
			return 0, err
		}
	}
	return len(docs), sw.finish(path)
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
