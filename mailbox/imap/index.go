package imap

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"postern/mailbox/imap/textindex"
	"postern/mailbox/maildir"
	"postern/mailbox/mime"
)

// The folder index is what the server knows about a folder beyond its
// directory listing: per message the UID, flags, keywords, sizes (on disk
// and with CRLF line ends), internal date, CONDSTORE mod-sequence
// (RFC 7162) and the header fields SEARCH, SORT and THREAD use; per folder
// the HIGHESTMODSEQ and the UIDs expunged with their mod-sequences, which
// QRESYNC's VANISHED needs. It lives in one append-only file per folder,
// indexFileName, whose format docs/imap-index.md describes. The Maildir
// stays the truth: every Sync's snapshot is merged into the index, so
// changes made by other programs become index changes with new
// mod-sequences, and a lost or corrupt file is simply rebuilt.
const indexFileName = "postern-imapindex"

// indexMagic starts the file; the digit is the format version.
const indexMagic = "PIDX1\n"

// Bounds on what the index holds and reads.
const (
	maxIndexFile      = 2 << 30 // a bigger file is not trusted and rebuilt
	maxIndexRecord    = 1 << 20
	maxIndexedHeader  = 8 << 10 // each stored header value
	maxHeaderRead     = 64 << 10
	maxExpungedKept   = 1 << 20 // expunged UIDs remembered for VANISHED
	indexCompactRatio = 3       // rewrite when the file holds this many records per live one
)

var indexCRC = crc32.MakeTable(crc32.Castagnoli)

var errCorruptIndex = errors.New("imap: corrupt folder index")

// indexHeaders are the header fields kept per message, unfolded, as they
// stand in the message (encoded words are decoded when matched).
type indexHeaders struct {
	subject, from, to, cc, date, messageID, inReplyTo, references string
	sent                                                          int64 // Date: as Unix seconds, 0 when missing or unparsable
}

// indexEntry is one message in the index.
type indexEntry struct {
	uid      uint32
	key      string
	letters  string
	keywords []string
	size     int64 // on disk (",S=" or the file's size)
	crlfSize int64 // RFC822.SIZE; 0 until known
	date     int64 // internal date, Unix nanoseconds
	modseq   uint64
	hdr      *indexHeaders // nil until read
	envelope string        // the ENVELOPE as last sent; "" until fetched
}

// envelopeVersion tags stored ENVELOPE renderings: records written by an
// older rendering (a different number) are ignored and rendered again.
const envelopeVersion = 1

// expungedUID is a UID that left the folder at a mod-sequence.
type expungedUID struct {
	uid    uint32
	modseq uint64
}

// folderIndex is one folder's index, shared by the sessions of a server.
type folderIndex struct {
	path string // the index file
	log  *slog.Logger

	mu            sync.Mutex
	uidValidity   uint32
	highestModSeq uint64
	entries       []*indexEntry // ascending UID
	byUID         map[uint32]*indexEntry
	expunged      []expungedUID // ascending mod-sequence
	// lowestExpungeModSeq: expunges before it were forgotten (the list is
	// bounded), so VANISHED for older mod-sequences must be a superset.
	lowestExpungeModSeq uint64

	file    *os.File // append handle holding the flock; nil: memory only
	records int64    // records in the file
	pending bytes.Buffer
	// fed is the Folder object that was last given the index's dates and
	// sizes (remember): a new object (the Maildir was reopened) is fed again.
	fed *maildir.Folder
	// lastMerged is the snapshot merged last; Sync hands the same pointer
	// back while the folder is unchanged, and merging it again is skipped.
	lastMerged *maildir.Snapshot
	// view is the sessions' shared first view of viewSnap (see
	// session.openSelected), with the keywords it uses.
	view         []viewMessage
	viewSnap     *maildir.Snapshot
	viewKeywords []string
	// text is the folder's text index for SEARCH BODY/TEXT, opened at the
	// first such search (search_text.go); textTried: do not retry.
	text      *textindex.Index
	textTried bool
	// viewFirstUnseen is the sequence number of the view's first message
	// without \Seen (0: none), counted once when the view is published so
	// that a SELECT served from it walks no message (RFC 3501 7.1 UNSEEN).
	viewFirstUnseen int
	// checkpoint is the Maildir library's description of the folder's
	// files at the moment the index's messages were exactly the folder's
	// (maildir.Folder.Checkpoint); nil once a message record follows it.
	// With it the first SELECT in a new process takes the folder from the
	// index (maildir.Folder.Resume) instead of listing it.
	checkpoint []byte
	// slab is where replay allocates entries (newEntry).
	slab []indexEntry
	// derived caches what is computed from a message's bytes and never
	// changes (EMAILID, PREVIEW; objectid.go, preview.go), by message key;
	// memory only, bounded.
	derived map[string]derivedValues
}

// openIndex loads a folder's index file, or starts an empty one when it is
// missing or corrupt. It takes an exclusive flock: a second server on the
// same Maildir keeps its index in memory rather than interleave records.
func openIndex(folderPath string, log *slog.Logger) *folderIndex {
	ix := &folderIndex{path: filepath.Join(folderPath, indexFileName), log: log, byUID: map[uint32]*indexEntry{}}
	file, err := os.OpenFile(ix.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		log.Debug("imap: index not writable, kept in memory", "path", ix.path, "err", err)
		return ix
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		log.Debug("imap: index in use by another server, kept in memory", "path", ix.path)
		return ix
	}
	ix.file = file
	if err := ix.load(); err != nil {
		log.Warn("imap: folder index unusable, rebuilding", "path", ix.path, "err", err)
		ix.reset(0)
		if err := ix.rewrite(); err != nil {
			log.Warn("imap: folder index rewrite failed, kept in memory", "path", ix.path, "err", err)
			ix.closeFile()
		}
	}
	return ix
}

