package bayes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"postern/filters/state"
)

// Token expiry, as Rspamd's bayes_expiry: a token seen in a message or two
// long ago (a misspelling, a one-off hash fragment) is noise that costs a
// key for ever. Each learn stamps its tokens with the day (Model.stamp);
// Expire removes, in every model of the store, the tokens whose last
// learn is at least Days old and whose counts are small (spam + ham <=
// MaxCount). Tokens with large counts are kept however old: they are what
// the model knows.

// Expiry defaults.
const (
	DefaultExpireDays     = 90
	DefaultExpireMaxCount = 2
	// ExpirePage is how many keys one ExpireStep visits, so that a step
	// is a bounded amount of work (one control-socket request).
	ExpirePage = 500
)

// ExpireOptions say which tokens are old and small.
type ExpireOptions struct {
	Days     int64 // not learned for at least this many days
	MaxCount int64 // and spam + ham at most this
	Today    int64 // Day(now); 0 = today
}

// ExpireStats count what an expiry did.
type ExpireStats struct {
	Scanned int // token keys visited
	Removed int // tokens removed
	Stamped int // tokens that had no learn day (learned before expiry existed): given today's
}

func (a *ExpireStats) add(b ExpireStats) {
	a.Scanned += b.Scanned
	a.Removed += b.Removed
	a.Stamped += b.Stamped
}

// splitTokenKey finds the model prefix and the token of a token key, in
// the global model ("bayes:t:TOKEN") or a user's ("bayes:u:HASH:t:TOKEN");
// false for any other key.
func splitTokenKey(key string) (model, token string, ok bool) {
	if tok, ok := strings.CutPrefix(key, KeyPrefix+tokenPart); ok {
		return KeyPrefix, tok, true
	}
	rest, ok := strings.CutPrefix(key, userPrefix)
	const hashLen = 32
	if !ok || len(rest) < hashLen+1+len(tokenPart) || rest[hashLen] != ':' || !strings.HasPrefix(rest[hashLen+1:], tokenPart) {
		return "", "", false
	}
	model = key[:len(userPrefix)+hashLen+1]
	return model, key[len(model)+len(tokenPart):], true
}

// ExpireStep visits one page of the store's bayes keys from cursor (""
// to start) and removes the old small tokens on it; next is "" when the
// whole store has been visited. Paging keeps each step short, so the
// running server can do it over the control socket between its other
// work. A learn of a token between this step's read and its removal may
// lose that token's count; run expiry when it matters little (at night).
func ExpireStep(ctx context.Context, store state.Store, opt ExpireOptions, cursor string) (st ExpireStats, next string, err error) {
	sc, ok := store.(state.Scanner)
	if !ok {
		return st, "", errors.New("bayes: expire: the state store cannot list its keys")
	}
	if opt.Days < 1 {
		return st, "", fmt.Errorf("bayes: expire: days %d: want at least 1", opt.Days)
	}
	if opt.Today == 0 {
		opt.Today = Day(time.Now())
	}
	keys, next, err := sc.ScanPrefix(ctx, KeyPrefix, cursor, ExpirePage)
	if err != nil {
		return st, "", fmt.Errorf("bayes: expire: %w", err)
	}
	var tokenKeys, ageKeys []string
	for _, k := range keys {
		if model, tok, ok := splitTokenKey(k); ok {
			tokenKeys = append(tokenKeys, k)
			ageKeys = append(ageKeys, model+agePart+tok)
		}
	}
	if len(tokenKeys) == 0 {
		return st, next, nil
	}
	vals, err := state.GetMany(ctx, store, append(tokenKeys[:len(tokenKeys):len(tokenKeys)], ageKeys...))
	if err != nil {
		return st, "", fmt.Errorf("bayes: expire: %w", err)
	}
	today := strconv.AppendInt(nil, opt.Today, 10)
	var stampKeys, remove []string
	var stampVals [][]byte
	for i, k := range tokenKeys {
		st.Scanned++
		age := vals[len(tokenKeys)+i]
		day, err := strconv.ParseInt(string(age), 10, 64)
		if age == nil || err != nil {
			// Learned before expiry existed: its clock starts now.
			stampKeys, stampVals = append(stampKeys, ageKeys[i]), append(stampVals, today)
			continue
		}
		c := decodeCounts(vals[i])
		if opt.Today-day < opt.Days || c.Spam+c.Ham > opt.MaxCount {
			continue
		}
		remove = append(remove, k, ageKeys[i])
	}
	if len(remove) > 0 {
		if err := state.DeleteMany(ctx, store, remove); err != nil {
			return st, "", fmt.Errorf("bayes: expire: %w", err)
		}
		st.Removed = len(remove) / 2
	}
	if len(stampKeys) > 0 {
		if err := state.SetMany(ctx, store, stampKeys, stampVals); err != nil {
			return st, "", fmt.Errorf("bayes: expire: %w", err)
		}
		st.Stamped = len(stampKeys)
	}
	return st, next, nil
}

// Expire runs ExpireStep over the whole store, calling progress (when
// not nil) after each step with the counts so far.
func Expire(ctx context.Context, store state.Store, opt ExpireOptions, progress func(ExpireStats)) (ExpireStats, error) {
	var total ExpireStats
	cursor := ""
	for {
		st, next, err := ExpireStep(ctx, store, opt, cursor)
		total.add(st)
		if err != nil {
			return total, err
		}
		if progress != nil {
			progress(total)
		}
		if next == "" {
			return total, nil
		}
		cursor = next
	}
}
