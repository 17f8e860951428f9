package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"postern/gateway/delivery"
)

// noteDue records that message id is due at due (zero: now).
func (q *Queue) noteDue(id string, due time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.index.note(id, due)
}

// dueTime is when a message next needs the worker: the earliest
// NextAttempt of its pending recipients; now when a bounce was requested
// or nothing is pending (a crash left a finished message to remove).
func dueTime(se *spoolEnvelope) time.Time {
	if se.BounceRequested {
		return time.Time{}
	}
	var due time.Time
	pending := false
	for _, r := range se.Rcpts {
		if r.Status != delivery.StatusPending {
			continue
		}
		if !pending || r.NextAttempt.Before(due) {
			due = r.NextAttempt
		}
		pending = true
	}
	return due
}

// rescan reads every envelope in the spool into the index, and forgets
// messages that are gone (deleted by another process) unless they were
// noted after the scan began (an Enqueue racing the scan).
func (q *Queue) rescan() error {
	began := time.Now()
	entries, err := os.ReadDir(q.paths.spool)
	if err != nil {
		return fmt.Errorf("queue: scan %s: %w", q.paths.spool, err)
	}
	seen := make(map[string]bool, len(entries)/2)
	defer func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		for id, e := range q.index.entries {
			if !seen[id] && e.state != stateInFlight && e.noted.Before(began) {
				q.index.forget(e)
			}
		}
	}()
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), envSuffix)
		if !ok || !validID(id) {
			continue
		}
		seen[id] = true
		se, err := q.paths.readEnvelope(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			// The worker moves a corrupt envelope aside and logs it.
			q.noteDue(id, time.Time{})
			continue
		}
		if se.Held && !se.BounceRequested {
			delete(seen, id) // on hold: out of the schedule until released
			continue
		}
		q.noteDue(id, dueTime(se))
	}
	return nil
}

// readKickFile returns the kick file's content; admin commands rewrite it
// to wake the running queue.
func (q *Queue) readKickFile() string {
	b, _ := os.ReadFile(filepath.Join(q.paths.root, kickFileName))
	return string(b)
}

// Run is the scheduler: it delivers due messages until ctx ends, then
// waits up to Options.DrainTimeout for deliveries in flight before
// cancelling them, and returns when every delivery goroutine has ended.
// It notices Enqueue and Kick at once, and admin commands from other
// processes (through the kick file, polled every 500ms) within a second.
// It returns nil after a shutdown, or an error if the spool is unreadable.
func (q *Queue) Run(ctx context.Context) error {
	// One scheduler per spool: a second one would double the load on
	// every destination and race the first for each message.
	runLock, err := os.OpenFile(filepath.Join(q.paths.root, runLockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("queue: run: %w", err)
	}
	defer runLock.Close()
	if err := q.paths.ownLikeSpool(runLock); err != nil {
		return err
	}
	if err := unix.Flock(int(runLock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("queue: run: %w", ErrAlreadyRunning)
		}
		return fmt.Errorf("queue: run: lock: %w", err)
	}
	kickState := q.readKickFile() // before the scan: a later kick is not missed
	if err := q.rescan(); err != nil {
		return err
	}
	deliverCtx, cancelDeliveries := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeliveries()
	slots := make(chan struct{}, q.opt.Concurrency)
	var wg sync.WaitGroup

	poll := time.NewTicker(q.pollInterval)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastCleanup := time.Now()

	for {
		next := q.dispatch(deliverCtx, slots, &wg)
		wait := time.Hour
		if !next.IsZero() {
			wait = min(max(next.Sub(q.opt.Now()), 0), time.Hour)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			q.log.Info("queue stopping; waiting for deliveries in flight", "drain", q.opt.DrainTimeout)
			drained := make(chan struct{})
			go func() { wg.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-time.After(q.opt.DrainTimeout):
				cancelDeliveries()
				<-drained
			}
			return nil
		case <-q.kickCh:
		case <-timer.C:
		case <-poll.C:
			if s := q.readKickFile(); s != kickState {
				kickState = s
				if err := q.rescan(); err != nil {
					q.log.Error("rescan after kick", "err", err)
				}
			}
			if time.Since(lastCleanup) > 10*time.Minute {
				lastCleanup = time.Now()
				if err := q.recoverSpool(false); err != nil {
					q.log.Error("spool cleanup", "err", err)
				}
			}
		}
	}
}

// dispatch starts a worker for each due message while slots are free,
// oldest due first. It returns the earliest future due time, or zero when
// there is none (or when due work waits for a slot: a finishing worker
// kicks the loop).
func (q *Queue) dispatch(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) time.Time {
	now := q.opt.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if next := q.index.nextDue(); len(q.index.due) == 0 || next.After(now) {
			return next
		}
		select {
		case slots <- struct{}{}:
		default:
			return time.Time{}
		}
		e := q.index.popDue(now)
		wg.Add(1)
		go func() {
			defer wg.Done()
			nextDue, keep, wait := q.processMessage(ctx, e.id)
			<-slots
			q.mu.Lock()
			q.index.done(e, keep, nextDue, wait, func(d string) bool { return q.domainBusy[d] >= q.opt.PerDomain })
			q.mu.Unlock()
			q.Kick()
		}()
	}
}

