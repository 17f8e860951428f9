// Package wal is a fixed-size, circular write-ahead log for records that
// must be durable before an acknowledgement while their effects (files
// written elsewhere) are made durable later, in bulk.
//
// The point is the cost of durability. Making a new file durable takes a
// journal commit of the file system (the inode, its blocks, the directory
// entry): on ext4 about 0.7 ms per message on the build machine, twice per
// message for maildir(5)'s data-then-name. Overwriting blocks of a file that
// were written before changes no metadata, so fdatasync(2) is a data write
// and a cache flush: about 0.2 ms. The log is such a file, preallocated and
// zero-filled once. A record is durable when Append returns; concurrent
// Appends share one write and one flush (group commit).
//
// A caller applies a record's effect after Append (writes the file, without
// syncing it) and then calls Release. A checkpoint, run in the background,
// calls Options.Sync (syncfs of the file systems the effects went to) and
// then records how far the log is applied; the space of applied records is
// reused. After a crash, Open hands every record after the last checkpoint to
// the replay function, which applies it again if its effect did not survive
// (the replay must be idempotent).
//
// Layout, in 4 KiB blocks: block 0 the file header; blocks 1 and 2 two
// checkpoint slots written alternately (a torn write spoils at most the one
// being written); then the records, each starting on a block boundary (a
// record is never written into a block that holds a live one) with a 32-byte
// header: magic, flags, epoch, payload length, sequence number, CRC-32C of
// the payload and CRC-32C of the header. Sequence numbers follow each other
// without gaps; replay follows them from the checkpoint and stops at the
// first missing one. The epoch grows at every Open, so that records written
// before a crash and never acknowledged (a batch cut short) cannot be taken
// for new ones later.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"postern/internal/groupcommit"
)

const (
	blockSize   = 4096
	dataStart   = 3 * blockSize // after the header and the two checkpoint slots
	headerSize  = 32
	minFileSize = dataStart + 16*blockSize

	recMagic      = 0x52574c50 // "PLWR" little-endian
	flagCancelled = 1
)

