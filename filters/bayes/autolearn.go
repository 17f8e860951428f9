package bayes

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"postern/filters"
)

// Autolearn, as Rspamd's: the pipeline's verdict on a message teaches the
// global model when it is clear enough, without a user filing anything.
// CheckData remembers the message's digest and tokens; the outcome hook
// (filters.OutcomeObserver), told once per transaction after the
// pipeline decided, compares the total score without bayes's own part
// (so the classifier never teaches itself what it already said) with
// the setting's thresholds and hands the message to a worker. The
// learning is never on the SMTP reply path: the hook only queues, from a
// bounded queue that drops what does not fit. The gateway tells no
// outcome about authenticated or relay clients, and CheckData remembers
// nothing for them either, so outgoing mail never teaches the model.

const (
	// autolearnQueueLen bounds the messages waiting to be learned.
	autolearnQueueLen = 256
	// maxPending bounds the messages remembered between CheckData and
	// their outcome (a client that drops the connection after DATA is
	// told no outcome).
	maxPending = 1024
	// autolearnTimeout bounds one learn, so that a stuck store does not
	// hold the queue for ever.
	autolearnTimeout = 10 * time.Second
)

type autolearnJob struct {
	class  Class
	digest string
	tokens []string
	score  float64
}

type pendingMessage struct {
	digest string
	tokens []string
	at     time.Time
}

// pendingTTL: a message remembered longer than this had its outcome
// never told (a storage failure, a dropped connection); a full map drops
// such messages first.
const pendingTTL = 10 * time.Minute

type autolearner struct {
	model *Model
	log   *slog.Logger

	mu      sync.Mutex
	pending map[*filters.Session]pendingMessage
	queue   chan autolearnJob
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

func newAutolearner(m *Model, log *slog.Logger) *autolearner {
	ctx, cancel := context.WithCancel(context.Background())
	return &autolearner{model: m, log: log, pending: map[*filters.Session]pendingMessage{},
		queue: make(chan autolearnJob, autolearnQueueLen), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// remember keeps the message's digest and tokens for its outcome.
func (f *Filter) remember(s *filters.Session, msg filters.Message, toks []string) {
	if f.auto == nil || s.AuthUser != "" {
		return
	}
	digest, err := Digest(msg, msg.Size())
	if err != nil {
		return
	}
	a := f.auto
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if _, ok := a.pending[s]; !ok && len(a.pending) >= maxPending {
		for k, p := range a.pending {
			if now.Sub(p.at) > pendingTTL {
				delete(a.pending, k)
			}
		}
		if len(a.pending) >= maxPending {
			a.log.Debug("bayes: autolearn: too many messages waiting for their outcome, not remembered", "session", s.ID)
			return
		}
	}
	a.pending[s] = pendingMessage{digest: digest, tokens: toks, at: now}
}

// Outcome learns the message the transaction carried when the pipeline's
// score (without bayes's) is past an autolearn threshold.
func (f *Filter) Outcome(ctx context.Context, s *filters.Session, o filters.Outcome) {
	if f.auto == nil {
		return
	}
	a := f.auto
	a.mu.Lock()
	p, ok := a.pending[s]
	if o.Stage == filters.StageData || o.Verdict != filters.Tempfail {
		// The transaction is over (a deferral at RCPT leaves it open).
		delete(a.pending, s)
	}
	a.mu.Unlock()
	if !ok || o.Stage != filters.StageData || o.Verdict == filters.Tempfail || s.AuthUser != "" {
		return
	}
	var class Class
	switch al := f.cfg.Autolearn; {
	case o.Score >= al.Spam:
		class = Spam
	case o.Score <= al.Ham:
		class = Ham
	default:
		return
	}
	a.enqueue(autolearnJob{class: class, digest: p.digest, tokens: p.tokens, score: o.Score}, s.ID)
}

func (a *autolearner) enqueue(j autolearnJob, session string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	if !a.started {
		a.started = true
		go a.run()
	}
	select {
	case a.queue <- j:
	default:
		a.log.Warn("bayes: autolearn: queue full, not learned", "session", session, "queue", autolearnQueueLen)
	}
}

func (a *autolearner) run() {
	defer close(a.done)
	for j := range a.queue {
		if a.ctx.Err() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, autolearnTimeout)
		res, err := a.model.Learn(ctx, j.class, j.digest, j.tokens)
		cancel()
		if err != nil {
			a.log.Warn("bayes: autolearn failed", "class", j.class, "err", err)
			continue
		}
		a.log.Info("bayes: autolearned", "class", j.class, "score", j.score, "result", res.String())
	}
}

// close stops taking jobs; the worker learns what is queued and ends
// (a job in progress is bounded by autolearnTimeout).
func (a *autolearner) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	started := a.started
	close(a.queue)
	a.pending = map[*filters.Session]pendingMessage{}
	a.mu.Unlock()
	if started {
		<-a.done
	}
	a.cancel()
}