func (ix *folderIndex) closeFile() {
	if ix.file != nil {
		ix.file.Close()
		ix.file = nil
	}
}

// close writes what is pending and releases the files.
func (ix *folderIndex) close() {
	ix.mu.Lock()
	text := ix.text
	ix.text, ix.textTried = nil, false
	ix.flushLocked()
	ix.closeFile()
	ix.mu.Unlock()
	if text != nil {
		text.Close()
	}
}

// closeCheckpointed records the folder's checkpoint, so that the next
// process can resume it without listing it, and closes the index. With
// wait the folder is synced first, and a cur/ changed too recently to be
// trusted is given time to settle (up to 100 ms, or 2 s on file systems
// with whole-second times) and listed again; without, the last snapshot
// is recorded only if it still matches the files (no listing).
func (ix *folderIndex) closeCheckpointed(wait bool) {
	ix.mu.Lock()
	f, persistent := ix.fed, ix.file != nil
	ix.mu.Unlock()
	if f != nil && persistent {
		ix.saveCheckpoint(f, wait)
	}
	ix.close()
}

// saveCheckpoint merges the folder's current snapshot and records the
// checkpoint that describes it, when the folder gives one.
func (ix *folderIndex) saveCheckpoint(f *maildir.Folder, wait bool) {
	snap, cp, err := f.Checkpoint(wait)
	if err != nil {
		ix.log.Debug("imap: no checkpoint", "path", ix.path, "err", err)
		return
	}
	if snap == nil || cp == nil && !wait {
		// Without wait the snapshot is the last one as it stands; only a
		// checkpoint says it still matches the files (a STORE since may
		// have renamed them), so nothing is merged from it otherwise.
		return
	}
	ix.merge(snap)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if cp == nil || ix.lastMerged != snap || ix.file == nil {
		return
	}
	ix.emit(checkpointRecord(cp))
	ix.checkpoint = cp
	ix.flushLocked()
}

// reset forgets every message (a new UIDVALIDITY or a rebuild); the
// mod-sequence counter never goes back.
func (ix *folderIndex) reset(validity uint32) {
	ix.uidValidity = validity
	ix.checkpoint = nil
	ix.lastMerged = nil
	ix.entries = nil
	ix.byUID = map[uint32]*indexEntry{}
	ix.expunged = nil
	ix.lowestExpungeModSeq = ix.highestModSeq + 1
}

// load replays the file. A damaged tail (a crash mid-append) is cut off;
// a damaged head is an error and the caller rebuilds.
func (ix *folderIndex) load() error {
	st, err := ix.file.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return ix.rewrite()
	}
	if st.Size() > maxIndexFile {
		return fmt.Errorf("%d bytes: %w", st.Size(), errCorruptIndex)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(io.NewSectionReader(ix.file, 0, st.Size()), data); err != nil {
		return err
	}
	if !bytes.HasPrefix(data, []byte(indexMagic)) {
		return fmt.Errorf("bad magic: %w", errCorruptIndex)
	}
	// The strings the records hold (keys, flags, header fields,
	// envelopes) are slices of one copy of the file rather than a string
	// each: a folder of 100,000 messages has about a million.
	text := string(data)
	if len(ix.byUID) == 0 {
		ix.byUID = make(map[uint32]*indexEntry, min(len(data)/128, 1<<22))
	}
	off := len(indexMagic)
	for off < len(data) {
		payload, n, err := nextRecord(data[off:])
		if err == nil {
			start := off + n - len(payload)
			err = ix.replay(payload, text[start:start+len(payload)])
		}
		if err != nil {
			ix.log.Warn("imap: folder index damaged, cutting its tail", "path", ix.path, "offset", off, "err", err)
			if terr := ix.file.Truncate(int64(off)); terr != nil {
				return terr
			}
			break
		}
		off += n
		ix.records++
	}
	if ix.lowestExpungeModSeq == 0 {
		ix.lowestExpungeModSeq = 1
	}
	_, err = ix.file.Seek(0, io.SeekEnd)
	return err
}

// nextRecord splits one record "uvarint(len) crc32c(4) payload" off data.
func nextRecord(data []byte) (payload []byte, n int, err error) {
	size, k := binary.Uvarint(data)
	if k <= 0 || size == 0 || size > maxIndexRecord || uint64(len(data)-k) < size+4 {
		return nil, 0, fmt.Errorf("record length: %w", errCorruptIndex)
	}
	sum := binary.LittleEndian.Uint32(data[k:])
	payload = data[k+4 : k+4+int(size)]
	if crc32.Checksum(payload, indexCRC) != sum {
		return nil, 0, fmt.Errorf("record checksum: %w", errCorruptIndex)
	}
	return payload, k + 4 + int(size), nil
}

// recordReader decodes one payload's fields. s, when set, is b as a
// string: strings are then slices of it rather than copies.
type recordReader struct {
	b   []byte
	s   string
	err error
}

