package imap

import (
	"bufio"
	"compress/flate"
	"io"
	"strings"
	"sync"
	"time"

	"postern/internal/inflate"
)

// COMPRESS=DEFLATE (RFC 4978): after the tagged OK both directions are one
// raw DEFLATE stream (RFC 1951) each, inside TLS when TLS is on.
//
// Commands are inflated by internal/inflate, which hands over every byte as
// soon as it is decoded: compress/flate's reader would keep a command that
// the client flushed with zlib's Z_PARTIAL_FLUSH (as mbsync does) until more
// input came, and the client waits for the answer.
//
// Responses are deflated by compress/flate at deflateLevel and pushed out
// with a sync flush (an empty stored block) at every flush of the session's
// writer. A flate.Writer holds about 800 KB whatever the level (its hash
// tables are arrays inside it), too much to keep for every idle session; so
// a session takes one from the server's pool at its first write and gives
// it back once it has been quiet for deflateRelease after a flush. The next
// response then starts with an empty dictionary, which the client's
// decompressor does not notice (RFC 4978 section 4 says the same of
// Z_FULL_FLUSH, which also forgets it). Giving the writer back at every
// flush instead would cost most of the compression of small responses:
// "* 5 FETCH (FLAGS ...)" compresses only against the ones before it.
func compressCommands() []*commandSpec {
	return []*commandSpec{
		{name: "COMPRESS", states: authenticated, caps: []string{"COMPRESS=DEFLATE"}, parse: parseCompress, exec: execCompress, noUpdates: true},
	}
}

// deflateLevel 2 is the fastest level that compresses small responses:
// level 1 (BestSpeed) sends any flush of less than 128 bytes as Huffman
// codes only or stored, which makes a run of small responses larger than it
// was. On mail text level 2 is about twice as fast as level 5 and gives up
// about four points of ratio (figures in docs/imap.md).
const deflateLevel = 2

// deflateRelease is how long a session keeps its compressor after a flush
// with nothing more written.
const deflateRelease = 2 * time.Second

// newDeflaterPool is the server's pool of response compressors.
func newDeflaterPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		w, err := flate.NewWriter(io.Discard, deflateLevel)
		if err != nil {
			panic(err) // only for a level out of range
		}
		return w
	}}
}

// parseCompress reads "SP algorithm" (RFC 4978 section 5).
func parseCompress(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	mech, err := d.atom()
	if err != nil {
		return nil, err
	}
	return strings.ToUpper(mech), nil
}

func execCompress(s *session, c *command) result {
	if c.args.(string) != "DEFLATE" {
		return bad("Unknown compression mechanism")
	}
	if s.compressed {
		return no("COMPRESSIONACTIVE", "DEFLATE is active already")
	}
	if s.sel != nil {
		if r, failed := s.syncResult(s.sendUpdates(true, false)); failed {
			return r
		}
	}
	// The OK goes out uncompressed; compression starts right after its
	// CRLF, in both directions (RFC 4978 section 3).
	s.writeResult(c.tag, ok("DEFLATE active"))
	if err := s.w.flush(); err != nil {
		return fatal()
	}
	s.startCompression()
	s.log.Debug("imap: compression on")
	return result{sent: true}
}

// startCompression layers DEFLATE over the connection's streams. Bytes the
// client sent after COMPRESS and that sit in the old reader already are
// compressed ones, so the inflater reads through that reader.
func (s *session) startCompression() {
	in := bufio.NewReaderSize(inflate.NewReader(s.br), 4<<10)
	out := &deflateWriter{pool: s.srv.deflaters, release: s.srv.deflateRelease, dst: s.conn}
	s.setStreams(in, out, out)
	s.compressed = true
}

// deflateWriter is the compressing side of a session: a pooled flate.Writer
// held from a write until the session has been quiet for release after a
// flush. The stream goes on across writers: no final block is ever
// written, and a writer handed back has just sync-flushed, so the next one
// starts on a byte boundary.
type deflateWriter struct {
	pool    *sync.Pool
	dst     io.Writer
	release time.Duration

	mu      sync.Mutex // the session writes; the timer gives fw back
	fw      *flate.Writer
	dirty   bool      // written since the last flush
	flushed time.Time // the last flush, which (re)started the timer
	timer   *time.Timer
}

func (d *deflateWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fw == nil {
		d.fw = d.pool.Get().(*flate.Writer)
		d.fw.Reset(d.dst)
	}
	d.dirty = true
	return d.fw.Write(p)
}

// Flush pushes out everything written with a sync flush, so that the client
// can decode all of it, and starts the release timer.
func (d *deflateWriter) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty {
		return nil
	}
	if err := d.fw.Flush(); err != nil {
		return err
	}
	d.dirty = false
	d.flushed = time.Now()
	if d.timer == nil {
		d.timer = time.AfterFunc(d.release, d.giveBack)
	} else {
		d.timer.Reset(d.release)
	}
	return nil
}

// giveBack returns the compressor to the pool if the session has been
// quiet for the release time. It waits for a write in progress: written
// and not flushed, the compressor stays (the flush starts the timer
// again); flushed since the timer was set, the timer's next firing
// decides. (It used to give up when it could not take mu at once, and
// then nothing gave the compressor back until the next flush.)
func (d *deflateWriter) giveBack() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fw == nil || d.dirty || time.Since(d.flushed) < d.release {
		return
	}
	d.fw.Reset(io.Discard) // drop the connection
	d.pool.Put(d.fw)
	d.fw = nil
}

// holding reports whether a compressor is lent out (for tests).
func (d *deflateWriter) holding() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw != nil
}
