package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// quietPair returns a quiet server side and the client side of a TCP
// connection on the loopback.
func quietPair(t *testing.T, wait time.Duration) (*quietConn, net.Conn, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reads := new(atomic.Int64)
	q := makeQuiet(nc, wait, reads)
	if q == nil {
		t.Fatal("makeQuiet refused a TCP connection")
	}
	t.Cleanup(func() { q.Close() })
	return q.(*quietConn), client, reads
}

func (q *quietConn) isPolled() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.polled != nil
}

// TestQuietConnMovesToPoller: a wait longer than QuietWait hands the
// connection to the poller; no byte is lost or repeated on the way, in
// either direction, and the deadlines set before the move still hold.
func TestQuietConnMovesToPoller(t *testing.T) {
	q, client, reads := quietPair(t, 5*time.Millisecond)
	client.Write([]byte("one\r\n"))
	buf := make([]byte, 64)
	n, err := q.Read(buf)
	if err != nil || string(buf[:n]) != "one\r\n" {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	if q.isPolled() || reads.Load() == 0 {
		t.Fatalf("moved before any long wait (polled %v, quiet reads %d)", q.isPolled(), reads.Load())
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // ten waits
		client.Write([]byte("two\r\n"))
	}()
	n, err = q.Read(buf)
	if err != nil || string(buf[:n]) != "two\r\n" {
		t.Fatalf("read across the move: %q, %v", buf[:n], err)
	}
	if !q.isPolled() {
		t.Fatal("still quiet after waiting ten times QuietWait")
	}
	before := reads.Load()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // more than the socket buffers
	done := make(chan error, 1)
	go func() {
		_, err := q.Write(big)
		done <- err
	}()
	got, err := io.ReadAll(io.LimitReader(client, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("client read %d of %d bytes: %v", len(got), len(big), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write after the move: %v", err)
	}
	if reads.Load() != before {
		t.Fatal("reads after the move counted as quiet")
	}
	q.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err = q.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline after the move: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline took %v", d)
	}
}

// TestQuietConnWriteMovesMidway: a write that fills the socket buffers and
// then waits longer than QuietWait goes on through the poller, and the
// client receives every byte once.
func TestQuietConnWriteMovesMidway(t *testing.T) {
	q, client, _ := quietPair(t, 2*time.Millisecond)
	big := bytes.Repeat([]byte("abcdefghijklmnop"), 1<<20) // 16 MiB: more than the socket buffers
	done := make(chan error, 1)
	go func() {
		_, err := q.Write(big)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // the writer blocks on full buffers
	got, err := io.ReadAll(io.LimitReader(client, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("client read %d of %d bytes: %v", len(got), len(big), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !q.isPolled() {
		t.Fatal("a writer blocked 50 ms did not move to the poller")
	}
}

// TestQuietConnDeadline: a read deadline ends a quiet wait with a timeout
// error (a net.Error whose Timeout is true), and does not move the
// connection.
func TestQuietConnDeadline(t *testing.T) {
	q, _, _ := quietPair(t, time.Second)
	q.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err := q.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > 900*time.Millisecond {
		t.Fatalf("deadline of 20ms ended the read after %v", d)
	}
	if q.isPolled() {
		t.Fatal("moved on a deadline")
	}
	q.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := q.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a past deadline and nothing to read: %v", err)
	}
}

// TestQuietConnCloseWakesReader: Close from another goroutine ends a read
// waiting in ppoll at once, and the client sees the connection end.
func TestQuietConnCloseWakesReader(t *testing.T) {
	q, client, _ := quietPair(t, 10*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := q.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read returned no error after Close")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("reader woke %v after Close", d)
	}
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := client.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("client read after Close: %v, want EOF", err)
	}
	if _, err := q.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if _, err := q.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	q.mu.Lock()
	fd := q.fd
	q.mu.Unlock()
	if fd != -1 {
		t.Fatalf("descriptor %d still open after Close and the reader's return", fd)
	}
}

// TestQuietConnEOF: the client's close reads as io.EOF.
func TestQuietConnEOF(t *testing.T) {
	q, client, _ := quietPair(t, time.Second)
	client.Write([]byte("bye"))
	client.Close()
	got, err := io.ReadAll(q)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestQuietConnDeadlineMovedDuringWait: a deadline set to now while a read
// waits in ppoll (Shutdown does that) ends the read with a timeout when
// the wait ends; the connection stays quiet.
func TestQuietConnDeadlineMovedDuringWait(t *testing.T) {
	q, _, _ := quietPair(t, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := q.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	q.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the read went on past its deadline")
	}
	if q.isPolled() {
		t.Fatal("moved to the poller instead of timing out")
	}
}