// skip advances past n bytes.
func (r *recordReader) skip(n int) {
	r.b = r.b[n:]
	if len(r.s) >= n {
		r.s = r.s[n:]
	}
}

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("field: %w", errCorruptIndex)
		return 0
	}
	r.skip(n)
	return v
}

func (r *recordReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("field: %w", errCorruptIndex)
		return 0
	}
	r.skip(n)
	return v
}

func (r *recordReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string: %w", errCorruptIndex)
		return ""
	}
	var s string
	if len(r.s) == len(r.b) {
		s = r.s[:n]
	} else {
		s = string(r.b[:n])
	}
	r.skip(int(n))
	return s
}

func (r *recordReader) strs() []string {
	n := r.uvarint()
	if r.err != nil || n > 64 {
		if r.err == nil {
			r.err = fmt.Errorf("list: %w", errCorruptIndex)
		}
		return nil
	}
	var out []string
	for i := uint64(0); i < n; i++ {
		out = append(out, r.str())
	}
	return out
}

// Record types.
const (
	recValidity   = 'V' // uidvalidity, highestmodseq
	recMessage    = 'M' // a message as a whole
	recFlags      = 'F' // uid, modseq, letters, keywords
	recExpunge    = 'X' // uid, modseq
	recHeaders    = 'H' // uid, header fields
	recCRLFSize   = 'C' // uid, size
	recEnvelope   = 'E' // uid, rendering version, ENVELOPE as sent
	recCheckpoint = 'K' // the folder's checkpoint (maildir.Folder.Checkpoint)
	recDate       = 'D' // uid, internal date read after the message was indexed
)

// replay applies one record; ps is the payload as a string, whose slices
// the record's strings become.
func (ix *folderIndex) replay(p []byte, ps string) error {
	r := &recordReader{b: p[1:], s: ps[1:]}
	if changesMessages(p[0]) {
		ix.checkpoint = nil
	}
	switch p[0] {
	case recCheckpoint:
		cp := r.str()
		if r.err == nil {
			ix.checkpoint = []byte(cp)
		}
	case recValidity:
		v := uint32(r.uvarint())
		hm := r.uvarint()
		low := r.uvarint()
		if r.err == nil {
			if v != ix.uidValidity {
				ix.reset(v)
			}
			ix.highestModSeq = max(ix.highestModSeq, hm)
			ix.lowestExpungeModSeq = low
		}
	case recMessage:
		e := ix.newEntry()
		e.uid = uint32(r.uvarint())
		e.modseq = r.uvarint()
		e.size = r.varint()
		e.crlfSize = r.varint()
		e.date = r.varint()
		e.key = r.str()
		e.letters = r.str()
		e.keywords = r.strs()
		if r.err == nil {
			if e.uid == 0 || e.key == "" {
				return fmt.Errorf("message record: %w", errCorruptIndex)
			}
			ix.put(e)
			ix.highestModSeq = max(ix.highestModSeq, e.modseq)
		}
	case recFlags:
		uid := uint32(r.uvarint())
		ms := r.uvarint()
		letters := r.str()
		kws := r.strs()
		if e := ix.replayEntry(uid); e != nil && r.err == nil {
			e.modseq, e.letters, e.keywords = ms, letters, kws
		}
		ix.highestModSeq = max(ix.highestModSeq, ms)
	case recExpunge:
		uid := uint32(r.uvarint())
		ms := r.uvarint()
		if r.err == nil {
			ix.drop(uid, ms)
			ix.highestModSeq = max(ix.highestModSeq, ms)
		}
	case recHeaders:
		uid := uint32(r.uvarint())
		h := &indexHeaders{}
		h.subject, h.from, h.to, h.cc = r.str(), r.str(), r.str(), r.str()
		h.date, h.messageID, h.inReplyTo, h.references = r.str(), r.str(), r.str(), r.str()
		h.sent = r.varint()
		if e := ix.replayEntry(uid); e != nil && r.err == nil {
			e.hdr = h
		}
	case recEnvelope:
		uid := uint32(r.uvarint())
		version := r.uvarint()
		env := r.str()
		if e := ix.replayEntry(uid); e != nil && r.err == nil && version == envelopeVersion {
			e.envelope = env
		}
	case recDate:
		uid := uint32(r.uvarint())
		ns := r.varint()
		if e := ix.replayEntry(uid); e != nil && r.err == nil {
			e.date = ns
		}
	case recCRLFSize:
		uid := uint32(r.uvarint())
		n := r.varint()
		if e := ix.replayEntry(uid); e != nil && r.err == nil {
			e.crlfSize = n
		}
	default:
		return fmt.Errorf("record type %q: %w", p[0], errCorruptIndex)
	}
	return r.err
}

// replayEntry is the entry of uid while replaying: usually the message
// record just before (a compacted file keeps a message's records
// together), else from the map.
func (ix *folderIndex) replayEntry(uid uint32) *indexEntry {
	if n := len(ix.entries); n > 0 && ix.entries[n-1].uid == uid {
		return ix.entries[n-1]
	}
	return ix.byUID[uid]
}

// newEntry allocates an entry for replay, from slabs of 1,024.
func (ix *folderIndex) newEntry() *indexEntry {
	if len(ix.slab) == cap(ix.slab) {
		ix.slab = make([]indexEntry, 0, 1024)
	}
	ix.slab = append(ix.slab, indexEntry{})
	return &ix.slab[len(ix.slab)-1]
}

