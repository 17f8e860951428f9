package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"postern/filters/bayes"
	"postern/policy"
	"postern/server"
)

// maxLearnStdin bounds a message read from standard input.
const maxLearnStdin = 64 << 20

// maxRequestTokens bounds the bytes of tokens sent for one message, so
// that a request fits the control socket's limit (64 KiB). Header tokens
// come first and are kept.
const maxRequestTokens = 48 << 10

func runBayes(e *env, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: postern bayes learn [--user LOGIN] --spam|--ham FILE|MAILDIR|-...
       postern bayes forget [--user LOGIN] FILE|MAILDIR|-...
       postern bayes stats [--user LOGIN]
       postern bayes expire [--days N]

Trains the bayes check (docs/bayes.md), the content classifier that
scores a message by the words it shares with spam and ham learned before.
learn   counts each message as spam or as ham. A FILE is one message, "-"
        is one message on standard input, and a MAILDIR (a directory with
        cur/ and new/, such as a user's .Junk folder) is every message in
        it, with progress on standard error. A message learned before is
        not counted twice; learned as the other kind, it is moved.
forget  takes learned messages out of the counts again.
stats   how many spam and ham messages are learned, and whether that is
        enough for the check to classify (the minlearns setting).
expire  removes, from every model, the tokens not learned for N days
        (default 90) that are in 2 or fewer learned messages; progress on
        standard error, a summary on standard output.
--user LOGIN  works on LOGIN's own model (the peruser setting) instead
        of the installation's; learn --user teaches that model alone.
It works on the state store the server uses (the statestore setting).
When the server is running, the command asks it over its control socket
(DATADIR/control.sock) to update the store, since the embedded store is
open in the server alone; otherwise it opens the store itself.
Exit status: 0 done, 1 some message could not be learned or forgotten,
64 usage, 75 the store could not answer, 78 configuration.
`)
	}
	if len(args) == 0 {
		usage(e.stderr)
		return 64
	}
	sub, rest := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" || wantsHelp(rest) {
		usage(e.stdout)
		return 0
	}
	// Options come before the files: --user LOGIN, --spam|--ham (learn),
	// --days N (expire).
	var user, days string
	var class bayes.Class
	for len(rest) > 0 {
		switch {
		case rest[0] == "--user" && len(rest) >= 2 && user == "" && sub != "expire":
			user, rest = rest[1], rest[2:]
			if bayes.CanonicalUser(user) == "" {
				usage(e.stderr)
				return 64
			}
			continue
		case (rest[0] == "--spam" || rest[0] == "--ham") && sub == "learn" && class == "":
			class, rest = bayes.Class(strings.TrimPrefix(rest[0], "--")), rest[1:]
			continue
		case rest[0] == "--days" && len(rest) >= 2 && sub == "expire" && days == "":
			days, rest = rest[1], rest[2:]
			continue
		}
		break
	}
	paths := rest
	switch {
	case (sub == "stats" || sub == "expire") && len(paths) == 0:
	case sub == "learn" && class != "" && len(paths) >= 1:
	case sub == "forget" && len(paths) >= 1:
	default:
		usage(e.stderr)
		return 64
	}
	if sub == "expire" {
		if days == "" {
			days = strconv.Itoa(bayes.DefaultExpireDays)
		}
		if n, err := strconv.Atoi(days); err != nil || n < 1 || n > 100000 {
			fmt.Fprintf(e.stderr, "postern bayes: --days %q: want a whole number from 1 to 100000\n", days)
			return 64
		}
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: configuration:\n%v\n", err)
		return 78
	}
	bc, err := bayes.LoadConfig(cfg.Dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: configuration:\n%v\n", err)
		return 78
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	do, closeFn, code := bayesRunner(ctx, e, cfg)
	if do == nil {
		return code
	}
	defer closeFn()
	if user != "" {
		inner := do
		do = func(args []string) (int, string, string) { return inner(append([]string{"--user", user}, args...)) }
	}
	switch sub {
	case "stats":
		status, out, errs := do([]string{"stats"})
		io.WriteString(e.stdout, out)
		io.WriteString(e.stderr, errs)
		return status
	case "expire":
		return bayesExpire(e, do, days)
	}
	worst := 0
	for _, p := range paths {
		worst = max(worst, bayesPath(e, do, sub, class, bc.Tokens(), p))
	}
	return worst
}

// bayesExpire runs the expiry a page at a time (each one request to the
// server when it runs), with progress on standard error.
func bayesExpire(e *env, do bayesDo, days string) int {
	var scanned, removed, stamped int
	cursor := ""
	for step := 1; ; step++ {
		status, out, errs := do([]string{"expire", days, cursor})
		if status != 0 {
			fmt.Fprintf(e.stderr, "postern bayes: expire: %s", errs)
			return status
		}
		var sc, rm, st int
		line, next, _ := strings.Cut(out, "\n")
		if _, err := fmt.Sscanf(line, "expired %d %d %d", &sc, &rm, &st); err != nil || !strings.HasPrefix(next, "next ") {
			fmt.Fprintf(e.stderr, "postern bayes: expire: unexpected answer %q\n", out)
			return 75
		}
		scanned, removed, stamped = scanned+sc, removed+rm, stamped+st
		cursor = strings.TrimSuffix(strings.TrimPrefix(next, "next "), "\n")
		if step%20 == 0 || cursor == "" {
			fmt.Fprintf(e.stderr, "expire: %d tokens visited, %d removed\n", scanned, removed)
		}
		if cursor == "" {
			break
		}
	}
	fmt.Fprintf(e.stdout, "expired: %d tokens visited, %d removed (not learned for %s days, in 2 or fewer messages), %d without a learn day given today's\n", scanned, removed, days, stamped)
	return 0
}

// bayesDo carries out one RunBayes request and returns its status and
// output.
type bayesDo func(args []string) (status int, stdout, stderr string)

// bayesRunner asks the running server when there is one, else opens the
// store. A nil bayesDo means failure, with code.
func bayesRunner(ctx context.Context, e *env, cfg *policy.Config) (bayesDo, func(), int) {
	probe, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := server.Control(probe, cfg.DataDir, server.ControlRequest{Command: "bayes", Args: []string{"stats"}})
	cancel()
	switch {
	case err == nil:
		return func(args []string) (int, string, string) {
			c, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			r, err := server.Control(c, cfg.DataDir, server.ControlRequest{Command: "bayes", Args: args})
			if err != nil {
				return 75, "", err.Error() + "\n"
			}
			return r.Status, r.Stdout, r.Stderr
		}, func() {}, 0
	case !errors.Is(err, server.ErrNoServer):
		fmt.Fprintf(e.stderr, "postern bayes: %v\n", err)
		return nil, nil, 75
	}
	m, bc, store, err := server.OpenBayes(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			fmt.Fprintf(e.stderr, "postern bayes: configuration:\n%v\n", err)
			return nil, nil, 78
		}
		fmt.Fprintf(e.stderr, "postern bayes: %v\n", err)
		return nil, nil, 75
	}
	return func(args []string) (int, string, string) {
		var out, errb bytes.Buffer
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		status := server.RunBayes(c, m, bc, args, &out, &errb)
		return status, out.String(), errb.String()
	}, func() { store.Close() }, 0
}

// bayesPath learns or forgets the message or Maildir at path.
func bayesPath(e *env, do bayesDo, sub string, class bayes.Class, topt bayes.TokenOptions, path string) int {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(e.stdin, maxLearnStdin+1))
		if err != nil || len(b) > maxLearnStdin {
			fmt.Fprintf(e.stderr, "postern bayes: standard input: unreadable or over %d bytes\n", maxLearnStdin)
			return 1
		}
		return bayesMessage(e, do, sub, class, topt, "-", bytes.NewReader(b), int64(len(b)), true)
	}
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: %v\n", err)
		return 1
	}
	if !fi.IsDir() {
		return bayesFile(e, do, sub, class, topt, path, true)
	}
	// A Maildir: every message in cur/ and new/.
	var files []string
	for _, d := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(path, d))
		if err != nil {
			fmt.Fprintf(e.stderr, "postern bayes: %s: not a message or a Maildir: %v\n", path, err)
			return 1
		}
		for _, ent := range ents {
			if ent.Type().IsRegular() && !strings.HasPrefix(ent.Name(), ".") {
				files = append(files, filepath.Join(path, d, ent.Name()))
			}
		}
	}
	sort.Strings(files)
	counts := map[string]int{}
	worst := 0
	for i, f := range files {
		if st := bayesFile(e, do, sub, class, topt, f, false); st != 0 {
			worst = max(worst, st)
			counts["failed"]++
		} else {
			counts["done"]++
		}
		if (i+1)%100 == 0 {
			fmt.Fprintf(e.stderr, "%s: %d/%d\n", path, i+1, len(files))
		}
	}
	fmt.Fprintf(e.stdout, "%s: %d messages, %d %s, %d failed\n", path, len(files), counts["done"], map[string]string{"learn": "learned", "forget": "forgotten"}[sub], counts["failed"])
	return worst
}

func bayesFile(e *env, do bayesDo, sub string, class bayes.Class, topt bayes.TokenOptions, path string, verbose bool) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: %v\n", err)
		return 1
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: %v\n", err)
		return 1
	}
	return bayesMessage(e, do, sub, class, topt, path, f, fi.Size(), verbose)
}

// bayesMessage tokenizes one message and has it learned or forgotten.
// verbose prints the result of a message named on the command line.
func bayesMessage(e *env, do bayesDo, sub string, class bayes.Class, topt bayes.TokenOptions, name string, r io.ReaderAt, size int64, verbose bool) int {
	digest, tokens, err := bayes.ReadMessage(r, size, topt)
	if err != nil {
		fmt.Fprintf(e.stderr, "postern bayes: %s: %v\n", name, err)
		return 1
	}
	n := 0
	for i, t := range tokens {
		if n += len(t) + 3; n > maxRequestTokens {
			tokens = tokens[:i]
			break
		}
	}
	args := append([]string{"forget", digest}, tokens...)
	if sub == "learn" {
		args = append([]string{"learn", string(class), digest}, tokens...)
	}
	status, out, errs := do(args)
	if errs != "" {
		fmt.Fprintf(e.stderr, "postern bayes: %s: %s", name, errs)
	}
	if status == 0 || status == 1 {
		if verbose || status == 1 {
			fmt.Fprintf(e.stdout, "%s: %s", name, out)
		}
	}
	return status
}
