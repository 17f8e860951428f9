// Package bayes is a statistical content classifier: the "bayes" check.
// Users and administrators train it with messages they call spam or ham
// (postern bayes learn); it keeps, in the server's state store
// (filters/state: embedded, or Redis so that a cluster shares one model),
// for every token the number of spam and ham messages it appeared in,
// and the number of messages learned. A message is classified by the
// tokens it shares with what was learned: each token's spam probability
// (Paul Graham's ratio, smoothed as Gary Robinson proposes in "A
// Statistical Approach to the Spam Problem", 2003), the most interesting
// of them combined with Fisher's chi-squared method, as SpamBayes, Rspamd
// and SpamAssassin do. It says nothing until it has learned enough of
// both kinds (minlearns, as Rspamd's min_learns).
//
// Store layout, every key under "bayes:":
//
//	bayes:t:TOKEN   counter: spam<<32 + ham, messages the token appeared in
//	bayes:n         counter: spam<<32 + ham, messages learned
//	bayes:d:DIGEST  "spam" or "ham": a learned message, so that learning it
//	                again does not count twice (and forget can undo it)
//	bayes:a:TOKEN   the day (Unix days) the token was last learned, for
//	                expiry (Expire); written on learn, never on classify
//
// A user's own model (peruser) has the same keys under
// "bayes:u:HASH:", HASH a digest of the canonical login (UserPrefix).
//
// One counter holds both counts so that a learn is one atomic Incr per
// token and a classification one read per token (state.GetMany).
package bayes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"postern/filters/state"
	"postern/mailbox/mime"
)

// Store key prefixes. A model's keys are its prefix (KeyPrefix for the
// global model, UserPrefix for a user's) followed by these.
const (
	KeyPrefix  = "bayes:"
	userPrefix = KeyPrefix + "u:"
	tokenPart  = "t:"
	totalsPart = "n"
	digestPart = "d:"
	agePart    = "a:"
)

// Class is what a message was learned as.
type Class string

const (
	Spam Class = "spam"
	Ham  Class = "ham"
)

// one is the counter increment of one message of class c.
func (c Class) one() int64 {
	if c == Spam {
		return 1 << 32
	}
	return 1
}

// Counts is a pair of spam and ham counts.
type Counts struct{ Spam, Ham int64 }

// decodeCounts splits a stored counter (decimal text of spam<<32 + ham).
// The ham half is read as a signed 32-bit number, so that a ham count
// taken below zero (forgetting a token that a changed copy of a message
// did not have when it was learned) borrows nothing from the spam half;
// either count below zero reads as 0. Anything unreadable counts as
// nothing rather than as an error: a bad record must not stop mail.
func decodeCounts(v []byte) Counts {
	if v == nil {
		return Counts{}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return Counts{}
	}
	ham := int64(int32(uint32(n)))
	spam := (n - ham) >> 32
	return Counts{Spam: max(spam, 0), Ham: max(ham, 0)}
}

// Model is the learned data in a state store.
type Model struct {
	Store state.Store
	// Prefix is where the model's keys live: "" (or KeyPrefix) for the
	// installation's model, UserPrefix(login) for a user's.
	Prefix string
	// Now is the clock of the learn days; nil is time.Now.
	Now func() time.Time
}

// UserModel returns login's own model in store.
func UserModel(store state.Store, login string) *Model {
	return &Model{Store: store, Prefix: UserPrefix(login)}
}

// CanonicalUser is the form of a login that names its model: trimmed and
// lower-cased, so that "Alice@Example.TEST" and "alice@example.test"
// (IMAP login and RCPT resolution may spell it differently) share one.
func CanonicalUser(login string) string {
	return strings.ToLower(strings.TrimSpace(login))
}

// UserPrefix is the key prefix of login's model: a digest of the
// canonical login, so that any login (spaces, colons, any length) makes a
// safe, fixed-length key, and the store does not list the users.
func UserPrefix(login string) string {
	sum := sha256.Sum256([]byte(CanonicalUser(login)))
	return userPrefix + hex.EncodeToString(sum[:16]) + ":"
}