// put adds e keeping entries in UID order (appends are the usual case).
func (ix *folderIndex) put(e *indexEntry) {
	n := len(ix.entries)
	if n == 0 || ix.entries[n-1].uid < e.uid {
		// Above every UID so far (a compacted file is in UID order): new.
		ix.byUID[e.uid] = e
		ix.entries = append(ix.entries, e)
		return
	}
	if old := ix.byUID[e.uid]; old != nil {
		*old = *e
		return
	}
	ix.byUID[e.uid] = e
	i, _ := slices.BinarySearchFunc(ix.entries, e.uid, func(a *indexEntry, uid uint32) int { return cmpUID(a.uid, uid) })
	ix.entries = slices.Insert(ix.entries, i, e)
}

func cmpUID(a, b uint32) int { return cmp.Compare(a, b) }

// drop removes a UID and remembers it as expunged at ms.
func (ix *folderIndex) drop(uid uint32, ms uint64) {
	if ix.byUID[uid] == nil {
		return
	}
	delete(ix.byUID, uid)
	i, found := slices.BinarySearchFunc(ix.entries, uid, func(a *indexEntry, uid uint32) int { return cmpUID(a.uid, uid) })
	if found {
		ix.entries = slices.Delete(ix.entries, i, i+1)
	}
	ix.rememberExpunge(expungedUID{uid, ms})
}

// rememberExpunge adds to the bounded list of expunged UIDs.
func (ix *folderIndex) rememberExpunge(x expungedUID) {
	ix.expunged = append(ix.expunged, x)
	if len(ix.expunged) > maxExpungedKept {
		cut := len(ix.expunged) - maxExpungedKept/2
		ix.lowestExpungeModSeq = ix.expunged[cut-1].modseq + 1
		ix.expunged = slices.Clone(ix.expunged[cut:])
	}
}

// recordWriter builds one payload.
type recordWriter struct{ b []byte }

func (w *recordWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *recordWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *recordWriter) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *recordWriter) strs(list []string) {
	w.uvarint(uint64(len(list)))
	for _, s := range list {
		w.str(s)
	}
}

// changesMessages says whether a record of this type changes the folder's
// messages as the index has them, which ends the validity of a checkpoint
// recorded before it. Header fields, sizes and envelopes do not.
func changesMessages(recType byte) bool {
	switch recType {
	case recValidity, recMessage, recFlags, recExpunge:
		return true
	}
	return false
}