var (
	fileMagic  = [8]byte{'P', 'O', 'S', 'T', 'W', 'A', 'L', '1'}
	ckptMagic  = [8]byte{'P', 'O', 'S', 'T', 'C', 'K', 'P', 'T'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Errors Append returns when the record cannot go into the log; the caller
// makes its effect durable by other means.
var (
	ErrTooBig = errors.New("wal: record larger than the log allows")
	ErrFull   = errors.New("wal: log full")
	ErrClosed = errors.New("wal: closed")
)

// Options tunes Open.
type Options struct {
	// Size of a new log file in bytes (rounded up to 4 KiB); an existing
	// file keeps its size. Default 32 MiB.
	Size int64
	// Sync makes the effects of every released record durable (syncfs of
	// the file systems they went to). Required.
	Sync func() error
	// Interval between background checkpoints while records are being
	// released. Default 200 ms. The log also checkpoints when it is half
	// full.
	Interval time.Duration
	// OnError receives errors of background checkpoints.
	OnError func(error)
	// Buffered writes records through the page cache and flushes them
	// with fdatasync. By default they are written with O_DIRECT|O_DSYNC,
	// one system call that leaves the page cache out (8 KiB records on
	// ext4 over virtio: 141–153 µs and 57 µs of CPU each, against 174 µs
	// and 81–85 µs for write+fdatasync), wherever the file system takes
	// it; tmpfs, for one, does not. On ext4 without a journal the
	// write is O_DIRECT alone and the flush goes through the file
	// system's top directory (flush.go).
	Buffered bool
}

// Log is an open write-ahead log. Safe for concurrent use.
type Log struct {
	f      *os.File
	direct *os.File // O_DIRECT descriptor for records, or nil
	// flusher, when set, is the directory whose fdatasync flushes the
	// disk cache after direct writes (ModeDirectFlush); without it the
	// direct descriptor is O_DSYNC.
	flusher *os.File
	size    int64
	opt     Options

	mu          sync.Mutex
	head        int64  // where the next record goes
	nextSeq     uint64 // its sequence number
	epoch       uint32
	ckptSeq     uint64 // records up to this one are applied and durable
	tailOff     int64  // offset of record ckptSeq+1 (== head when none)
	ckptCounter uint64
	live        []liveRec // records after the checkpoint, in sequence order
	unreleased  map[uint64]bool
	released    bool // a record was released since the last checkpoint
	closed      bool
	failed      error // a write or flush failed: the log takes no more records

	commits groupcommit.Batcher[*appendReq]
	stats   Stats  // under mu
	buf     []byte // the write buffer of the batch being flushed

	ckptMu sync.Mutex    // one checkpoint at a time
	kickC  chan struct{} // asks the background loop for a checkpoint now
	stop   chan struct{}
	done   chan struct{}
}

type liveRec struct {
	seq uint64
	off int64
}

type appendReq struct {
	parts [][]byte
	n     int64 // payload length
	seq   uint64
	off   int64
	err   error
}

// Stats counts what the log did since Open.
type Stats struct {
	Records     int64 // records appended
	Flushes     int64 // writes+flushes (Records/Flushes = records per flush)
	Refused     int64 // Appends refused (full, too big, failed)
	Checkpoints int64 // checkpoints written
	// FlushTime and CheckpointTime: time spent writing and flushing
	// records (FlushTime/Flushes is the disk's flush latency as the
	// deliveries see it) and in checkpoints (the sync of the folders).
	FlushTime      time.Duration
	CheckpointTime time.Duration
	Replayed       int64  // records handed to replay by Open
	Used           int64  // bytes of records not yet checkpointed
	Size           int64  // the file's size
	Failed         bool   // a write, flush or sync failed: no more records
	Mode           string // how records are made durable: ModeDirectFlush, ModeDirectSync or ModeBuffered
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Used, st.Size, st.Failed = l.usedLocked(), l.size, l.failed != nil
	switch {
	case l.direct == nil:
		st.Mode = ModeBuffered
	case l.flusher != nil:
		st.Mode = ModeDirectFlush
	default:
		st.Mode = ModeDirectSync
	}
	return st
}

// Record is one record found by replay.
type Record struct {
	Seq       uint64
	Cancelled bool
	Payload   []byte
}

// Open opens the log at path, creating it (preallocated and zero-filled)
// when missing. replay is called, in sequence order, for each record after
// the last checkpoint that was not cancelled; when every replay succeeded,
// Options.Sync is called and the log is checkpointed, so the records are not
// replayed again. A replay error stops Open: the records stay in the log for
// the next attempt. The file is locked (flock) against a second process.
func Open(path string, opt Options, replay func(Record) error) (*Log, error) {
	if opt.Sync == nil {
		return nil, errors.New("wal: Options.Sync is required")
	}
	if opt.Size <= 0 {
		opt.Size = 32 << 20
	}
	opt.Size = (opt.Size + blockSize - 1) / blockSize * blockSize
	if opt.Size < minFileSize {
		opt.Size = minFileSize
	}
	if opt.Interval <= 0 {
		opt.Interval = 200 * time.Millisecond
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := create(path, opt.Size); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal %s: in use by another process: %w", path, err)
	}
	l := &Log{f: f, opt: opt, unreleased: map[uint64]bool{}, kickC: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.recover(replay); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal %s: %w", path, err)
	}
	if !opt.Buffered {
		if l.flusher = rootFlusher(path); l.flusher != nil {
			if l.direct, _ = os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0); l.direct == nil {
				l.flusher.Close()
				l.flusher = nil
			}
		}
		if l.direct == nil {
			l.direct, _ = os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT|unix.O_DSYNC, 0)
		}
	}
	l.commits.Flush = l.flush
	go l.background()
	return l, nil
}

// create writes a new log file: header, the first checkpoint and zeroes,
// made durable, under a temporary name renamed into place.
func create(path string, size int64) error {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("wal %s: create: %w", path, err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("wal %s: create: %w", path, err)
		}
	}
	var hdr [blockSize]byte
	copy(hdr[:8], fileMagic[:])
	binary.LittleEndian.PutUint64(hdr[8:], uint64(size))
	binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(hdr[:16], castagnoli))
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		return fmt.Errorf("wal %s: create: %w", path, err)
	}
	if _, err := f.WriteAt(encodeCheckpoint(1, 1, 0, dataStart), blockSize); err != nil {
		return fmt.Errorf("wal %s: create: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal %s: create: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("wal %s: create: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkpoint slot: magic(8) counter(8) epoch(4) pad(4) seq(8) off(8) crc(4)
func encodeCheckpoint(counter uint64, epoch uint32, seq uint64, off int64) []byte {
	b := make([]byte, blockSize)
	copy(b[:8], ckptMagic[:])
	binary.LittleEndian.PutUint64(b[8:], counter)
	binary.LittleEndian.PutUint32(b[16:], epoch)
	binary.LittleEndian.PutUint64(b[24:], seq)
	binary.LittleEndian.PutUint64(b[32:], uint64(off))
	binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[:40], castagnoli))
	return b
}

