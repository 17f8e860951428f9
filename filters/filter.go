// Package filters is the SMTP-time spam-policy pipeline. A filter is a
// check that looks at the session at one or more stages (connect, HELO,
// MAIL, RCPT, DATA) and returns a Result: a verdict (accept, reject,
// tempfail, quarantine, or no opinion), a score, a reason, and what it wants
// recorded (trace header fields, Authentication-Results parts, variables for
// the admin's rules). The Pipeline runs the configured filters per stage,
// applies each filter's mode (an admin can deploy a check in watch-only mode
// first), adds up the scores, short-circuits on a final verdict, and hands
// every result to the rules engine and the rejection log.
//
// Each standard lives in a package of its own (filters/spf, filters/dnsbl,
// filters/dkim, filters/dmarc, filters/greylist, ...); adding one never
// touches the SMTP server.
//
// CONTRACT FILE: filter packages and the gateway code against these types.
// Add; do not change without telling every user.
package filters

import (
	"context"
	"crypto/tls"
	"io"
	"net/netip"
)

// Stage is a point in the SMTP dialogue where filters run.
type Stage int

const (
	StageConnect Stage = iota // before the banner
	StageHelo                 // after HELO/EHLO
	StageMail                 // after MAIL FROM
	StageRcpt                 // after each RCPT TO
	StageData                 // after the message is received, before 250
)

func (s Stage) String() string {
	return [...]string{"connect", "helo", "mail", "rcpt", "data"}[s]
}

// Verdict is what a filter (or the pipeline) decides.
type Verdict int

const (
	NoOpinion  Verdict = iota // nothing to say; only the score counts
	Accept                    // a final "yes" (e.g. a whitelist hit): later filters of the stage are skipped
	Quarantine                // accept, but file into the recipient's Junk folder
	Tempfail                  // 4xx
	Reject                    // 5xx
)

func (v Verdict) String() string {
	return [...]string{"none", "accept", "quarantine", "tempfail", "reject"}[v]
}

// Result is one filter's answer at one stage.
type Result struct {
	Filter  string // the filter's name, e.g. "spf", "dnsbl:zen.example"
	Verdict Verdict
	Score   float64 // added to the transaction's total (positive = spammy)

	// For Reject and Tempfail: the SMTP reply. Zero values get defaults
	// (550 5.7.1 / 451 4.7.1) and Message falls back to Reason.
	Code     int
	Enhanced string
	Message  string // text the client sees

	Reason string // for the log and the rejection log: what was found and why it matters

	// Hold, with Quarantine: the queued copies (recipients the message is
	// relayed to, programs, files) are also held in the queue until an
	// administrator releases them, as Postfix's HOLD does for a milter's
	// quarantine. Without it, a quarantine files local copies into Junk
	// and lets relayed ones go on with the filters' header fields.
	Hold bool

	// HeaderFields are complete header fields to add to an accepted message
	// ("Received-SPF: pass (...) ..."), without the trailing CRLF.
	HeaderFields []string
	// AuthResults are RFC 8601 resinfo parts ("spf=pass smtp.mailfrom=example.org")
	// that the gateway joins into one Authentication-Results field.
	AuthResults []string
	// Vars are exposed to the admin's rules, e.g. {"SPF": "pass"}.
	Vars map[string]string

	// Rewritten, at StageData, is the whole message as the filter changed
	// it (a milter changing or deleting header fields, or replacing the
	// body); nil leaves the message as it was. The filters after it see
	// the rewritten message, and it is what gets delivered.
	Rewritten []byte
	// Envelope holds the filter's changes to the sender and recipients
	// (a milter's CHGFROM, ADDRCPT, DELRCPT; a policy server's REDIRECT
	// and BCC); nil for none. Those given at MAIL or RCPT apply to the
	// message at the end of DATA, unless that command is refused.
	Envelope *EnvelopeChange

	// DeferIfPermit and DeferIfReject are conditional deferrals, as
	// access(5)'s DEFER_IF_PERMIT and DEFER_IF_REJECT (a Postfix policy
	// server's answers), given with a NoOpinion verdict: the later
	// filters of the stage still run. DeferIfPermit defers the stage with
	// its reply unless a later filter rejects (explicit or implicit
	// permit: nothing refused, or an Accept); one given at StageMail
	// defers each RCPT instead. DeferIfReject turns a later Reject of the
	// stage (including the score's at StageData) into its tempfail. The
	// first of each kind in a stage counts. See Pipeline.Run.
	DeferIfPermit *Reply
	DeferIfReject *Reply
}

// EnvelopeChange is a filter's change to the transaction's envelope.
type EnvelopeChange struct {
	From     *string  // the new reverse path ("" = null sender); nil keeps it
	AddRcpts []string // recipients to add, routed as if given with RCPT TO
	DelRcpts []string // RCPT TO addresses to remove, as the client gave them
	// Bcc are the recipients access(5)'s BCC asked to send one copy to:
	// the gateway adds the last one only, as Postfix 3.x, and logs the
	// others as ignored.
	Bcc []string
	// Redirect, when set, is the one address the message goes to instead
	// of all its recipients (access(5)'s REDIRECT); a later one wins.
	Redirect string
}