// fileMessage is a spooled message as a delivery.Message.
type fileMessage struct {
	f    *os.File
	size int64
}

func (m fileMessage) ReadAt(p []byte, off int64) (int, error) { return m.f.ReadAt(p, off) }
func (m fileMessage) Size() int64                             { return m.size }

// pass is one look at one message: the deliveries of its due recipients
// and what they lead to.
type pass struct {
	q   *Queue
	se  *spoolEnvelope
	msg delivery.Message

	mu      sync.Mutex // se and the lists below, shared by the groups
	changed bool       // se differs from the file
	// Envelope writes of concurrent groups are coalesced: a group whose
	// results arrive while a write is in progress is covered by the next
	// one (generation numbers, writes under wrote).
	wrote           *sync.Cond
	writing         bool
	gen, writtenGen int
	waitDomains     []string // destinations skipped because all their slots were busy
	failed          []dsnRecipient
	delayed         []dsnRecipient
	delivered       []dsnRecipient
}

// processMessage runs one pass over message id under its lock. It returns
// when the message is next due, or keep=false when it left the queue, and
// the destinations it could not start for lack of a free slot.
func (q *Queue) processMessage(ctx context.Context, id string) (next time.Time, keep bool, wait []string) {
	retryLater := func(err error) (time.Time, bool, []string) {
		q.log.Error("queue pass failed; retrying in a minute", "id", id, "err", err)
		return q.opt.Now().Add(time.Minute), true, nil
	}
	f, err := q.paths.lockMessage(ctx, id, lockWait)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return retryLater(err)
	}
	defer f.Close() // releases the lock
	se, err := q.paths.readEnvelope(id)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, false, nil // deleted, or finished before a crash
	}
	if errors.Is(err, ErrCorruptEnvelope) {
		q.log.Error("corrupt envelope moved to corrupt/", "id", id, "err", err)
		for _, suffix := range []string{envSuffix, msgSuffix} {
			os.Rename(filepath.Join(q.paths.spool, id+suffix), filepath.Join(q.paths.corrupt, id+suffix))
		}
		return time.Time{}, false, nil
	}
	if err != nil {
		return retryLater(err)
	}
	info, err := f.Stat()
	if err != nil {
		return retryLater(fmt.Errorf("queue %s: stat message: %w", id, err))
	}
	if se.Held && !se.BounceRequested {
		return time.Time{}, false, nil // put on hold since it was scheduled
	}
	p := &pass{q: q, se: se, msg: fileMessage{f: f, size: info.Size()}}
	p.wrote = sync.NewCond(&p.mu)
	now := q.opt.Now()

	if se.BounceRequested {
		p.cancelPending(now)
	} else {
		p.deliverDue(ctx, now)
	}
	if err := p.finish(); err != nil {
		return retryLater(err)
	}
	for _, r := range se.Rcpts {
		if r.Status == delivery.StatusPending {
			return dueTime(se), true, p.waitDomains
		}
	}
	if err := q.paths.removeMessage(id); err != nil {
		return retryLater(err)
	}
	q.log.Info("message done, removed from queue", "id", id)
	return time.Time{}, false, nil
}