type checkpoint struct {
	counter uint64
	epoch   uint32
	seq     uint64
	off     int64
}

func decodeCheckpoint(b []byte) (checkpoint, bool) {
	if len(b) < 44 || [8]byte(b[:8]) != ckptMagic || crc32.Checksum(b[:40], castagnoli) != binary.LittleEndian.Uint32(b[40:]) {
		return checkpoint{}, false
	}
	return checkpoint{
		counter: binary.LittleEndian.Uint64(b[8:]),
		epoch:   binary.LittleEndian.Uint32(b[16:]),
		seq:     binary.LittleEndian.Uint64(b[24:]),
		off:     int64(binary.LittleEndian.Uint64(b[32:])),
	}, true
}

// record header: magic(4) flags(4) epoch(4) len(4) seq(8) pcrc(4) hcrc(4)
func encodeHeader(b []byte, flags, epoch uint32, n uint32, seq uint64, pcrc uint32) {
	binary.LittleEndian.PutUint32(b[0:], recMagic)
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], epoch)
	binary.LittleEndian.PutUint32(b[12:], n)
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint32(b[24:], pcrc)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
}

type header struct {
	flags, epoch, n uint32
	seq             uint64
	pcrc            uint32
}

func decodeHeader(b []byte) (header, bool) {
	if len(b) < headerSize || binary.LittleEndian.Uint32(b[0:]) != recMagic || crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return header{}, false
	}
	return header{
		flags: binary.LittleEndian.Uint32(b[4:]),
		epoch: binary.LittleEndian.Uint32(b[8:]),
		n:     binary.LittleEndian.Uint32(b[12:]),
		seq:   binary.LittleEndian.Uint64(b[16:]),
		pcrc:  binary.LittleEndian.Uint32(b[24:]),
	}, true
}

// span is the space a record of n payload bytes takes, in whole blocks.
func span(n int64) int64 {
	return (headerSize + n + blockSize - 1) / blockSize * blockSize
}

// MaxRecord is the largest payload Append takes.
func (l *Log) MaxRecord() int64 { return maxRecord(l.size) }

func maxRecord(size int64) int64 { return (size-dataStart)/4 - headerSize }

// recover reads the header and the newest checkpoint, replays the records
// after it and starts a new epoch.
func (l *Log) recover(replay func(Record) error) error {
	hdr := make([]byte, dataStart)
	if _, err := l.f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if [8]byte(hdr[:8]) != fileMagic || crc32.Checksum(hdr[:16], castagnoli) != binary.LittleEndian.Uint32(hdr[16:]) {
		return errors.New("not a Postern write-ahead log (bad header)")
	}
	l.size = int64(binary.LittleEndian.Uint64(hdr[8:]))
	if st, err := l.f.Stat(); err != nil || st.Size() < l.size || l.size < minFileSize || l.size%blockSize != 0 {
		return fmt.Errorf("file size does not match its header (%d)", l.size)
	}
	c1, ok1 := decodeCheckpoint(hdr[blockSize : 2*blockSize])
	c2, ok2 := decodeCheckpoint(hdr[2*blockSize:])
	var c checkpoint
	switch {
	case ok1 && (!ok2 || c1.counter > c2.counter):
		c = c1
	case ok2:
		c = c2
	default:
		return errors.New("no valid checkpoint")
	}
	if c.off < dataStart || c.off >= l.size || c.off%blockSize != 0 {
		return fmt.Errorf("checkpoint offset %d out of range", c.off)
	}
	recs, end, err := Scan(l.f, l.size, c.epoch, c.seq, c.off)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Cancelled {
			continue
		}
		l.stats.Replayed++
		if err := replay(r); err != nil {
			return fmt.Errorf("replay record %d: %w", r.Seq, err)
		}
	}
	last := c.seq
	if len(recs) > 0 {
		last = recs[len(recs)-1].Seq
		if err := l.opt.Sync(); err != nil {
			return fmt.Errorf("sync after replay: %w", err)
		}
	}
	l.ckptCounter = c.counter
	l.epoch = c.epoch + 1
	if err := l.writeCheckpoint(last, end); err != nil {
		return err
	}
	l.ckptSeq, l.nextSeq = last, last+1
	l.head, l.tailOff = end, end
	return nil
}