// Merge adds o's changes after e's and returns the result (e, or a new
// change when e is nil): a later sender and redirect win, recipients
// accumulate in order.
func (e *EnvelopeChange) Merge(o *EnvelopeChange) *EnvelopeChange {
	if o == nil {
		return e
	}
	if e == nil {
		e = &EnvelopeChange{}
	}
	if o.From != nil {
		e.From = o.From
	}
	if o.Redirect != "" {
		e.Redirect = o.Redirect
	}
	e.AddRcpts = append(e.AddRcpts, o.AddRcpts...)
	e.DelRcpts = append(e.DelRcpts, o.DelRcpts...)
	e.Bcc = append(e.Bcc, o.Bcc...)
	return e
}

// Session is what filters may look at: the facts of the SMTP session and
// transaction so far. Filters must treat it as read-only.
type Session struct {
	ID         string
	Listener   string
	ClientIP   netip.Addr
	ClientPort uint16
	ClientName string // verified reverse DNS name, "" if none or not looked up
	HELO       string
	ESMTP      bool
	TLS        bool
	AuthUser   string            // "" unless authenticated
	AuthMech   string            // the SASL mechanism AuthUser logged in with
	Access     map[string]string // variables from smtpaccess for this client

	// TLSState is the connection's TLS state (version, cipher, the
	// client's certificate); nil without TLS.
	TLSState *tls.ConnectionState
	// TLSClientVerified: the certificate the client presented chains to
	// the certificate authorities configured for client certificates
	// (tlsclientcerts).
	TLSClientVerified bool

	EarlyTalker         bool // spoke before the banner
	PipeliningViolation bool

	From  string   // MAIL FROM reverse path ("" = null sender)
	Rcpts []string // accepted recipients so far (at StageRcpt: before the current one)
	// Accounts are the local accounts (auth.Account.Name) the accepted
	// recipients resolved to, each once, in order: a check that keeps
	// per-user data (bayes's per-user models) knows whose mail it is.
	Accounts []string

	Results []Result // every result so far in this session/transaction, in order
	Score   float64  // the total so far

	// DeferIfPermit is the deferral a filter asked for at StageMail
	// (Result.DeferIfPermit), which the pipeline applies to each RCPT of
	// the transaction; the gateway clears it with the transaction.
	DeferIfPermit *Decision
}

// Message is the received message at StageData: the raw bytes as the client
// sent them (CRLF line endings), readable at any offset.
type Message interface {
	io.ReaderAt
	Size() int64
}

// A filter implements Name and one or more of the stage interfaces below.
// The pipeline calls a filter only at the stages whose interface it
// implements. Every method must honour ctx (it carries the stage's time
// limit) and must not panic on hostile input.
type Filter interface {
	Name() string
}

type ConnectChecker interface {
	CheckConnect(ctx context.Context, s *Session) Result
}

type HeloChecker interface {
	CheckHelo(ctx context.Context, s *Session) Result
}

type MailChecker interface {
	CheckMail(ctx context.Context, s *Session) Result
}

type RcptChecker interface {
	CheckRcpt(ctx context.Context, s *Session, rcpt string) Result
}

type DataChecker interface {
	CheckData(ctx context.Context, s *Session, msg Message) Result
}

// Outcome is how a transaction ended, told to the filters that learn from
// history (filters/reputation): the message accepted (Accept) or filed
// into Junk (Quarantine), or a command refused (Reject, Tempfail) at
// Stage, decided by Filter ("score" for the spamscore thresholds). A
// connection refused before any transaction is told as one at
// StageConnect or StageHelo.
type Outcome struct {
	Stage   Stage
	Verdict Verdict
	Filter  string
	// Score is the transaction's total without the told filter's own
	// (weighted) part, so that a filter's score never feeds back into what
	// it learns.
	Score float64
}

// OutcomeObserver is a filter that learns from outcomes. The gateway
// tells the pipeline (Pipeline.Tell) once per transaction of its end — a
// refusal (5xx) or the message stored — and of each deferral (4xx) as it
// happens, and only about the clients the pipeline checks: never about
// authenticated users' or relay clients' mail. A filter in ignore mode is
// told too, so that a check being watched builds its history.
type OutcomeObserver interface {
	Outcome(ctx context.Context, s *Session, o Outcome)
}

// Closer is a filter that holds resources between sessions (a policy
// server's kept connections). When a reload replaces the filters, the old
// ones are closed: Close lets go of what is idle now and makes the filter
// let go of the rest when the sessions still using it are done with it;
// it must not break those sessions, and may be called more than once.
type Closer interface {
	Close()
}

// Var returns the most recent value a result set for the variable name
// ("SPF", "FCRDNS_NAME", ...), or "".
func (s *Session) Var(name string) string {
	for i := len(s.Results) - 1; i >= 0; i-- {
		if v, ok := s.Results[i].Vars[name]; ok {
			return v
		}
	}
	return ""
}
