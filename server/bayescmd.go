package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"postern/filters/bayes"
	"postern/filters/state"
	"postern/policy"
)

// OpenBayes opens the state store and reads the bayes setting as the
// server would, for postern bayes; the caller closes the store.
func OpenBayes(cfg *policy.Config, log *slog.Logger) (*bayes.Model, bayes.Config, state.Store, error) {
	bc, err := bayes.LoadConfig(cfg.Dir)
	if err != nil {
		return nil, bayes.Config{}, nil, err
	}
	store, err := openStore(cfg, log)
	if err != nil {
		return nil, bayes.Config{}, nil, fmt.Errorf("state store: %w", err)
	}
	return &bayes.Model{Store: store}, bc, store, nil
}

// RunBayes carries out one step of postern bayes on the model: the
// command reads and tokenizes the messages itself (they are the admin's
// files, which the server may not be able to read) and sends one message
// at a time, as
//
//	[--user LOGIN] learn spam|ham DIGEST TOKEN...
//	[--user LOGIN] forget DIGEST TOKEN...
//	[--user LOGIN] stats
//	expire DAYS CURSOR
//
// --user works on LOGIN's own model instead of the global one. expire
// visits one page of keys from CURSOR ("" first) and prints
// "expired SCANNED REMOVED STAMPED" and "next CURSOR" ("" when done).
// The command runs it in its own process when it can open the state
// store, and the running server runs it over the control socket when it
// holds the store (controlBayes). Exit status: 0 done, 1 forget of a
// message never learned, 64 bad request, 75 store trouble.
func RunBayes(ctx context.Context, m *bayes.Model, bc bayes.Config, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "--user" {
		if bayes.CanonicalUser(args[1]) == "" {
			fmt.Fprintln(stderr, "bayes: empty user")
			return 64
		}
		m = bayes.UserModel(m.Store, args[1])
		args = args[2:]
		if len(args) > 0 && args[0] == "expire" {
			fmt.Fprintln(stderr, "bayes: expire covers every model; no --user")
			return 64
		}
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "bayes: want learn, forget, stats or expire")
		return 64
	}
	switch {
	case args[0] == "learn" && len(args) >= 3:
		r, err := m.Learn(ctx, bayes.Class(args[1]), args[2], args[3:])
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return storeStatus(err)
		}
		fmt.Fprintln(stdout, r)
		return 0
	case args[0] == "forget" && len(args) >= 2:
		ok, err := m.Forget(ctx, args[1], args[2:])
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return storeStatus(err)
		}
		if !ok {
			fmt.Fprintln(stdout, "not learned")
			return 1
		}
		fmt.Fprintln(stdout, "forgotten")
		return 0
	case args[0] == "stats" && len(args) == 1:
		tot, err := m.Totals(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 75
		}
		fmt.Fprintf(stdout, "learned: %d spam, %d ham\n", tot.Spam, tot.Ham)
		if min(tot.Spam, tot.Ham) < bc.Params.MinLearns {
			fmt.Fprintf(stdout, "classifying: no, %d of each needed (minlearns)\n", bc.Params.MinLearns)
		} else {
			fmt.Fprintln(stdout, "classifying: yes")
		}
		return 0
	case args[0] == "expire" && len(args) == 3:
		days, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || days < 1 || days > 100000 {
			fmt.Fprintf(stderr, "bayes: expire: days %q: want a whole number from 1 to 100000\n", args[1])
			return 64
		}
		opt := bayes.ExpireOptions{Days: days, MaxCount: bayes.DefaultExpireMaxCount}
		st, next, err := bayes.ExpireStep(ctx, m.Store, opt, args[2])
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 75
		}
		fmt.Fprintf(stdout, "expired %d %d %d\nnext %s\n", st.Scanned, st.Removed, st.Stamped, next)
		return 0
	}
	fmt.Fprintf(stderr, "bayes: bad request %q\n", args[0])
	return 64
}

// storeStatus is 75 (try again later) for a store that could not answer,
// 64 for a request the model refused.
func storeStatus(err error) int {
	if errors.Is(err, state.ErrUnavailable) || errors.Is(err, state.ErrNotCounter) {
		return 75
	}
	return 64
}

// controlBayes runs one step of `postern bayes` on the server's own state
// store, with the bayes setting as it is now.
func (s *Server) controlBayes(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	bc, err := bayes.LoadConfig(s.Config().Dir)
	if err != nil {
		fmt.Fprintf(stderr, "configuration:\n%v\n", err)
		return 78
	}
	return RunBayes(ctx, &bayes.Model{Store: s.store}, bc, args, stdout, stderr)
}
