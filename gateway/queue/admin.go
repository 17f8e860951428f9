package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"postern/gateway/delivery"
)

// Admin operations. They work on the spool directory directly, from any
// process, while the server runs: each takes the spool lock shared and the
// message's lock (so a delivery in progress finishes first, up to 30s),
// rewrites the envelope atomically, and rewrites the kick file, which the
// running queue polls every 500ms: it then rereads the spool and acts on
// the change within about a second.

// Summary is one queued message as List reports it.
type Summary struct {
	ID              string
	From            string
	Received        time.Time
	Size            int64 // bytes of the stored message
	Rcpts           []delivery.Recipient
	BounceRequested bool   // a bounce is waiting for the running queue
	Held            bool   // on hold (Hold) until released
	Quarantine      string // why a filter had it held (delivery.Envelope.Quarantine)
}

// Age is how long the message has been queued.
func (s Summary) Age(now time.Time) time.Duration { return now.Sub(s.Received) }

// List returns every message in the spool at dir, oldest first. Envelopes
// that cannot be read (corrupt, or removed while listing) are skipped.
func List(dir string) ([]Summary, error) {
	p := newSpoolPaths(dir)
	entries, err := os.ReadDir(p.spool)
	if err != nil {
		return nil, fmt.Errorf("queue: list %s: %w", dir, err)
	}
	var out []Summary
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), envSuffix)
		if !ok || !validID(id) {
			continue
		}
		se, err := p.readEnvelope(id)
		if err != nil {
			continue
		}
		info, err := os.Stat(p.msgPath(id))
		if err != nil {
			continue // half-removed: not in the queue
		}
		out = append(out, Summary{
			ID: id, From: se.From, Received: se.Received, Size: info.Size(),
			Rcpts: se.Rcpts, BounceRequested: se.BounceRequested, Held: se.Held,
			Quarantine: se.Quarantine,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Received.Equal(out[j].Received) {
			return out[i].Received.Before(out[j].Received)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Show returns the envelope of message id, with its recipients' state.
func Show(dir, id string) (*delivery.Envelope, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: show %q: %w", id, ErrBadID)
	}
	se, err := newSpoolPaths(dir).readEnvelope(id)
	if err != nil {
		return nil, err
	}
	return &se.Envelope, nil
}

// OpenMessage opens the stored message of id for reading (postern queue
// show --message, Postfix's postcat).
func OpenMessage(dir, id string) (*os.File, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: show %q: %w", id, ErrBadID)
	}
	f, err := os.Open(newSpoolPaths(dir).msgPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue %s: %w", id, ErrNotFound)
	}
	return f, err
}

// Retry makes every pending recipient of message id due now; "" means
// every message. The running queue notices within about a second.
func Retry(dir, id string) error {
	return adminEdit(dir, id, "retry", func(se *spoolEnvelope) bool {
		changed := false
		for i := range se.Rcpts {
			if r := &se.Rcpts[i]; r.Status == delivery.StatusPending && !r.NextAttempt.IsZero() {
				r.NextAttempt = time.Time{}
				changed = true
			}
		}
		return changed
	})
}

// Bounce fails every pending recipient of message id with a DSN to the
// sender ("delivery cancelled by the administrator"). It marks the
// request in the envelope; the running queue (or the next one to start)
// fails the recipients and queues the DSN, with its own host name and
// routing, within about a second.
func Bounce(dir, id string) error {
	if id == "" {
		return fmt.Errorf("queue: bounce: %w: an id is required", ErrBadID)
	}
	return adminEdit(dir, id, "bounce", func(se *spoolEnvelope) bool {
		se.BounceRequested = true
		return true
	})
}

// Hold puts message id on hold (Postfix's postsuper -h): the running
// queue leaves it alone, without delivery attempts, delay notices or
// expiry, until Release. A delivery in progress finishes first. Bounce
// and Delete still work on a held message.
func Hold(dir, id string) error {
	if id == "" {
		return fmt.Errorf("queue: hold: %w: an id is required", ErrBadID)
	}
	return adminEdit(dir, id, "hold", func(se *spoolEnvelope) bool {
		if se.Held {
			return false
		}
		se.Held = true
		return true
	})
}

// Release takes message id off hold and makes its pending recipients due
// now (Postfix's postsuper -H); one past its lifetime then expires as
// usual. A message not on hold is left as it is.
func Release(dir, id string) error {
	if id == "" {
		return fmt.Errorf("queue: release: %w: an id is required", ErrBadID)
	}
	return adminEdit(dir, id, "release", func(se *spoolEnvelope) bool {
		if !se.Held {
			return false
		}
		se.Held = false
		for i := range se.Rcpts {
			if r := &se.Rcpts[i]; r.Status == delivery.StatusPending {
				r.NextAttempt = time.Time{}
			}
		}
		return true
	})
}

// Delete removes message id from the queue without any notice.
func Delete(dir, id string) error {
	if !validID(id) {
		return fmt.Errorf("queue: delete %q: %w", id, ErrBadID)
	}
	p := newSpoolPaths(dir)
	lock, _, err := lockSpool(p, false)
	if err != nil {
		return err
	}
	defer lock.Close()
	f, err := p.lockMessage(context.Background(), id, lockWait)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := os.Stat(p.envPath(id)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue %s: %w", id, ErrNotFound)
	}
	if err := p.removeMessage(id); err != nil {
		return err
	}
	return kick(p)
}

// adminEdit applies edit to message id's envelope (every message when id
// is ""), under the message lock, then kicks the running queue.
func adminEdit(dir, id, what string, edit func(*spoolEnvelope) bool) error {
	if id != "" && !validID(id) {
		return fmt.Errorf("queue: %s %q: %w", what, id, ErrBadID)
	}
	p := newSpoolPaths(dir)
	lock, _, err := lockSpool(p, false)
	if err != nil {
		return err
	}
	defer lock.Close()
	ids := []string{id}
	if id == "" {
		all, err := List(dir)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, s := range all {
			ids = append(ids, s.ID)
		}
	}
	for _, id := range ids {
		err := editOne(p, id, edit)
		if errors.Is(err, ErrNotFound) && len(ids) > 1 {
			continue // delivered meanwhile
		}
		if err != nil {
			return fmt.Errorf("queue: %s: %w", what, err)
		}
	}
	return kick(p)
}

func editOne(p spoolPaths, id string, edit func(*spoolEnvelope) bool) error {
	f, err := p.lockMessage(context.Background(), id, lockWait)
	if err != nil {
		return err
	}
	defer f.Close()
	se, err := p.readEnvelope(id)
	if err != nil {
		return err
	}
	if !edit(se) {
		return nil
	}
	return p.writeEnvelope(se)
}

// kick rewrites the kick file with new content; the running queue polls it.
func kick(p spoolPaths) error {
	path := filepath.Join(p.root, kickFileName)
	content := fmt.Sprintf("%d %s\n", time.Now().UnixNano(), randomHex(4))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("queue: kick: %w", err)
	}
	defer f.Close()
	if err := p.ownLikeSpool(f); err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		return fmt.Errorf("queue: kick: %w", err)
	}
	return nil
}