// Scan reads the records of epoch that follow sequence number after,
// starting at offset off, as replay sees them; it returns them and the
// offset after the last one. Exported for the fuzz test and for tools.
func Scan(r io.ReaderAt, size int64, epoch uint32, after uint64, off int64) ([]Record, int64, error) {
	var recs []Record
	expect := after + 1
	hdr := make([]byte, headerSize)
	wrapped := false
	for {
		h, ok := readHeader(r, hdr, off, size)
		if !ok || h.epoch != epoch || h.seq != expect {
			// The writer starts over at the beginning when a record
			// does not fit before the end.
			if off == dataStart || wrapped {
				break
			}
			h2, ok2 := readHeader(r, hdr, dataStart, size)
			if !ok2 || h2.epoch != epoch || h2.seq != expect {
				break
			}
			off, h, wrapped = dataStart, h2, true
		}
		if int64(h.n) > maxRecord(size) || off+span(int64(h.n)) > size {
			break
		}
		payload := make([]byte, h.n)
		if _, err := r.ReadAt(payload, off+headerSize); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, 0, fmt.Errorf("read record %d: %w", expect, err)
		}
		if crc32.Checksum(payload, castagnoli) != h.pcrc {
			break // torn: written but never acknowledged
		}
		recs = append(recs, Record{Seq: h.seq, Cancelled: h.flags&flagCancelled != 0, Payload: payload})
		off += span(int64(h.n))
		if off >= size {
			off = dataStart
		}
		expect++
		wrapped = false
	}
	return recs, off, nil
}

func readHeader(r io.ReaderAt, buf []byte, off, size int64) (header, bool) {
	if off+headerSize > size {
		return header{}, false
	}
	if _, err := r.ReadAt(buf, off); err != nil {
		return header{}, false
	}
	return decodeHeader(buf)
}

// writeCheckpoint records that records up to seq are applied and that
// replay starts at off; durable on return.
func (l *Log) writeCheckpoint(seq uint64, off int64) error {
	l.ckptCounter++
	slot := int64(1 + l.ckptCounter%2)
	if _, err := l.f.WriteAt(encodeCheckpoint(l.ckptCounter, l.epoch, seq, off), slot*blockSize); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("flush checkpoint: %w", os.NewSyscallError("fdatasync", err))
	}
	return nil
}

// Append writes a record whose payload is the concatenation of parts and
// returns its sequence number once it is durable. The caller applies its
// effect and then calls Release (or Cancel). ErrTooBig and ErrFull say the
// record was not written.
func (l *Log) Append(parts ...[]byte) (uint64, error) {
	var n int64
	for _, p := range parts {
		n += int64(len(p))
	}
	if n > l.MaxRecord() {
		l.mu.Lock()
		l.stats.Refused++
		l.mu.Unlock()
		return 0, ErrTooBig
	}
	r := &appendReq{parts: parts, n: n}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	l.commits.Do(r)
	return r.seq, r.err
}

// flush places the batch's records, writes them and flushes once.
func (l *Log) flush(batch []*appendReq) {
	l.mu.Lock()
	if l.failed != nil {
		err := l.failed
		l.stats.Refused += int64(len(batch))
		l.mu.Unlock()
		for _, r := range batch {
			r.err = err
		}
		return
	}
	placed := l.place(batch)
	if len(placed) < len(batch) && l.released {
		// Out of room: apply what is released and try again.
		l.mu.Unlock()
		if err := l.Checkpoint(); err != nil && l.opt.OnError != nil {
			l.opt.OnError(err)
		}
		l.mu.Lock()
		placed = append(placed, l.place(batch[len(placed):])...)
	}
	for _, r := range batch[len(placed):] {
		r.err = ErrFull
	}
	l.stats.Refused += int64(len(batch) - len(placed))
	if len(placed) > 0 {
		l.stats.Records += int64(len(placed))
		l.stats.Flushes++
	}
	epoch := l.epoch
	l.mu.Unlock()
	if len(placed) == 0 {
		return
	}

	// Build one buffer per contiguous run (the batch may wrap once).
	began := time.Now()
	var err error
	start := 0
	for start < len(placed) && err == nil {
		end := start + 1
		for end < len(placed) && placed[end].off == placed[end-1].off+span(placed[end-1].n) {
			end++
		}
		run := placed[start:end]
		total := run[len(run)-1].off + span(run[len(run)-1].n) - run[0].off
		if int64(cap(l.buf)) < total {
			l.buf = alignedBuffer(total)
		}
		buf := l.buf[:total]
		clear(buf) // the padding after each record
		for _, r := range run {
			b := buf[r.off-run[0].off:]
			p := headerSize
			crc := uint32(0)
			for _, part := range r.parts {
				copy(b[p:], part)
				crc = crc32.Update(crc, castagnoli, part)
				p += len(part)
			}
			encodeHeader(b, 0, epoch, uint32(r.n), r.seq, crc)
		}
		err = l.write(buf, run[0].off)
		start = end
	}
	if err == nil {
		err = l.flushDisk()
	}
	l.mu.Lock()
	l.stats.FlushTime += time.Since(began)
	if err != nil {
		// After a failed flush nothing written since the last good one
		// can be trusted (fsyncgate): refuse further records.
		err = fmt.Errorf("wal: write: %w", err)
		l.failed = err
		for _, r := range placed {
			delete(l.unreleased, r.seq)
		}
	}
	l.mu.Unlock()
	for _, r := range placed {
		r.err = err
		r.parts = nil
	}
	if cap(l.buf) > 4<<20 {
		l.buf = nil // do not keep a big message's buffer
	}
}