// recipientDomain is the lower-cased domain of addr, the key by which
// remote recipients are grouped and limited.
func recipientDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// deliverDue delivers every due pending recipient: the local ones in one
// call to Options.Local, the remote ones in one call per domain to
// Options.Remote, the groups in parallel, each domain within PerDomain.
func (p *pass) deliverDue(ctx context.Context, now time.Time) {
	var local []int
	remote := map[string][]int{}
	var domains []string
	for i, r := range p.se.Rcpts {
		if r.Status != delivery.StatusPending || r.NextAttempt.After(now) {
			continue
		}
		if r.Local {
			local = append(local, i)
			continue
		}
		d := recipientDomain(r.Addr)
		if _, ok := remote[d]; !ok {
			domains = append(domains, d)
		}
		remote[d] = append(remote[d], i)
	}
	var wg sync.WaitGroup
	if len(local) > 0 {
		wg.Go(func() { p.deliverGroup(ctx, p.q.opt.Local, false, "", local) })
	}
	for _, d := range domains {
		wg.Go(func() { p.deliverGroup(ctx, p.q.opt.Remote, true, d, remote[d]) })
	}
	wg.Wait()
}

// deliverGroup makes one Deliver call for the recipients idx (one domain,
// or all local ones), records the results and writes the envelope.
func (p *pass) deliverGroup(ctx context.Context, d delivery.Deliverer, remote bool, domain string, idx []int) {
	q := p.q
	select {
	case q.callSlots <- struct{}{}:
		defer func() { <-q.callSlots }()
	case <-ctx.Done():
		return // shutting down: the recipients stay due
	}
	if remote {
		if !q.tryAcquireDomain(domain) {
			// All slots busy: these recipients stay due; the scheduler
			// comes back when the destination has room.
			p.mu.Lock()
			p.waitDomains = append(p.waitDomains, domain)
			p.mu.Unlock()
			return
		}
		defer q.releaseDomain(domain)
	}
	p.mu.Lock()
	env := p.se.Envelope
	env.Rcpts = slices.Clone(p.se.Rcpts)
	rcpts := make([]delivery.Recipient, len(idx))
	for k, i := range idx {
		rcpts[k] = p.se.Rcpts[i]
		rcpts[k].DeliveryKey = fmt.Sprintf("%s.%d", p.se.ID, i)
	}
	p.mu.Unlock()

	results := q.callDeliverer(ctx, d, &env, rcpts, p.msg)
	now := q.opt.Now()

	p.mu.Lock()
	defer p.mu.Unlock()
	for k, i := range idx {
		p.record(i, results[k], now)
	}
	// Delivered recipients are written at once, so a crash now does not
	// deliver them again. Failures become final in finish, after their DSN.
	p.persist()
}

// persist writes the envelope with every result recorded so far and
// returns when a write that includes them is done (p.mu held; released
// while writing). Groups finishing during a write share the next one, so
// a message with recipients at 500 domains is not rewritten 500 times.
func (p *pass) persist() {
	p.gen++
	mine := p.gen
	for p.writtenGen < mine {
		if p.writing {
			p.wrote.Wait()
			continue
		}
		p.writing = true
		target := p.gen
		data, err := encodeEnvelope(p.se)
		if err == nil {
			p.mu.Unlock()
			err = p.q.paths.writeEnvelopeData(p.se.ID, data)
			p.mu.Lock()
		}
		p.writing = false
		p.writtenGen = target
		if err != nil {
			// finish writes again (changed stays true).
			p.q.log.Error("writing envelope after delivery", "id", p.se.ID, "err", err)
		} else if p.gen == target {
			p.changed = false
		}
		p.wrote.Broadcast()
	}
}