func (m *Model) prefix() string {
	if m.Prefix == "" {
		return KeyPrefix
	}
	return m.Prefix
}

func (m *Model) tokenKey(tok string) string { return m.prefix() + tokenPart + tok }
func (m *Model) digestKey(d string) string  { return m.prefix() + digestPart + d }
func (m *Model) totalsKey() string          { return m.prefix() + totalsPart }

// Day is the day number (days since 1970-01-01 UTC) learns are stamped
// with.
func Day(t time.Time) int64 { return t.Unix() / 86400 }

func (m *Model) today() int64 {
	if m.Now != nil {
		return Day(m.Now())
	}
	return Day(time.Now())
}

// stamp records today as the last learn day of tokens (one round trip),
// so that Expire keeps them. Only learning writes it: classification,
// the hot path, never writes.
func (m *Model) stamp(ctx context.Context, tokens []string) error {
	keys := make([]string, len(tokens))
	vals := make([][]byte, len(tokens))
	day := strconv.AppendInt(nil, m.today(), 10)
	for i, t := range tokens {
		keys[i], vals[i] = m.prefix()+agePart+t, day
	}
	if err := state.SetMany(ctx, m.Store, keys, vals); err != nil {
		return fmt.Errorf("bayes: stamp learn day: %w", err)
	}
	return nil
}