// write writes a run of records: durable on return with the O_DSYNC
// direct descriptor, else on the disk or in the page cache for the flush
// that follows. A direct write the file system refuses outright (EINVAL:
// an alignment it wants bigger than a block) turns direct writes off for
// good; the run goes the buffered way then.
func (l *Log) write(buf []byte, off int64) error {
	if l.direct != nil {
		_, err := l.direct.WriteAt(buf, off)
		if err == nil && l.flusher != nil {
			// ext4 quietly takes some O_DIRECT writes through the
			// page cache (an encrypted file, one not aligned to its
			// block size): written out here, the flush covers them.
			// Nothing to do, and cheap, when the write was direct.
			err = unix.SyncFileRange(int(l.direct.Fd()), off, int64(len(buf)),
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			if err != nil {
				err = os.NewSyscallError("sync_file_range", err)
			}
		}
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		l.closeDirect()
	}
	_, err := l.f.WriteAt(buf, off)
	return err
}

// flushDisk makes the records written by write durable: nothing to do
// after an O_DSYNC write; a cache flush through the flusher after a plain
// direct one; fdatasync of the log after buffered writes.
func (l *Log) flushDisk() error {
	f := l.flusher
	if l.direct == nil {
		f = l.f
	}
	if f == nil {
		return nil
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return os.NewSyscallError("fdatasync", err)
	}
	return nil
}

// closeDirect stops direct writes: records go through the page cache.
// Only the flushing goroutine writes l.direct and l.flusher, and reads them
// unlocked; Stats reads them under l.mu.
func (l *Log) closeDirect() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.direct != nil {
		l.direct.Close()
		l.direct = nil
	}
	if l.flusher != nil {
		l.flusher.Close()
		l.flusher = nil
	}
}

// alignedBuffer returns n bytes starting on a block boundary in memory, as
// O_DIRECT wants.
func alignedBuffer(n int64) []byte {
	b := make([]byte, n+blockSize)
	skip := (blockSize - int(uintptr(unsafe.Pointer(&b[0]))%blockSize)) % blockSize
	return b[skip : int64(skip)+n : int64(skip)+n]
}

// place gives records their sequence numbers and offsets while they fit
// before the oldest live record; it returns those placed (a prefix).
// Called with l.mu held.
func (l *Log) place(batch []*appendReq) []*appendReq {
	var placed []*appendReq
	for _, r := range batch {
		need := span(r.n)
		off, ok := l.fit(need)
		if !ok {
			break
		}
		if len(l.live) == 0 {
			l.tailOff = off
		}
		r.seq, r.off = l.nextSeq, off
		l.nextSeq++
		l.head = off + need
		if l.head >= l.size {
			l.head = dataStart
		}
		l.live = append(l.live, liveRec{seq: r.seq, off: off})
		l.unreleased[r.seq] = true
		placed = append(placed, r)
	}
	return placed
}

