package deliver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"postern/mailbox/maildir"
	"postern/mailbox/sievestore"
	"postern/rules/sieve"
)

// The Sieve side of the delivery agent (docs/sieve.md): when an account
// has neither a .courier file nor a .mailfilter, its active Sieve script
// (Pigeonhole's layout, ~/.dovecot.sieve → ~/sieve/NAME.sieve, which
// ManageSieve maintains) decides where the message goes. A script that
// cannot be read, parsed or run keeps the message in INBOX (RFC 5228
// 2.10.6) and the reason goes to the log and to ~/.dovecot.sieve.log, the
// file Pigeonhole writes a user's script errors to.

// SieveLogFile is where a user's script errors are written, in the home.
const SieveLogFile = ".dovecot.sieve.log"

// maxSieveLog bounds the error log; it starts again when it is bigger.
const maxSieveLog = 64 << 10

// activeSieve returns the account's active script, or nil when there is
// none (one lstat).
func (j *job) activeSieve() (*sieveSource, error) {
	if j.home == "" {
		return nil, nil
	}
	st := sievestore.Open(j.home, sievestore.Owner{UID: j.acct.UID, GID: j.acct.GID}, sievestore.Limits{})
	name, src, err := st.Active()
	if err != nil || src == nil {
		return nil, err
	}
	return &sieveSource{store: st, name: name, src: src}, nil
}

type sieveSource struct {
	store *sievestore.Store
	name  string
	src   []byte
}

// sieveLoader serves include (RFC 6609): personal scripts from the
// account's storage, global ones from CONFIG/sieveglobal/NAME.sieve.
type sieveLoader struct {
	store     *sievestore.Store
	globalDir string
}

func (l sieveLoader) Load(global bool, name string) ([]byte, error) {
	if err := sievestore.ValidName(name); err != nil {
		return nil, err
	}
	if !global {
		src, err := l.store.Get(name)
		if errors.Is(err, sievestore.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", sieve.ErrNotFound, err)
		}
		return src, err
	}
	if l.globalDir == "" {
		return nil, fmt.Errorf("%w: no global scripts", sieve.ErrNotFound)
	}
	src, err := readBounded(filepath.Join(l.globalDir, name+".sieve"), sieve.DefaultMaxScriptSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: global %s", sieve.ErrNotFound, name)
	}
	return src, err
}

// runSieve runs the account's script over msg and carries out its actions.
func (j *job) runSieve(ctx context.Context, s *sieveSource, msg []byte) Outcome {
	res, err := j.evalSieve(ctx, s, msg)
	if err != nil {
		j.sieveError(s, err)
		res = &sieve.Result{Actions: []sieve.Action{sieve.Keep{Implicit: true}}}
	}
	if res.Message != nil {
		msg = res.Message
	}
	for _, a := range res.Actions {
		if o := j.sieveAction(ctx, a, msg); o != nil {
			o.Delivered = j.done
			return *o
		}
	}
	if len(j.done) == 0 {
		j.a.log.Info("deliver: discarded by sieve", "account", j.acct.Name, "script", s.name)
	}
	return j.success()
}

func (j *job) evalSieve(ctx context.Context, s *sieveSource, msg []byte) (*sieve.Result, error) {
	script, err := j.a.sieveScripts.parse(s.src)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, sieveTimeout)
	defer cancel()
	env := &sieve.Env{
		Message:   msg,
		From:      j.req.Sender,
		To:        j.req.Recipient,
		User:      j.acct.Name,
		Addresses: ownAddresses(j.req.Recipient, j.acct.Name),
		Now:       j.a.opt.Now(),
		Host:      j.a.hostname,
		Domain:    domainOf(j.req.Recipient),
		MailboxExists: func(name string) bool {
			folder, err := sieveFolder(name)
			return err == nil && j.folderExists(folder)
		},
		// RFC 8579: the special-use folders go by name
		// (maildir.SpecialUseFolders); "" asks for any mailbox.
		SpecialUseExists: func(mailbox, attr string) bool {
			want := maildir.SpecialUseFolder(attr)
			if want == "" || !j.folderExists(want) {
				return false
			}
			if mailbox == "" {
				return true
			}
			folder, err := sieveFolder(mailbox)
			return err == nil && folder == want
		},
		MailboxIDExists: func(id string) bool {
			_, ok := j.folderByID(id)
			return ok
		},
		Store:   &SieveMemory{Path: filepath.Join(j.home, SieveMemoryFile), Now: j.a.opt.Now},
		Loader:  sieveLoader{store: s.store, globalDir: j.a.sieveGlobalDir()},
		Version: "1",
	}
	return script.Execute(ctx, env)
}

