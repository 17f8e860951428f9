// Package rejectlog keeps every SMTP-time refusal with the facts an admin
// needs to answer "why was this mail refused?" in one command: when, which
// client and HELO, sender and recipients, every filter's result and score,
// and the reply the client saw. Records are JSON lines appended to a file
// that rotates by size (one previous generation kept), so it never grows
// without bound; `postern rejects` searches both generations.
package rejectlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultMaxSize is the size at which the log rotates.
const DefaultMaxSize = 64 << 20

// FilterResult is one filter's part in a decision.
type FilterResult struct {
	Filter  string  `json:"filter"`
	Verdict string  `json:"verdict"`
	Score   float64 `json:"score,omitempty"`
	Reason  string  `json:"reason,omitempty"`
}

// Record is one refusal.
type Record struct {
	Time     time.Time      `json:"time"`
	Session  string         `json:"session"`
	Listener string         `json:"listener,omitempty"`
	Client   string         `json:"client"`
	HELO     string         `json:"helo,omitempty"`
	AuthUser string         `json:"auth_user,omitempty"`
	From     string         `json:"from"`
	Rcpts    []string       `json:"rcpts,omitempty"`
	Stage    string         `json:"stage"`
	Reply    string         `json:"reply"` // what the client was told, e.g. "550 5.7.1 Listed by ..."
	Decider  string         `json:"decided_by,omitempty"`
	Score    float64        `json:"score,omitempty"`
	Results  []FilterResult `json:"results,omitempty"`
}

// Log appends records; safe for concurrent use.
type Log struct {
	path    string
	maxSize int64
	mu      sync.Mutex
	f       *os.File
	size    int64
}

// Open opens (creating) the log at path.
func Open(path string, maxSize int64) (*Log, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("rejectlog: %w", err)
	}
	l := &Log{path: path, maxSize: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("rejectlog: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("rejectlog: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Add appends one record. The log is an aid, not a guarantee: it is not
// fsync'd per record (a refusal loses no mail).
func (l *Log) Add(r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rejectlog: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("rejectlog: closed")
	}
	if l.size+int64(len(line)) > l.maxSize {
		l.f.Close()
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rejectlog: rotate: %w", err)
		}
		if err := l.open(); err != nil {
			l.f = nil
			return err
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	return err
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Query selects records. Zero fields match everything; string fields match
// case-insensitively as substrings.
type Query struct {
	Since  time.Time
	Until  time.Time // records at or before it; zero: no end
	Client string
	From   string
	Rcpt   string
	Filter string // a filter that took part
	Text   string // anywhere in the record
	Limit  int    // newest N; 0 = all
}

func (q Query) match(r *Record, raw string) bool {
	has := func(hay, needle string) bool {
		return needle == "" || strings.Contains(strings.ToLower(hay), strings.ToLower(needle))
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && r.Time.After(q.Until) {
		return false
	}
	if !has(r.Client, q.Client) || !has(r.From, q.From) || !has(raw, q.Text) {
		return false
	}
	if q.Rcpt != "" && !has(strings.Join(r.Rcpts, " "), q.Rcpt) {
		return false
	}
	if q.Filter != "" {
		found := has(r.Decider, q.Filter)
		for _, fr := range r.Results {
			found = found || has(fr.Filter, q.Filter)
		}
		if !found {
			return false
		}
	}
	return true
}

// Search reads the log (the rotated generation first) and returns the
// matching records, oldest first. Lines that do not parse are skipped.
func Search(path string, q Query) ([]Record, error) {
	var out []Record
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rejectlog: %w", err)
		}
		err = scan(f, func(raw string, r *Record) {
			if q.match(r, raw) {
				out = append(out, *r)
			}
		})
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	// Concurrent sessions append in finishing order; report by time.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, nil
}

func scan(r io.Reader, fn func(raw string, rec *Record)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		var rec Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		fn(sc.Text(), &rec)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("rejectlog: %w", err)
	}
	return nil
}