// callDeliverer calls d and guarantees one result per recipient: a
// missing Deliverer, a short answer or a panic are temporary failures.
func (q *Queue) callDeliverer(ctx context.Context, d delivery.Deliverer, env *delivery.Envelope, rcpts []delivery.Recipient, msg delivery.Message) (results []delivery.Result) {
	tempFail := func(err error) []delivery.Result {
		out := make([]delivery.Result, len(rcpts))
		for i := range out {
			out[i] = delivery.Result{Err: err, Status: "4.3.0", Diagnostic: "x-postern; " + err.Error()}
		}
		return out
	}
	if d == nil {
		return tempFail(errors.New("no deliverer configured for these recipients"))
	}
	defer func() {
		if v := recover(); v != nil {
			q.log.Error("deliverer panicked", "id", env.ID, "panic", v)
			results = tempFail(fmt.Errorf("internal error in delivery: %v", v))
		}
	}()
	results = d.Deliver(ctx, env, rcpts, msg)
	if len(results) != len(rcpts) {
		short := tempFail(fmt.Errorf("internal error: deliverer answered %d results for %d recipients", len(results), len(rcpts)))
		copy(short, results)
		results = short
	}
	return results
}

// tryAcquireDomain takes one of the PerDomain slots of domain if one is free.
func (q *Queue) tryAcquireDomain(domain string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.domainBusy[domain] >= q.opt.PerDomain {
		return false
	}
	q.domainBusy[domain]++
	return true
}

// releaseDomain frees a slot and wakes the scheduler for as many of the
// messages waiting for it as there are free slots.
func (q *Queue) releaseDomain(domain string) {
	q.mu.Lock()
	if q.domainBusy[domain]--; q.domainBusy[domain] <= 0 {
		delete(q.domainBusy, domain)
	}
	q.index.release(domain, q.opt.PerDomain-q.domainBusy[domain])
	q.mu.Unlock()
	q.Kick()
}

// record applies one Deliver result to recipient i (p.mu held).
func (p *pass) record(i int, res delivery.Result, now time.Time) {
	q, se := p.q, p.se
	r := &se.Rcpts[i]
	p.changed = true
	r.Attempts++
	r.LastAttempt = now
	r.RemoteMTA = cleanText(res.RemoteMTA, 255)
	soft := q.opt.SoftBounce != nil && q.opt.SoftBounce()
	if soft && res.Err != nil && res.Permanent {
		q.log.Warn("soft bounce: permanent failure kept in the queue", "id", se.ID, "to", r.Addr, "status", res.Status)
		res.Permanent = false
	}
	q.log.Info("delivery attempt", "id", se.ID, "to", r.Addr, "local", r.Local,
		"outcome", outcome(res), "status", res.Status, "result", cleanText(res.Diagnostic, 300),
		"remote_mta", res.RemoteMTA, "attempts", r.Attempts, "queued_for", now.Sub(se.Received).Round(time.Second))
	li := 0
	if r.Local {
		li = 1
	}
	switch {
	case res.Err == nil:
		q.stats.deliveries[li][0].Add(1)
	case res.Permanent:
		q.stats.deliveries[li][2].Add(1)
	default:
		q.stats.deliveries[li][1].Add(1)
	}
	if res.Err == nil {
		r.Status = delivery.StatusDelivered
		r.LastResult = cleanText(res.Diagnostic, 1000)
		if r.LastResult == "" {
			r.LastResult = "delivered"
		}
		// Success notices: final local delivery is ours to report; a
		// remote one belongs to the next hop, which got NOTIFY=SUCCESS,
		// unless it offered no DSN: then the sender hears "relayed"
		// from us (RFC 3461 6.2.2).
		if r.Notify.Success(se.From) {
			switch {
			case r.Local:
				p.delivered = append(p.delivered, dsnRecipient{index: i, action: "delivered", status: statusOr(res.Status, "2.0.0")})
			case res.Relayed:
				p.delivered = append(p.delivered, dsnRecipient{index: i, action: "relayed", status: statusOr(res.Status, "2.0.0")})
			}
		}
		return
	}
	diag := res.Diagnostic
	if diag == "" {
		diag = "x-postern; " + res.Err.Error()
	}
	r.LastResult = cleanText(diag, 1000)
	// Until finish marks it failed, a failed recipient looks deferred, so
	// a crash before its DSN is queued only retries it.
	r.NextAttempt = q.nextAttempt(se, r.Attempts, now)
	expiry := se.Received.Add(q.opt.Lifetime)
	switch {
	case res.Permanent:
		p.failed = append(p.failed, dsnRecipient{index: i, action: "failed", status: statusOr(res.Status, "5.0.0")})
	case !now.Before(expiry) && !soft:
		p.failed = append(p.failed, dsnRecipient{index: i, action: "failed", status: "4.4.7", expired: true})
	default:
		if !r.DelayNotified && now.Sub(se.Received) >= q.opt.DelayNotice && notifyDelay(se.From, r.Notify) {
			p.delayed = append(p.delayed, dsnRecipient{index: i, action: "delayed", status: statusOr(res.Status, "4.0.0"), willRetryUntil: expiry})
		}
	}
}