// sieveAction carries out one action; a non-nil Outcome ends the delivery.
func (j *job) sieveAction(ctx context.Context, a sieve.Action, msg []byte) *Outcome {
	switch a := a.(type) {
	case sieve.Keep:
		return j.sieveFile(ctx, "", false, a.Flags, msg)
	case sieve.FileInto:
		return j.sieveFile(ctx, j.sieveTarget(a), a.Create, a.Flags, msg)
	case sieve.Redirect:
		if err := j.forward(ctx, []string{a.Address}, msg, j.req.Sender, nil); err != nil {
			o := j.failure(err)
			return &o
		}
		j.done = append(j.done, "!"+a.Address)
	case sieve.Reject:
		reason := strings.TrimSpace(a.Reason)
		if reason == "" {
			reason = "rejected by the recipient's filter"
		}
		j.a.log.Info("deliver: rejected by sieve", "account", j.acct.Name, "reason", reason)
		// Exit 77 is what a maildrop filter's refusal exits with; the
		// gateway answers 550 5.7.1 with the script's text (RFC 5429
		// 2.1 prefers refusing in the protocol to a bounce).
		return &Outcome{Status: StatusPermanent, ExitCode: 77, Reason: reason, Enhanced: "5.7.1"}
	case sieve.Discard:
	case sieve.Notify:
		// RFC 5435 3.8: a notification that cannot be sent is an
		// error of its own, not of the delivery.
		rcpts, note, err := a.Mail(j.a.opt.Now(), j.acct.Name)
		if err == nil {
			sender := a.Sender
			if sender == "" {
				sender = "<>"
			}
			err = j.forward(ctx, rcpts, note, sender, nil)
		}
		if err != nil {
			j.sieveLog(fmt.Sprintf("notify %s: %v", a.Method, err))
			j.a.log.Warn("deliver: sieve notification not sent", "account", j.acct.Name, "method", a.Method, "error", err)
		} else {
			j.a.log.Info("deliver: sieve notification sent", "account", j.acct.Name, "to", strings.Join(rcpts, ","))
		}
	case sieve.Vacation:
		reply := a.Reply(j.a.opt.Now())
		// RFC 5230 5.1 / RFC 3834: the reply goes out with a null
		// envelope sender, so that it cannot cause a bounce loop.
		if err := j.forward(ctx, []string{a.To}, reply, "", nil); err != nil {
			// A reply that could not be sent does not hold up the
			// message itself.
			j.a.log.Warn("deliver: sieve vacation reply not sent", "account", j.acct.Name, "to", a.To, "error", err)
		} else {
			j.a.log.Info("deliver: sieve vacation reply sent", "account", j.acct.Name, "to", a.To)
		}
	}
	return nil
}

// sieveTarget is the mailbox a fileinto names: the folder with its
// :mailboxid when one has it (RFC 9042), else the folder with its
// :specialuse attribute when there is one (RFC 8579), else its name.
func (j *job) sieveTarget(a sieve.FileInto) string {
	if a.MailboxID != "" {
		if folder, ok := j.folderByID(a.MailboxID); ok {
			if folder == "" {
				return maildir.Inbox
			}
			if name, err := maildir.DecodeModifiedUTF7(folder); err == nil {
				return name
			}
		}
	}
	if a.SpecialUse != "" {
		if folder := maildir.SpecialUseFolder(a.SpecialUse); folder != "" && j.folderExists(folder) {
			return folder
		}
	}
	return a.Mailbox
}

// folderExists: the account's Maildir++ folder (on-disk name, "" for
// INBOX) is there.
func (j *job) folderExists(folder string) bool {
	if folder == "" {
		return true
	}
	st, err := os.Stat(filepath.Join(j.root, "."+folder, "cur"))
	return err == nil && st.IsDir()
}

// folderByID finds the account's folder with a MAILBOXID.
func (j *job) folderByID(id string) (string, bool) {
	md, err := j.maildirFor(j.root)
	if err != nil {
		return "", false
	}
	return md.FolderByID(id)
}

// sieveFile delivers into the folder a script named ("" is INBOX).
func (j *job) sieveFile(ctx context.Context, mailbox string, create bool, flags []string, msg []byte) *Outcome {
	folder, err := sieveFolder(mailbox)
	if err != nil {
		j.sieveLog(fmt.Sprintf("fileinto %q: %v; kept in INBOX", mailbox, err))
		folder = ""
	}
	if folder != "" {
		md, err := j.maildirFor(j.root)
		if err != nil {
			o := j.failure(err)
			return &o
		}
		if _, err := md.Folder(folder); err != nil {
			switch {
			case create:
				if err := md.CreateFolder(folder); err != nil && !errors.Is(err, os.ErrExist) {
					o := j.failure(err)
					return &o
				}
				j.handOver(filepath.Join(j.root, "."+folder), filepath.Join(j.root, "."+folder, "tmp"), filepath.Join(j.root, "."+folder, "new"), filepath.Join(j.root, "."+folder, "cur"))
			default:
				// Pigeonhole's behaviour: a missing mailbox is an error
				// that keeps the message, rather than a lost message.
				j.sieveLog(fmt.Sprintf("fileinto %q: no such folder (:create makes it); kept in INBOX", mailbox))
				folder = ""
			}
		}
	}
	d := Destination{Kind: DestMaildir, Root: j.root, Folder: maildir.Inbox, Path: j.root}
	if folder != "" {
		d.Folder, d.Path = folder, filepath.Join(j.root, "."+folder)
	}
	for _, done := range j.done {
		if done == d.String() {
			return nil // RFC 5228 4.1: the same folder twice files once
		}
	}
	if err := j.deliverMaildir(d, bytes.NewReader(msg), sieveFlags(flags)); err != nil {
		o := j.failure(err)
		return &o
	}
	return nil
}