// fit finds room for need bytes at the head without reaching the live
// records (from tailOff), keeping one block between head and tail so that a
// full log is told from an empty one.
func (l *Log) fit(need int64) (int64, bool) {
	empty := len(l.live) == 0
	if empty {
		if l.head+need <= l.size {
			return l.head, true
		}
		return dataStart, dataStart+need <= l.size
	}
	if l.head >= l.tailOff { // live records lie in [tailOff, head)
		if l.head+need <= l.size && !(l.head+need == l.size && l.tailOff == dataStart) {
			return l.head, true
		}
		return dataStart, dataStart+need < l.tailOff
	}
	return l.head, l.head+need < l.tailOff // wrapped: free space is [head, tailOff)
}

// Release says the record's effect is applied (not necessarily durable);
// the next checkpoint covers it.
func (l *Log) Release(seq uint64) {
	l.mu.Lock()
	delete(l.unreleased, seq)
	l.released = true
	half := l.usedLocked() > (l.size-dataStart)/2
	l.mu.Unlock()
	if half {
		l.kick()
	}
}

// Cancel says the record's effect will not happen (the caller reports a
// failure instead): its header is marked so that replay skips it. The mark
// is not flushed; a crash before it reaches the disk replays the record.
func (l *Log) Cancel(seq uint64) {
	l.mu.Lock()
	var off int64 = -1
	for _, r := range l.live {
		if r.seq == seq {
			off = r.off
			break
		}
	}
	l.mu.Unlock()
	if off >= 0 {
		hdr := make([]byte, headerSize)
		if _, err := l.f.ReadAt(hdr, off); err == nil {
			if h, ok := decodeHeader(hdr); ok && h.seq == seq {
				encodeHeader(hdr, h.flags|flagCancelled, h.epoch, h.n, h.seq, h.pcrc)
				l.f.WriteAt(hdr, off)
			}
		}
	}
	l.Release(seq)
}

func (l *Log) usedLocked() int64 {
	if len(l.live) == 0 {
		return 0
	}
	if l.head > l.tailOff {
		return l.head - l.tailOff
	}
	return l.size - dataStart - (l.tailOff - l.head)
}

// Checkpoint makes the effects of every released record durable
// (Options.Sync) and records it, so that their space is reused and replay
// skips them.
func (l *Log) Checkpoint() error {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.Lock()
	if l.failed != nil {
		err := l.failed
		l.mu.Unlock()
		return err
	}
	target := l.nextSeq - 1
	for seq := range l.unreleased {
		if seq-1 < target {
			target = seq - 1
		}
	}
	if target <= l.ckptSeq {
		l.released = false
		l.mu.Unlock()
		return nil
	}
	newTail := l.head
	for _, r := range l.live {
		if r.seq > target {
			newTail = r.off
			break
		}
	}
	l.released = false
	l.mu.Unlock()

	began := time.Now()
	defer func() {
		l.mu.Lock()
		l.stats.CheckpointTime += time.Since(began)
		l.mu.Unlock()
	}()
	if err := l.opt.Sync(); err != nil {
		// A later sync may report success for pages whose write-back
		// failed now (the error is reported once): never checkpoint
		// again in this run. The records stay for the replay at the
		// next start; new deliveries take the flushed path.
		err = fmt.Errorf("wal: checkpoint: %w", err)
		l.mu.Lock()
		l.failed = err
		l.mu.Unlock()
		return err
	}
	if err := l.writeCheckpoint(target, newTail); err != nil {
		l.mu.Lock()
		l.failed = err
		l.mu.Unlock()
		return err
	}
	l.mu.Lock()
	l.stats.Checkpoints++
	l.ckptSeq, l.tailOff = target, newTail
	i := 0
	for i < len(l.live) && l.live[i].seq <= target {
		i++
	}
	l.live = append(l.live[:0], l.live[i:]...)
	l.mu.Unlock()
	return nil
}

func (l *Log) kick() {
	select {
	case l.kickC <- struct{}{}:
	default:
	}
}

// background checkpoints every Interval while records are released, and
// at once when the log is half full.
func (l *Log) background() {
	defer close(l.done)
	t := time.NewTicker(l.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kickC:
		}
		l.mu.Lock()
		due := l.released
		l.mu.Unlock()
		if due {
			if err := l.Checkpoint(); err != nil && l.opt.OnError != nil {
				l.opt.OnError(err)
			}
		}
	}
}

// Close waits for the Appends in flight, checkpoints what is released and
// closes the file. Records appended and never released stay for replay.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	for !l.commits.Idle() {
		time.Sleep(time.Millisecond)
	}
	err := l.Checkpoint()
	l.closeDirect()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
