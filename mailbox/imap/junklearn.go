package imap

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"postern/mailbox/maildir"
)

// Learning from the user's filing, as Dovecot with imapsieve and rspamd
// does: a message a user COPYs or MOVEs into the Junk folder is spam to
// them, one taken out of Junk into any folder but Trash is ham
// (docs/bayes.md, "Learning from users"). The IMAP server only notices
// the filing and hands the message to Options.JunkLearn; what is learned,
// and where, is the caller's.
//
// The learning runs beside the sessions, never in front of the tagged
// response: one worker per server reads each message from its Maildir
// and calls the hook, from a bounded queue that drops (with a log line)
// what does not fit, so that a user moving ten thousand messages into
// Junk costs a bounded amount of memory and no one's latency.

const (
	// maxJunkLearnSize skips larger messages: the bayes check reads
	// little of a message, and a large one teaches little and costs much.
	maxJunkLearnSize = 1 << 20
	// junkQueueLen bounds the messages waiting to be learned. The queue
	// holds names, not bytes: each message is read when its turn comes.
	junkQueueLen = 1024
	// junkLearnTimeout bounds one call of the hook, so that a stuck store
	// does not hold the queue for ever.
	junkLearnTimeout = 30 * time.Second
)

// junkJob is one message to learn: its key in the folder it was filed
// into (the source may be gone already, after MOVE).
type junkJob struct {
	login  string
	spam   bool
	folder *maildir.Folder
	key    string
}

// junkLearner is a server's queue and worker. The worker starts with the
// first job and ends at close.
type junkLearner struct {
	learn func(ctx context.Context, login string, msg []byte, spam bool) error
	log   *slog.Logger

	mu      sync.Mutex
	queue   chan junkJob
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

func newJunkLearner(learn func(context.Context, string, []byte, bool) error, log *slog.Logger) *junkLearner {
	ctx, cancel := context.WithCancel(context.Background())
	return &junkLearner{
		learn:  learn,
		log:    log,
		queue:  make(chan junkJob, junkQueueLen),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
}

// enqueue hands jobs to the worker without waiting: what does not fit in
// the queue, or comes after close, is dropped and logged.
func (l *junkLearner) enqueue(jobs []junkJob) {
	if len(jobs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.log.Warn("imap: junk learning: server shutting down, not learned", "user", jobs[0].login, "messages", len(jobs))
		return
	}
	if !l.started {
		l.started = true
		go l.run()
	}
	dropped := 0
	for _, j := range jobs {
		select {
		case l.queue <- j:
		default:
			dropped++
		}
	}
	if dropped > 0 {
		l.log.Warn("imap: junk learning: queue full, not learned", "user", jobs[0].login, "messages", dropped, "queue", junkQueueLen)
	}
}

func (l *junkLearner) run() {
	defer close(l.done)
	for j := range l.queue {
		if l.ctx.Err() != nil {
			continue // shutdown gave up waiting: drain without learning
		}
		l.learnOne(j)
	}
}

// learnOne reads one message, at most maxJunkLearnSize bytes of it, and
// calls the hook. A message expunged meanwhile is not an error.
func (l *junkLearner) learnOne(j junkJob) {
	msg, err := j.folder.ReadMessage(j.key, nil, maxJunkLearnSize+1)
	if errors.Is(err, maildir.ErrNoMessage) {
		l.log.Debug("imap: junk learning: message gone before it was read", "user", j.login, "key", j.key)
		return
	}
	if err != nil {
		l.log.Warn("imap: junk learning: read message", "user", j.login, "err", err)
		return
	}
	if len(msg) > maxJunkLearnSize {
		l.log.Debug("imap: junk learning: message too large, skipped", "user", j.login, "key", j.key)
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, junkLearnTimeout)
	defer cancel()
	if err := l.learn(ctx, j.login, msg, j.spam); err != nil {
		l.log.Warn("imap: junk learning failed", "user", j.login, "spam", j.spam, "err", err)
	}
}

// close stops taking jobs and lets the worker learn what is queued until
// ctx ends; then the call in progress is cancelled, the rest dropped. It
// returns when the worker has ended.
func (l *junkLearner) close(ctx context.Context) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	started := l.started
	close(l.queue)
	l.mu.Unlock()
	if !started {
		l.cancel()
		return
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		n := len(l.queue)
		l.cancel()
		<-l.done
		if n > 0 {
			l.log.Warn("imap: junk learning: shutdown before the queue was learned", "messages", n)
		}
	}
	l.cancel()
}

// junkFiling reports what filing messages from the selected mailbox into
// dst teaches: spam into Junk, ham out of Junk except into Trash. Only
// the user's own folders have special uses, as LIST shows them: another
// user's folder called Junk, shared with ACLs or through the filesystem,
// is not this user's Junk (nor is a shared Trash theirs).
func (s *session) junkFiling(dst *mailboxRef) (spam, learn bool) {
	if s.srv.junk == nil || s.sel == nil {
		return false, false
	}
	srcUse := ""
	if s.ownFolder(s.sel.ref) {
		srcUse = specialUseAttr(s.sel.folder.Name())
	}
	dstUse := ""
	if s.ownFolder(dst) {
		dstUse = specialUseAttr(dst.folder)
	}
	switch {
	case dstUse == `\Junk` && srcUse != `\Junk`:
		return true, true
	case srcUse == `\Junk` && dstUse != `\Junk` && dstUse != `\Trash`:
		return false, true
	}
	return false, false
}

// ownFolder reports whether ref is in the user's own Maildir, not a
// folder shared by another user or through the filesystem.
func (s *session) ownFolder(ref *mailboxRef) bool {
	return ref != nil && ref.fs == nil && !ref.shared && ref.owner == s.user
}