// sieveFolder maps a Sieve mailbox name to a Maildir++ folder: "INBOX" is
// the root (""), "INBOX.Work" and "Work" are .Work, "Work/Sub" is
// .Work.Sub; names are UTF-8 in Sieve and modified UTF-7 on disk.
func sieveFolder(name string) (string, error) {
	n := strings.TrimSpace(name)
	if strings.EqualFold(n, maildir.Inbox) {
		return "", nil
	}
	if len(n) > len(maildir.Inbox)+1 && strings.EqualFold(n[:len(maildir.Inbox)], maildir.Inbox) && (n[len(maildir.Inbox)] == '.' || n[len(maildir.Inbox)] == '/') {
		n = n[len(maildir.Inbox)+1:]
	}
	n = strings.ReplaceAll(n, "/", ".")
	n = maildir.EncodeModifiedUTF7(n)
	if err := maildir.ValidFolderName(n); err != nil {
		return "", err
	}
	return n, nil
}

// sieveFlags maps IMAP flags (RFC 5232) to Maildir info letters and
// Courier keywords.
func sieveFlags(flags []string) maildir.DeliverOptions {
	var letters, keywords []string
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\seen`:
			letters = append(letters, "S")
		case `\answered`:
			letters = append(letters, "R")
		case `\flagged`:
			letters = append(letters, "F")
		case `\deleted`:
			letters = append(letters, "T")
		case `\draft`:
			letters = append(letters, "D")
		default:
			if !strings.HasPrefix(f, `\`) {
				keywords = append(keywords, f)
			}
		}
	}
	return deliverOptions(strings.Join(letters, ""), strings.Join(keywords, ","))
}

// sieveError notes a script that could not run: the log, and the user's
// ~/.dovecot.sieve.log so that the author sees why.
func (j *job) sieveError(s *sieveSource, err error) {
	name := s.name
	if name == "" {
		name = ".dovecot.sieve"
	}
	j.a.log.Warn("deliver: sieve script failed; message kept", "account", j.acct.Name, "script", name, "error", err)
	j.sieveLog(fmt.Sprintf("script %s: %v; message kept in INBOX", name, err))
}

func (j *job) sieveLog(line string) {
	if j.home == "" {
		return
	}
	p := filepath.Join(j.home, SieveLogFile)
	if st, err := os.Stat(p); err == nil && st.Size() > maxSieveLog {
		os.Remove(p)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", j.a.opt.Now().UTC().Format(time.RFC3339), line)
}

// sieveTimeout bounds one script run (its steps are bounded too; this is
// for a Store or Loader that hangs).
const sieveTimeout = 30 * time.Second

// SieveOptions are the language settings every script runs with:
// Courier's "user-ext" addresses as well as "user+ext" for :detail, and
// Postern's own score field for spamtest (X-Postern-Score, where 10 is
// the default reject threshold of spamscore).
var SieveOptions = sieve.Options{
	SubaddressSeparators: "+-",
	SpamHeader:           "X-Postern-Score",
	SpamMax:              10,
}

// sieveGlobalDir holds the administrator's scripts for include :global
// (CONFIG/sieveglobal/NAME.sieve).
func (a *Agent) sieveGlobalDir() string {
	if a.opt.Config == nil || a.opt.Config.Dir == "" {
		return ""
	}
	return filepath.Join(a.opt.Config.Dir, "sieveglobal")
}

// scriptCache keeps parsed scripts by their source, so that a busy
// account's script is parsed once, not once per message.
type scriptCache struct {
	mu sync.Mutex
	m  map[[32]byte]*sieve.Script
}

const maxCachedScripts = 256

func (c *scriptCache) parse(src []byte) (*sieve.Script, error) {
	key := sha256.Sum256(src)
	c.mu.Lock()
	sc := c.m[key]
	c.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	sc, err := sieve.Parse(src, SieveOptions)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedScripts {
		c.m = map[[32]byte]*sieve.Script{}
	}
	c.m[key] = sc
	c.mu.Unlock()
	return sc, nil
}

// ownAddresses are the addresses vacation treats as the user's: the
// recipient as addressed and the account's name when it is an address.
func ownAddresses(rcpt, account string) []string {
	out := []string{}
	for _, a := range []string{rcpt, account} {
		if a != "" && strings.Contains(a, "@") && !slices.ContainsFunc(out, func(b string) bool { return strings.EqualFold(a, b) }) {
			out = append(out, a)
		}
	}
	return out
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}