// emit queues one record for the file (written by flushLocked).
func (ix *folderIndex) emit(payload []byte) {
	if changesMessages(payload[0]) {
		ix.checkpoint = nil
	}
	if ix.file == nil {
		return
	}
	var head [binary.MaxVarintLen64 + 4]byte
	n := binary.PutUvarint(head[:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(head[n:], crc32.Checksum(payload, indexCRC))
	ix.pending.Write(head[:n+4])
	ix.pending.Write(payload)
	ix.records++
}

func validityRecord(v uint32, hm, lowestExpunge uint64) []byte {
	w := &recordWriter{b: []byte{recValidity}}
	w.uvarint(uint64(v))
	w.uvarint(hm)
	w.uvarint(lowestExpunge)
	return w.b
}

func messageRecord(e *indexEntry) []byte {
	return appendMessageRecord(make([]byte, 0, 48+len(e.key)+len(e.letters)), e)
}

// appendMessageRecord appends e's M record payload to b.
func appendMessageRecord(b []byte, e *indexEntry) []byte {
	w := &recordWriter{b: append(b, recMessage)}
	w.uvarint(uint64(e.uid))
	w.uvarint(e.modseq)
	w.varint(e.size)
	w.varint(e.crlfSize)
	w.varint(e.date)
	w.str(e.key)
	w.str(e.letters)
	w.strs(e.keywords)
	return w.b
}

func flagsRecord(e *indexEntry) []byte {
	w := &recordWriter{b: []byte{recFlags}}
	w.uvarint(uint64(e.uid))
	w.uvarint(e.modseq)
	w.str(e.letters)
	w.strs(e.keywords)
	return w.b
}

func expungeRecord(x expungedUID) []byte {
	w := &recordWriter{b: []byte{recExpunge}}
	w.uvarint(uint64(x.uid))
	w.uvarint(x.modseq)
	return w.b
}

func headersRecord(uid uint32, h *indexHeaders) []byte {
	w := &recordWriter{b: []byte{recHeaders}}
	w.uvarint(uint64(uid))
	for _, s := range []string{h.subject, h.from, h.to, h.cc, h.date, h.messageID, h.inReplyTo, h.references} {
		w.str(s)
	}
	w.varint(h.sent)
	return w.b
}

func envelopeRecord(uid uint32, env string) []byte {
	w := &recordWriter{b: []byte{recEnvelope}}
	w.uvarint(uint64(uid))
	w.uvarint(envelopeVersion)
	w.str(env)
	return w.b
}

func dateRecord(uid uint32, ns int64) []byte {
	w := &recordWriter{b: []byte{recDate}}
	w.uvarint(uint64(uid))
	w.varint(ns)
	return w.b
}

func checkpointRecord(cp []byte) []byte {
	w := &recordWriter{b: []byte{recCheckpoint}}
	w.str(string(cp))
	return w.b
}

func crlfRecord(uid uint32, n int64) []byte {
	w := &recordWriter{b: []byte{recCRLFSize}}
	w.uvarint(uint64(uid))
	w.varint(n)
	return w.b
}

// flushLocked appends the queued records, or rewrites the whole file when
// most of its records are dead. The index is a cache of the Maildir plus
// the mod-sequences, so it is not fsync'd: after a crash the Maildir is
// merged again, and new mod-sequences are drawn from the clock (nextModSeq)
// so that they still exceed everything handed out before.
func (ix *folderIndex) flushLocked() {
	if ix.file == nil || ix.pending.Len() == 0 {
		return
	}
	live := int64(len(ix.entries)) + 1
	if ix.records > indexCompactRatio*live+1024 {
		ix.pending.Reset()
		if err := ix.rewrite(); err != nil {
			ix.log.Warn("imap: folder index rewrite failed, kept in memory", "path", ix.path, "err", err)
			ix.closeFile()
		}
		return
	}
	if _, err := ix.file.Write(ix.pending.Bytes()); err != nil {
		ix.log.Warn("imap: folder index append failed, kept in memory", "path", ix.path, "err", err)
		ix.closeFile()
	}
	ix.pending.Reset()
}

// rewrite writes the live state to a new file and renames it into place,
// keeping the flock by locking the new file before the rename.
func (ix *folderIndex) rewrite() error {
	var buf bytes.Buffer
	buf.WriteString(indexMagic)
	records := int64(0)
	add := func(p []byte) {
		var head [binary.MaxVarintLen64 + 4]byte
		n := binary.PutUvarint(head[:], uint64(len(p)))
		binary.LittleEndian.PutUint32(head[n:], crc32.Checksum(p, indexCRC))
		buf.Write(head[:n+4])
		buf.Write(p)
		records++
	}
	add(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
	for _, x := range ix.expunged {
		add(expungeRecord(x))
	}
	for _, e := range ix.entries {
		add(messageRecord(e))
		if e.hdr != nil {
			add(headersRecord(e.uid, e.hdr))
		}
		if e.envelope != "" {
			add(envelopeRecord(e.uid, e.envelope))
		}
	}
	if ix.checkpoint != nil {
		add(checkpointRecord(ix.checkpoint)) // last: it describes all of the above
	}
	tmp := ix.path + ".tmp"
	file, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("index %s: %w", ix.path, err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		return fmt.Errorf("index %s: lock: %w", ix.path, err)
	}
	if _, err := file.Write(buf.Bytes()); err != nil {
		file.Close()
		os.Remove(tmp)
		return fmt.Errorf("index %s: %w", ix.path, err)
	}
	if err := os.Rename(tmp, ix.path); err != nil {
		file.Close()
		os.Remove(tmp)
		return fmt.Errorf("index %s: %w", ix.path, err)
	}
	ix.closeFile()
	ix.file = file
	ix.records = records
	return nil
}

// nextModSeq is the mod-sequence for the next change: one more than the
// highest so far, and at least the clock in microseconds. The clock floor
// keeps mod-sequences rising even when the index is lost and rebuilt under
// the same UIDVALIDITY (RFC 7162 3.1.1: they must never go down).
func (ix *folderIndex) nextModSeq() uint64 {
	ms := max(ix.highestModSeq+1, uint64(time.Now().UnixMicro()))
	ix.highestModSeq = ms
	return ms
}

// feed hands what the index knows to the Maildir library at the first
// open of the folder in this process: with a checkpoint the folder resumes
// from the index's messages (no listing of cur/, no reading of the UID
// database, when its files are as the checkpoint says), else the index's
// dates and sizes spare the first Sync a stat of every file.
func (ix *folderIndex) feed(f *maildir.Folder) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.fed == f {
		return
	}
	ix.fed = f
	if ix.checkpoint != nil {
		msgs := make([]maildir.Message, len(ix.entries), withRoom(len(ix.entries)))
		for i, e := range ix.entries {
			msgs[i] = maildir.Message{UID: e.uid, Key: e.key, Flags: e.letters, Keywords: e.keywords,
				Size: e.size, InternalDate: dateFromNanos(e.date)}
		}
		if snap := f.Resume(ix.checkpoint, msgs); snap != nil && snap.UIDValidity == ix.uidValidity {
			ix.lastMerged = snap // the index is this snapshot: nothing to merge
			return
		}
	}
	for _, e := range ix.entries {
		f.Remember(e.key, dateFromNanos(e.date), e.size)
	}
}

// dateNanos is an internal date as the index keeps it: Unix nanoseconds,
// 0 when not known yet (the Maildir library leaves a first open's dates
// unread).
func dateNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func dateFromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// date returns the internal date the index has for uid (zero if unknown).
func (ix *folderIndex) date(uid uint32) time.Time {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil {
		return dateFromNanos(e.date)
	}
	return time.Time{}
}

// setDate keeps the internal date read for uid, whose file is key.
func (ix *folderIndex) setDate(uid uint32, key string, t time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil && e.key == key && e.date == 0 {
		e.date = dateNanos(t)
		ix.emit(dateRecord(uid, e.date))
		if ix.pending.Len() > 64<<10 {
			ix.flushLocked()
		}
	}
}

// merge brings the index in line with a snapshot: new UIDs are added,
// flag changes and vanished UIDs get a new mod-sequence (one for the whole
// merge). It reports whether anything changed.
func (ix *folderIndex) merge(snap *maildir.Snapshot) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if snap == ix.lastMerged {
		return false
	}
	prev := ix.lastMerged
	ix.lastMerged = snap
	changed := false
	if ix.highestModSeq == 0 {
		// A new index: HIGHESTMODSEQ must be positive even for an empty
		// folder (RFC 7162 3.1.1), and starts from the clock (nextModSeq).
		ix.highestModSeq = uint64(time.Now().UnixMicro())
		changed = true
	}
	if snap.UIDValidity != ix.uidValidity {
		ix.reset(snap.UIDValidity)
		// First in the file: replay resets on it, then adds what follows.
		ix.emit(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
		changed = true
	}
	var ms uint64
	modseq := func() uint64 {
		if ms == 0 {
			ms = ix.nextModSeq()
		}
		return ms
	}
	old := ix.entries
	if prev != nil && prev.UIDValidity == ix.uidValidity && extendsSnapshot(snap, prev) && len(old) == len(prev.Messages) {
		// Messages only added since the last merge, whose entries are
		// still exactly prev's (storeFlags forgets prev): the others need
		// not be compared.
		var rec []byte
		for i := len(prev.Messages); i < len(snap.Messages); i++ {
			m := &snap.Messages[i]
			e := &indexEntry{uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
				size: m.Size, crlfSize: m.VirtualSize, date: dateNanos(m.InternalDate), modseq: modseq()}
			ix.byUID[e.uid] = e
			ix.entries = append(ix.entries, e)
			rec = appendMessageRecord(rec[:0], e)
			ix.emit(rec)
			changed = true
		}
		if changed {
			ix.emit(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
		}
		ix.flushLocked()
		return changed
	}
	if len(old) == 0 && len(snap.Messages) >= 4096 {
		ix.mergeAllNew(snap, modseq())
		ix.emit(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
		ix.flushLocked()
		return true
	}
	entries := make([]*indexEntry, 0, withRoom(len(snap.Messages)))
	// A first merge (a new index) adds every message: one allocation for
	// the entries, a map sized once, one buffer reused for the records.
	var slab []indexEntry
	if len(old) == 0 {
		slab = make([]indexEntry, 0, len(snap.Messages))
		if len(ix.byUID) == 0 {
			ix.byUID = make(map[uint32]*indexEntry, len(snap.Messages))
		}
		if ix.file != nil {
			ix.pending.Grow(len(snap.Messages) * 96)
		}
	}
	var rec []byte
	var gone []uint32
	j := 0
	for i := range snap.Messages {
		m := &snap.Messages[i]
		for j < len(old) && old[j].uid < m.UID {
			gone = append(gone, old[j].uid)
			j++
		}
		if j < len(old) && old[j].uid == m.UID {
			e := old[j]
			j++
			switch {
			case e.key != m.Key:
				// Same UID, another file: the UID database was rebuilt
				// without a new UIDVALIDITY. Index it afresh.
				*e = indexEntry{uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
					size: m.Size, crlfSize: m.VirtualSize, date: dateNanos(m.InternalDate), modseq: modseq()}
				ix.emit(messageRecord(e))
				changed = true
			case !sameFlags(e.letters, e.keywords, m.Flags, m.Keywords):
				e.letters, e.keywords, e.modseq = m.Flags, m.Keywords, modseq()
				ix.emit(flagsRecord(e))
				changed = true
			}
			entries = append(entries, e)
			continue
		}
		ne := indexEntry{uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
			size: m.Size, crlfSize: m.VirtualSize, date: dateNanos(m.InternalDate), modseq: modseq()}
		var e *indexEntry
		if len(slab) < cap(slab) {
			slab = append(slab, ne)
			e = &slab[len(slab)-1]
		} else {
			e = new(indexEntry)
			*e = ne
		}
		ix.byUID[e.uid] = e
		entries = append(entries, e)
		rec = appendMessageRecord(rec[:0], e)
		ix.emit(rec)
		changed = true
	}
	for ; j < len(old); j++ {
		gone = append(gone, old[j].uid)
	}
	ix.entries = entries
	for _, uid := range gone {
		x := expungedUID{uid, modseq()}
		delete(ix.byUID, uid)
		ix.rememberExpunge(x)
		ix.emit(expungeRecord(x))
		changed = true
	}
	if changed {
		ix.emit(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
	}
	ix.flushLocked()
	return changed
}

// extendsSnapshot says whether snap's messages are prev's with more after
// them: Sync wrote them past the end of prev's array (maildir.Snapshot),
// which it does only when nothing else changed.
func extendsSnapshot(snap, prev *maildir.Snapshot) bool {
	a, b := snap.Messages, prev.Messages
	return len(b) > 0 && len(a) >= len(b) && &a[0] == &b[0]
}

// mergeAllNew adds every message of snap to an index that has none (a
// folder's first open) at mod-sequence ms: the entries are made here while
// another goroutine encodes their records. Caller holds ix.mu.
func (ix *folderIndex) mergeAllNew(snap *maildir.Snapshot, ms uint64) {
	msgs := snap.Messages
	entryOf := func(m *maildir.Message) indexEntry {
		return indexEntry{uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
			size: m.Size, crlfSize: m.VirtualSize, date: dateNanos(m.InternalDate), modseq: ms}
	}
	done := make(chan struct{})
	if ix.file != nil {
		// The records go straight after what is pending; nothing else
		// touches the buffer until done.
		ix.pending.Grow(len(msgs) * 96)
		go func() {
			defer close(done)
			var rec, framed []byte
			for i := range msgs {
				e := entryOf(&msgs[i])
				rec = appendMessageRecord(rec[:0], &e)
				framed = appendFramed(framed[:0], rec)
				ix.pending.Write(framed)
			}
		}()
	} else {
		close(done)
	}
	slab := make([]indexEntry, len(msgs))
	entries := make([]*indexEntry, len(msgs), withRoom(len(msgs)))
	if len(ix.byUID) == 0 {
		ix.byUID = make(map[uint32]*indexEntry, len(msgs))
	}
	for i := range msgs {
		slab[i] = entryOf(&msgs[i])
		e := &slab[i]
		entries[i] = e
		ix.byUID[e.uid] = e
	}
	ix.entries = entries
	<-done
	ix.checkpoint = nil
	if ix.file != nil {
		ix.records += int64(len(msgs))
	}
}

// appendFramed appends one record, "uvarint(len) crc32c payload", to b.
func appendFramed(b, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, indexCRC))
	return append(b, payload...)
}

func indexOfEntry(entries []*indexEntry, uid uint32) int {
	i, found := slices.BinarySearchFunc(entries, uid, func(a *indexEntry, uid uint32) int { return cmpUID(a.uid, uid) })
	if !found {
		return -1
	}
	return i
}

// storeFlags records flag changes made by this server (STORE) with one new
// mod-sequence, which it returns; UIDs not in the index are skipped.
func (ix *folderIndex) storeFlags(changes []flagChange) uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ms := ix.nextModSeq()
	for _, c := range changes {
		e := ix.byUID[c.uid]
		if e == nil {
			continue
		}
		e.letters, e.keywords, e.modseq = c.letters, c.keywords, ms
		ix.emit(flagsRecord(e))
	}
	ix.lastMerged = nil // the next snapshot is compared in full
	ix.emit(validityRecord(ix.uidValidity, ix.highestModSeq, ix.lowestExpungeModSeq))
	ix.flushLocked()
	return ms
}

type flagChange struct {
	uid      uint32
	letters  string
	keywords []string
}

func (ix *folderIndex) highest() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.highestModSeq
}

// vanishedSince returns the expunged UIDs with a mod-sequence above since,
// ascending. complete is false when older expunges were forgotten, so the
// answer may miss some and the caller must widen it (RFC 7162 3.2.5.2
// allows VANISHED to name UIDs the client never knew).
func (ix *folderIndex) vanishedSince(since uint64) (uids []uint32, complete bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	i, _ := slices.BinarySearchFunc(ix.expunged, since+1, func(x expungedUID, ms uint64) int {
		switch {
		case x.modseq < ms:
			return -1
		case x.modseq > ms:
			return 1
		}
		return 0
	})
	for _, x := range ix.expunged[i:] {
		uids = append(uids, x.uid)
	}
	slices.Sort(uids)
	return uids, since+1 >= ix.lowestExpungeModSeq
}

// crlfSize returns the remembered RFC822.SIZE of uid (0 if unknown).
func (ix *folderIndex) crlfSize(uid uint32) int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil {
		return e.crlfSize
	}
	return 0
}