// Digest identifies a message for learning: its Message-ID and its body,
// so that the same message learned from another copy (with other Received
// or X-Postern-Score fields) is recognised. Line ends are ignored.
func Digest(r io.ReaderAt, size int64) (string, error) {
	root, err := mime.ParseStructure(r, min(size, MaxScan))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	io.WriteString(h, root.Header.Get("Message-Id"))
	h.Write([]byte{0})
	end := min(size, int64(16<<20))
	body := io.NewSectionReader(r, root.BodyStart, max(end-root.BodyStart, 0))
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		for _, c := range buf[:n] {
			if c != '\r' {
				h.Write([]byte{c})
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("bayes: digest: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// LearnResult says what Learn did.
type LearnResult int

const (
	Learned        LearnResult = iota // counted for the first time
	Relearned                         // had been learned as the other class: moved
	AlreadyLearned                    // had been learned as this class: nothing done
)

func (r LearnResult) String() string {
	return [...]string{"learned", "relearned", "already learned"}[r]
}

// validDigest refuses what Digest cannot have made (it reaches the store
// as part of a key, and over the control socket).
func validDigest(d string) error {
	if len(d) != 32 {
		return fmt.Errorf("bayes: bad digest %q", d)
	}
	if _, err := hex.DecodeString(d); err != nil {
		return fmt.Errorf("bayes: bad digest %q", d)
	}
	return nil
}

// validTokens refuses tokens Tokenize cannot have made: they may come
// over the control socket.
func validTokens(tokens []string) error {
	if len(tokens) > MaxTokens {
		return fmt.Errorf("bayes: %d tokens (max %d)", len(tokens), MaxTokens)
	}
	for _, t := range tokens {
		if !validToken(t) {
			return fmt.Errorf("bayes: bad token %q", t)
		}
	}
	return nil
}

// Learn counts tokens as one message of class c, once per digest.
func (m *Model) Learn(ctx context.Context, c Class, digest string, tokens []string) (LearnResult, error) {
	if c != Spam && c != Ham {
		return 0, fmt.Errorf("bayes: learn: bad class %q", c)
	}
	if err := errors.Join(validDigest(digest), validTokens(tokens)); err != nil {
		return 0, err
	}
	claimed, err := m.Store.SetNX(ctx, m.digestKey(digest), []byte(c), 0)
	if err != nil {
		return 0, fmt.Errorf("bayes: learn: %w", err)
	}
	if !claimed {
		v, found, err := m.Store.Get(ctx, m.digestKey(digest))
		if err != nil {
			return 0, fmt.Errorf("bayes: learn: %w", err)
		}
		if found && Class(v) == c {
			return AlreadyLearned, nil
		}
		// Learned as the other class: take it out of that one first.
		if found && (Class(v) == Spam || Class(v) == Ham) {
			if err := m.add(ctx, -Class(v).one(), tokens); err != nil {
				return 0, err
			}
		}
		if err := m.stamp(ctx, tokens); err != nil {
			return 0, err
		}
		if err := m.Store.Set(ctx, m.digestKey(digest), []byte(c), 0); err != nil {
			return 0, fmt.Errorf("bayes: learn: %w", err)
		}
		if err := m.add(ctx, c.one(), tokens); err != nil {
			return 0, err
		}
		return Relearned, nil
	}
	if err := m.stamp(ctx, tokens); err != nil {
		m.Store.Delete(ctx, m.digestKey(digest))
		return 0, err
	}
	if err := m.add(ctx, c.one(), tokens); err != nil {
		m.Store.Delete(ctx, m.digestKey(digest))
		return 0, err
	}
	return Learned, nil
}

// Forget takes a learned message out of the counts; false if it was not
// learned.
func (m *Model) Forget(ctx context.Context, digest string, tokens []string) (bool, error) {
	if err := errors.Join(validDigest(digest), validTokens(tokens)); err != nil {
		return false, err
	}
	v, found, err := m.Store.Get(ctx, m.digestKey(digest))
	if err != nil {
		return false, fmt.Errorf("bayes: forget: %w", err)
	}
	if !found || (Class(v) != Spam && Class(v) != Ham) {
		return false, nil
	}
	if err := m.add(ctx, -Class(v).one(), tokens); err != nil {
		return false, err
	}
	if err := m.Store.Delete(ctx, m.digestKey(digest)); err != nil {
		return false, fmt.Errorf("bayes: forget: %w", err)
	}
	return true, nil
}

// add adds delta to the totals and every token's counter, in one round
// trip (state.IncrMany: one transaction in the embedded store), so a
// failed learn leaves no half-counted message behind.
func (m *Model) add(ctx context.Context, delta int64, tokens []string) error {
	keys := make([]string, 0, len(tokens)+1)
	keys = append(keys, m.totalsKey())
	for _, t := range tokens {
		keys = append(keys, m.tokenKey(t))
	}
	if err := state.IncrMany(ctx, m.Store, keys, delta); err != nil {
		return fmt.Errorf("bayes: update counts: %w", err)
	}
	return nil
}

// Totals returns the numbers of spam and ham messages learned.
func (m *Model) Totals(ctx context.Context) (Counts, error) {
	v, _, err := m.Store.Get(ctx, m.totalsKey())
	if err != nil {
		return Counts{}, fmt.Errorf("bayes: totals: %w", err)
	}
	return decodeCounts(v), nil
}

// Token is one token's part in a classification.
type Token struct {
	Text   string
	Counts Counts
	Prob   float64 // the smoothed spam probability, f(w) in Robinson's paper
}

// Classification is the model's answer about a message.
type Classification struct {
	Trained bool    // enough of both kinds learned to say anything
	Totals  Counts  // messages learned
	Prob    float64 // spam probability 0..1 (0.5 when nothing is known)
	Used    []Token // the interesting tokens combined, most extreme first
}

// Parameters of the classifier.
type Parameters struct {
	MinLearns   int64   // spam and ham messages each before it says anything
	MaxTokens   int     // most interesting tokens combined (SpamBayes: 150)
	MinDev      float64 // a token is interesting when |f-0.5| >= MinDev
	Strength    float64 // Robinson's s: weight of the assumed probability
	Assumed     float64 // Robinson's x: the probability of an unseen token
	MaxLookedUp int     // tokens of a message looked up in the store
}

// DefaultParameters are SpamBayes's defaults, and Rspamd's min_learns.
func DefaultParameters() Parameters {
	return Parameters{MinLearns: 200, MaxTokens: 150, MinDev: 0.1, Strength: 0.45, Assumed: 0.5, MaxLookedUp: MaxTokens}
}

// Classify computes the spam probability of a message with tokens (as
// Tokenize returns them): one store read for the totals and the tokens.
func (m *Model) Classify(ctx context.Context, p Parameters, tokens []string) (Classification, error) {
	if len(tokens) > p.MaxLookedUp {
		tokens = tokens[:p.MaxLookedUp]
	}
	keys := make([]string, 0, len(tokens)+1)
	keys = append(keys, m.totalsKey())
	for _, t := range tokens {
		keys = append(keys, m.tokenKey(t))
	}
	vals, err := state.GetMany(ctx, m.Store, keys)
	if err != nil {
		return Classification{}, fmt.Errorf("bayes: classify: %w", err)
	}
	cl := Classification{Totals: decodeCounts(vals[0]), Prob: 0.5}
	if cl.Totals.Spam < max(p.MinLearns, 1) || cl.Totals.Ham < max(p.MinLearns, 1) {
		return cl, nil
	}
	cl.Trained = true
	for i, t := range tokens {
		c := decodeCounts(vals[i+1])
		if c.Spam == 0 && c.Ham == 0 {
			continue
		}
		f := tokenProb(p, c, cl.Totals)
		if math.Abs(f-0.5) >= p.MinDev {
			cl.Used = append(cl.Used, Token{Text: t, Counts: c, Prob: f})
		}
	}
	sort.SliceStable(cl.Used, func(i, j int) bool {
		return math.Abs(cl.Used[i].Prob-0.5) > math.Abs(cl.Used[j].Prob-0.5)
	})
	if len(cl.Used) > p.MaxTokens {
		cl.Used = cl.Used[:p.MaxTokens]
	}
	cl.Prob = fisher(cl.Used)
	return cl, nil
}

// tokenProb is Robinson's f(w) = (s*x + n*p(w)) / (s + n), with p(w) the
// ratio of the token's spam frequency to its spam plus ham frequencies
// (frequencies relative to the messages learned, so an unequal amount of
// spam and ham does not bias it) and n the messages it appeared in.
func tokenProb(p Parameters, c, totals Counts) float64 {
	spamFreq := min(float64(c.Spam)/float64(totals.Spam), 1)
	hamFreq := min(float64(c.Ham)/float64(totals.Ham), 1)
	pw := 0.5
	if spamFreq+hamFreq > 0 {
		pw = spamFreq / (spamFreq + hamFreq)
	}
	n := float64(c.Spam + c.Ham)
	return (p.Strength*p.Assumed + n*pw) / (p.Strength + n)
}

// fisher combines token probabilities with Fisher's method, as SpamBayes's
// chi2_spamprob: H is the evidence for ham, S for spam, each the
// probability that -2 Σ ln of the probabilities is that large by chance
// (chi-squared with 2n degrees of freedom); the result (1 + S - H) / 2
// is near 1 for spam, near 0 for ham, and near 0.5 when the evidence is
// weak or contradicts itself.
func fisher(used []Token) float64 {
	if len(used) == 0 {
		return 0.5
	}
	var lnHam, lnSpam float64
	for _, t := range used {
		f := min(max(t.Prob, 1e-6), 1-1e-6)
		lnHam += math.Log(f)      // small when the tokens are hammy
		lnSpam += math.Log(1 - f) // small when they are spammy
	}
	n := 2 * len(used)
	s := 1 - chi2Q(-2*lnSpam, n)
	h := 1 - chi2Q(-2*lnHam, n)
	return (1 + s - h) / 2
}

// chi2Q is the probability that a chi-squared variable with v (even)
// degrees of freedom is at least x2: the series of the Poisson tail.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	term := math.Exp(-m)
	sum := term
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return min(sum, 1)
}