// cancelPending fails every pending recipient at the administrator's
// request (postern queue bounce).
func (p *pass) cancelPending(now time.Time) {
	for i := range p.se.Rcpts {
		r := &p.se.Rcpts[i]
		if r.Status != delivery.StatusPending {
			continue
		}
		r.LastResult = "x-postern; delivery cancelled by the administrator"
		r.LastAttempt = now
		p.failed = append(p.failed, dsnRecipient{index: i, action: "failed", status: "5.0.0", cancelled: true})
	}
	if len(p.failed) == 0 {
		p.se.BounceRequested = false // nothing left to bounce
		p.changed = true
	}
}

// finish sends the pass's DSNs, then makes the failures and delay notices
// final and writes the envelope. A failure DSN that cannot be queued
// leaves its recipients as they were (deferred, or still to be bounced)
// and makes finish fail, so the message is looked at again in a minute.
func (p *pass) finish() error {
	q, se := p.q, p.se
	// Queueing a DSN is local disk work; finish it even while shutting down.
	ctx := context.Background()
	var dsnErr error
	if len(p.failed) > 0 {
		if err := q.sendDSN(ctx, se, dsnFailure, p.failed, p.msg); err != nil {
			dsnErr = fmt.Errorf("queueing failure DSN; recipients stay deferred: %w", err)
		} else {
			for _, d := range p.failed {
				se.Rcpts[d.index].Status = delivery.StatusFailed
			}
			se.BounceRequested = false
			p.changed = true
		}
	}
	if len(p.delayed) > 0 {
		if err := q.sendDSN(ctx, se, dsnDelay, p.delayed, p.msg); err != nil {
			q.log.Error("queueing delay DSN", "id", se.ID, "err", err)
		} else {
			for _, d := range p.delayed {
				se.Rcpts[d.index].DelayNotified = true
			}
			p.changed = true
		}
	}
	if len(p.delivered) > 0 {
		if err := q.sendDSN(ctx, se, dsnSuccess, p.delivered, p.msg); err != nil {
			q.log.Error("queueing success DSN", "id", se.ID, "err", err)
		}
	}
	if p.changed {
		if err := q.paths.writeEnvelope(se); err != nil {
			return errors.Join(dsnErr, err)
		}
	}
	return dsnErr
}

// outcome names a result for the log, as mail admins grep for it.
func outcome(res delivery.Result) string {
	switch {
	case res.Err == nil:
		return "sent"
	case res.Permanent:
		return "bounced"
	default:
		return "deferred"
	}
}

func statusOr(s, def string) string {
	if validStatusCode(s) {
		return s
	}
	return def
}

// validStatusCode checks an RFC 3463 code: class.subject.detail.
func validStatusCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// cleanText makes s safe to keep and to put in a DSN field: controls
// become spaces, runs of spaces collapse, at most max bytes (on a rune
// boundary).
func cleanText(s string, max int) string {
	var b bytes.Buffer
	space := false
	for _, r := range strings.ToValidUTF8(s, "?") {
		if r < 0x20 || r == 0x7f || r == ' ' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+len(string(r)) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