// envelope returns the stored ENVELOPE of uid ("" if not fetched yet).
func (ix *folderIndex) envelope(uid uint32) string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil {
		return e.envelope
	}
	return ""
}

// setEnvelope keeps the ENVELOPE rendered for uid, whose file is key (a
// message never changes, so neither does its envelope).
func (ix *folderIndex) setEnvelope(uid uint32, key, env string) {
	if len(env) > maxIndexedHeader*4 {
		return // absurd headers are rendered each time rather than kept
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil && e.key == key && e.envelope == "" {
		e.envelope = env
		ix.emit(envelopeRecord(uid, env))
		if ix.pending.Len() > 64<<10 {
			ix.flushLocked()
		}
	}
}

func (ix *folderIndex) setCRLFSize(uid uint32, n int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.byUID[uid]; e != nil && e.crlfSize != n {
		e.crlfSize = n
		ix.emit(crlfRecord(uid, n))
		if ix.pending.Len() > 64<<10 {
			ix.flushLocked()
		}
	}
}

// headers returns the indexed header fields of the given UIDs, reading the
// header of each message not indexed yet (once; the result is kept).
// open opens a message by key. Messages that cannot be read get empty
// fields.
func (ix *folderIndex) headers(uids []uint32, open func(key string) (*os.File, error)) map[uint32]*indexHeaders {
	out := make(map[uint32]*indexHeaders, len(uids))
	var missing []*indexEntry
	ix.mu.Lock()
	for _, u := range uids {
		e := ix.byUID[u]
		if e == nil {
			continue
		}
		if e.hdr != nil {
			out[u] = e.hdr
		} else {
			missing = append(missing, &indexEntry{uid: e.uid, key: e.key})
		}
	}
	ix.mu.Unlock()
	if len(missing) == 0 {
		return out
	}
	for _, m := range missing {
		h := readIndexHeaders(m.key, open)
		out[m.uid] = h
		m.hdr = h
	}
	ix.mu.Lock()
	for _, m := range missing {
		if e := ix.byUID[m.uid]; e != nil && e.key == m.key && e.hdr == nil {
			e.hdr = m.hdr
			ix.emit(headersRecord(e.uid, e.hdr))
		}
	}
	ix.flushLocked()
	ix.mu.Unlock()
	return out
}

// readIndexHeaders reads one message's header block (at most
// maxHeaderRead bytes) and extracts the indexed fields.
func readIndexHeaders(key string, open func(key string) (*os.File, error)) *indexHeaders {
	h := &indexHeaders{}
	f, err := open(key)
	if err != nil {
		return h
	}
	defer f.Close()
	buf := make([]byte, maxHeaderRead)
	n, _ := io.ReadFull(f, buf)
	buf = buf[:n]
	end := headerEnd(buf)
	hdr, err := mime.ParseHeader(bytes.NewReader(buf), 0, int64(end))
	if err != nil {
		return h
	}
	get := func(name string) string {
		v := strings.Join(hdr.Values(name), "\n")
		v = unfold(v)
		if len(v) > maxIndexedHeader {
			v = v[:maxIndexedHeader]
		}
		return v
	}
	h.subject, h.from, h.to, h.cc = get("Subject"), get("From"), get("To"), get("Cc")
	h.date, h.messageID, h.inReplyTo, h.references = get("Date"), get("Message-ID"), get("In-Reply-To"), get("References")
	if t, ok := mime.ParseDate(h.date); ok {
		h.sent = t.Unix()
	}
	return h
}

// headerEnd is the offset of the blank line ending the header (or len(b)).
func headerEnd(b []byte) int {
	if end := blankLineEnd(b); end >= 0 {
		return end
	}
	return len(b)
}

// blankLineEnd is the offset just past the first empty line that follows
// a line end in b ("\n\n" or "\n\r\n"), or -1 when b holds none.
func blankLineEnd(b []byte) int {
	for i, c := range b {
		if c != '\n' {
			continue
		}
		rest := b[i+1:]
		if len(rest) > 0 && rest[0] == '\n' {
			return i + 2
		}
		if len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n' {
			return i + 3
		}
	}
	return -1
}

// unfold joins folded header lines (RFC 5322 2.2.3).
func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n ", " ")
	s = strings.ReplaceAll(s, "\n\t", " ")
	return s
}

// sharedView returns the sessions' shared first view of snap, with the
// keywords it uses and the sequence number of its first unseen message
// (0: none), building it when snap is new. The view must not be changed
// (sessions copy it first: selected.ownView).
func (ix *folderIndex) sharedView(snap *maildir.Snapshot) ([]viewMessage, []string, int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.viewSnap == snap {
		return ix.view, ix.viewKeywords, ix.viewFirstUnseen
	}
	msgs := snap.Messages
	var old []maildir.Message
	if ix.viewSnap != nil {
		old = ix.viewSnap.Messages
	}
	if ix.viewSnap != nil && extendsSnapshot(snap, ix.viewSnap) && len(ix.view) == len(old) {
		// snap only added messages to the array of the last view's
		// snapshot (maildir.Snapshot shares it when nothing else
		// changed), so the view's messages are still those of msgs'
		// start: the new ones are appended. ix.view is the longest slice
		// of its array anyone was given (sessions copy a view before
		// changing it), so no session sees the appended elements.
		view := ix.view
		kws := ix.viewKeywords
		for i := len(old); i < len(msgs); i++ {
			m := &msgs[i]
			view = append(view, viewOf(m))
			for _, k := range m.Keywords {
				if !slices.Contains(kws, k) {
					kws = append(slices.Clone(kws), k) // sessions hold the old list
					slices.Sort(kws)
				}
			}
		}
		if ix.viewFirstUnseen == 0 {
			if first := firstUnseen(view[len(old):]); first > 0 {
				ix.viewFirstUnseen = len(old) + first
			}
		}
		ix.view, ix.viewSnap, ix.viewKeywords = view, snap, kws
		return ix.view, ix.viewKeywords, ix.viewFirstUnseen
	}
	view := make([]viewMessage, len(msgs), withRoom(len(msgs)))
	seen := map[string]bool{}
	for i := range msgs {
		m := &msgs[i]
		view[i] = viewOf(m)
		for _, k := range m.Keywords {
			seen[k] = true
		}
	}
	ix.view, ix.viewSnap, ix.viewKeywords, ix.viewFirstUnseen = view, snap, sortedKeys(seen), firstUnseen(view)
	return ix.view, ix.viewKeywords, ix.viewFirstUnseen
}

// withRoom is the capacity to give an array of n messages' entries: a
// little more, so that the next deliveries are appended in place.
func withRoom(n int) int { return n + n/64 + 16 }

// viewOf is the view's entry for m.
func viewOf(m *maildir.Message) viewMessage {
	return viewMessage{
		uid: m.UID, key: m.Key, letters: m.Flags, keywords: m.Keywords,
		size: m.Size, vsize: m.VirtualSize, date: m.InternalDate,
	}
}

// firstUnseen is the sequence number of the first message without \Seen
// in msgs, 0 when every message is seen.
func firstUnseen(msgs []viewMessage) int {
	for i := range msgs {
		if strings.IndexByte(msgs[i].letters, maildir.FlagSeen) < 0 {
			return i + 1
		}
	}
	return 0
}
