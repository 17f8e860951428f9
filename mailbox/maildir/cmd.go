package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"postern/internal/strerror"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Exit codes shared with Courier's tools (sysexits.h).
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 64 // EX_USAGE
	exitTempFail  = 75 // EX_TEMPFAIL: the MTA retries later
	exitOverQuota = 77 // EX_NOPERM: deliverquota's "Mail quota exceeded."
	exitNoMaildir = 73 // EX_CANTCREAT: deliverquota without a maildir, as Courier's
)

const maildirmakeUsage = "Usage: maildirmake [-q quota] [-f folder] [-F folder] [-S] [-s mode] [--add nick=path] [--del nick] maildir\n"

// MaildirmakeMain is the maildirmake command (Courier's maildirmake(1)):
//
//	maildirmake [-q QUOTA] [-f FOLDER] [-F FOLDER] [-S] [-s MODE] DIR
//	maildirmake --add NICK=PATH DIR | --del NICK DIR
//
// Without options it creates the maildir DIR (an existing DIR is an
// error). -f FOLDER creates the Maildir++ folder .FOLDER inside the
// existing maildir DIR; -F does the same for a UTF-8 name, stored in IMAP
// modified UTF-7 as IMAP clients expect. -q QUOTA installs or changes the
// quota (maildirsize), creating DIR first if needed. Courier's
// filesystem-shared folders: -S makes a sharable maildir, -s MODE (with
// -f) a folder others may read ("read") or write ("write"), or only the
// owner's group ("group"), --add and --del list sharable maildirs in
// DIR/shared-maildirs. Exit 0 on success, 1 on failure or bad usage (the
// usage on stdout, as Courier's), 2 for --add of a nickname already there.
func MaildirmakeMain(args []string, stdout, stderr io.Writer) int {
	var quotaText, folder, shareMode, addSpec, delNick string
	haveQuota, sharable, haveShare, add, del := false, false, false, false, false
	usage := func() int { fmt.Fprint(stdout, maildirmakeUsage); return exitFailure }
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		switch {
		case a == "-S":
			sharable = true
		case a == "-q" || a == "-f" || a == "-F" || a == "-s" || a == "--add" || a == "--del":
			if i+1 >= len(args) {
				fmt.Fprintf(stderr, "maildirmake: %s needs an argument\n", a)
				return usage()
			}
			i++
			switch a {
			case "-q":
				quotaText, haveQuota = args[i], true
			case "-f":
				folder = args[i]
			case "-F":
				if !utf8.ValidString(args[i]) {
					fmt.Fprintf(stderr, "maildirmake: %q is not valid UTF-8\n", args[i])
					return exitFailure
				}
				folder = EncodeModifiedUTF7(args[i])
			case "-s":
				shareMode, haveShare = args[i], true
			case "--add":
				addSpec, add = args[i], true
			case "--del":
				delNick, del = args[i], true
			}
		default:
			fmt.Fprintf(stderr, "maildirmake: unknown option %s\n", a)
			return usage()
		}
	}
	if len(args)-i != 1 {
		return usage()
	}
	if add || del {
		return sharedMaildirsMain(args[i], add, addSpec, delNick, stdout, stderr)
	}
	if haveShare && folder == "" {
		return usage() // -s makes a folder: it needs -f
	}
	dir := args[i]
	var quota Quota
	if haveQuota {
		q, err := ParseQuota(quotaText)
		if err != nil {
			fmt.Fprintf(stderr, "maildirmake: %v\n", err)
			return exitFailure
		}
		quota = q
	}
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	if folder != "" {
		m, err := OpenWithOptions(dir, Options{Logger: quiet})
		if err != nil {
			fmt.Fprintf(stderr, "maildirmake: %s: %v\n", dir, err)
			return exitFailure
		}
		if err := m.CreateFolder(folder); err != nil {
			if errors.Is(err, ErrFolderExists) { // Courier's words
				fmt.Fprintf(stderr, "maildirmake: %s/.%s: File exists\n", dir, folder)
				return exitFailure
			}
			fmt.Fprintf(stderr, "maildirmake: %s: %v\n", dir, err)
			return exitFailure
		}
		if haveShare {
			if err := shareFolder(filepath.Join(dir, "."+folder), shareMode); err != nil {
				fmt.Fprintf(stderr, "maildirmake: %v\n", err)
				return exitFailure
			}
		}
		if haveQuota {
			if err := m.SetQuota(quota); err != nil {
				fmt.Fprintf(stderr, "maildirmake: %s: %v\n", dir, err)
				return exitFailure
			}
		}
		return exitOK
	}
	_, statErr := os.Lstat(dir)
	exists := statErr == nil
	if exists && !haveQuota {
		fmt.Fprintf(stderr, "maildirmake: %s: File exists\n", dir)
		return exitFailure
	}
	if !exists {
		if err := Make(dir); err != nil {
			fmt.Fprintf(stderr, "maildirmake: %v\n", err)
			return exitFailure
		}
		if sharable {
			// A sharable maildir's root lets others reach its folders;
			// tmp/, new/ and cur/ stay the owner's.
			if err := os.Chmod(dir, 0o755); err != nil {
				fmt.Fprintf(stderr, "maildirmake: %v\n", err)
				return exitFailure
			}
		}
	}
	if haveQuota {
		m, err := OpenWithOptions(dir, Options{Logger: quiet})
		if err != nil {
			fmt.Fprintf(stderr, "maildirmake: %s: %v\n", dir, err)
			return exitFailure
		}
		if err := m.SetQuota(quota); err != nil {
			fmt.Fprintf(stderr, "maildirmake: %s: %v\n", dir, err)
			return exitFailure
		}
	}
	return exitOK
}

const deliverquotaUsage = "Usage: deliverquota [-c] [-w percent] [-W filename] maildir [quota]\n"

// quotaWarnInterval is how often a full maildir is told (Courier: 24h).
const quotaWarnInterval = 24 * time.Hour

// DeliverquotaMain is the deliverquota command (Courier's deliverquota(8)):
//
//	deliverquota [-c] [-w PERCENT] [-W FILE] MAILDIR [QUOTA]
//
// It reads one message on stdin and delivers it into MAILDIR (a maildir,
// or a Maildir++ folder directory inside one) honouring the quota.
// -c creates MAILDIR first (like mkdir -p). QUOTA, when given, installs
// that quota as maildirmake -q would. -w PERCENT delivers a warning
// message when, after delivery, the maildir is at least PERCENT full; the
// text comes from -W FILE or a built-in default, gets Date: and
// Message-Id: headers, and is sent at most once per 24 hours (the
// quotawarn file in the maildir records when). Exit 0 delivered, 77 over
// quota ("Mail quota exceeded."), 75 temporary failure (also a QUOTA
// that cannot be read), 73 when MAILDIR is missing (as Courier), 64 other
// usage errors.
func DeliverquotaMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	create := false
	warnPercent := 0
	warnFile := ""
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		switch {
		case a == "-c":
			create = true
		case strings.HasPrefix(a, "-w") || strings.HasPrefix(a, "-W"):
			val := a[2:]
			if val == "" {
				if i+1 >= len(args) {
					fmt.Fprintf(stderr, "deliverquota: %s needs an argument\n%s", a, deliverquotaUsage)
					return exitUsage
				}
				i++
				val = args[i]
			}
			if a[1] == 'W' {
				warnFile = val
				continue
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > 100 {
				fmt.Fprintf(stderr, "deliverquota: -w %q: want a percentage 0-100\n", val)
				return exitUsage
			}
			warnPercent = n
		default:
			fmt.Fprintf(stderr, "deliverquota: unknown option %s\n%s", a, deliverquotaUsage)
			return exitUsage
		}
	}
	rest := args[i:]
	if len(rest) < 1 {
		fmt.Fprint(stderr, deliverquotaUsage)
		return exitNoMaildir
	}
	if len(rest) > 2 {
		fmt.Fprint(stderr, deliverquotaUsage)
		return exitUsage
	}
	dir := rest[0]
	var newQuota Quota
	if len(rest) == 2 && rest[1] != "" {
		q, err := ParseQuota(rest[1])
		if err != nil {
			// A mistyped quota in the MTA's configuration defers the
			// mail (the MTA logs why and retries) rather than bounce
			// it or deliver it without the limit meant.
			fmt.Fprintf(stderr, "deliverquota: %v\n", err)
			return exitTempFail
		}
		newQuota = q
	}
	if create {
		if err := Make(dir); err != nil {
			fmt.Fprintf(stderr, "deliverquota: %v\n", err)
			return exitTempFail
		}
	}
	if _, err := os.Stat(dir); err != nil {
		// Courier's words: the path and strerror's.
		fmt.Fprintf(stderr, "%s: %s\n", dir, strerror.Text(err))
		return exitTempFail
	}
	root, folder, err := resolveDeliveryDir(dir)
	if err != nil {
		fmt.Fprintf(stderr, "deliverquota: %v\n", err)
		return exitTempFail
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := OpenWithOptions(root, Options{Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "deliverquota: %v\n", err)
		return exitTempFail
	}
	if !newQuota.IsZero() {
		// Rebuild maildirsize only when the quota changes: the MTA passes
		// the same QUOTA on every delivery.
		ms, err := m.readMaildirsize()
		if err != nil {
			fmt.Fprintf(stderr, "deliverquota: %v\n", err)
			return exitTempFail
		}
		if ms == nil || ms.limit != newQuota {
			if err := m.SetQuota(newQuota); err != nil {
				fmt.Fprintf(stderr, "deliverquota: %v\n", err)
				return exitTempFail
			}
		}
	}
	if _, err := m.Deliver(folder, stdin, DeliverOptions{}); err != nil {
		if errors.Is(err, ErrOverQuota) {
			fmt.Fprintln(stderr, "Mail quota exceeded.") // Courier's words (maildrop 2.9.3 and courier-base 1.0.16)
			return exitOverQuota
		}
		fmt.Fprintf(stderr, "deliverquota: %v\n", err)
		return exitTempFail
	}
	if warnPercent > 0 {
		if err := m.maybeWarnQuota(warnPercent, warnFile); err != nil {
			// The message is delivered; a failed warning must not make
			// the MTA deliver it again.
			fmt.Fprintf(stderr, "deliverquota: quota warning: %v\n", err)
		}
	}
	return exitOK
}

// resolveDeliveryDir maps deliverquota's MAILDIR argument to a maildir root
// and folder name: a directory holding maildirfolder is a Maildir++ folder
// whose maildir (and maildirsize) is the parent, as in Courier.
func resolveDeliveryDir(dir string) (root, folder string, err error) {
	clean := filepath.Clean(dir)
	if _, err := os.Stat(filepath.Join(clean, maildirfolderName)); err == nil {
		base := filepath.Base(clean)
		if len(base) < 2 || base[0] != '.' {
			return "", "", fmt.Errorf("%s: folder directory name must start with \".\": %w", dir, ErrBadFolderName)
		}
		if err := ValidFolderName(base[1:]); err != nil {
			return "", "", err
		}
		return filepath.Dir(clean), base[1:], nil
	}
	return clean, Inbox, nil
}

const defaultQuotaWarning = `From: Mail Delivery System <MAILER-DAEMON>
Subject: Mail quota warning
Mime-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Your mailbox on the server is now more than %d%% full.

Please delete some messages (and empty the Trash folder) so that new
mail can still be delivered. When the mailbox is full, new messages are
returned to their senders.
`

// maybeWarnQuota delivers the quota warning into INBOX when usage is at or
// above percent and no warning went out in the last 24 hours.
func (m *Maildir) maybeWarnQuota(percent int, textFile string) error {
	limit, used, err := m.Quota()
	if err != nil || limit.IsZero() || limit.Percent(used) < percent {
		return err
	}
	unlock, err := lockFile(filepath.Join(m.root, "quotawarn.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	stamp := filepath.Join(m.root, "quotawarn")
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < quotaWarnInterval {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var text []byte
	if textFile != "" {
		text, err = readBounded(textFile, 1<<20)
		if err != nil {
			return err
		}
	} else {
		text = fmt.Appendf(nil, defaultQuotaWarning, percent)
	}
	now := time.Now()
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "Date: %s\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Message-Id: <%d.overquota@%s>\n", now.Unix(), m.hostname) // Courier's form
	msg.Write(text)
	if _, err := m.Deliver(Inbox, &msg, DeliverOptions{IgnoreQuota: true}); err != nil {
		return err
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil { // Courier's mode
		return err
	}
	return os.Chtimes(stamp, now, now)
}

// shareFolder gives a folder of a sharable maildir Courier's permissions
// for -s MODE, a comma-separated list: "write" lets others add and remove
// their own messages (sticky, world-writable tmp/ new/ cur/), else they
// may only read; "group" limits either to the owner's group. Unknown words
// are ignored, as Courier ignores them.
func shareFolder(path, mode string) error {
	write, group := false, false
	for _, w := range strings.Split(mode, ",") {
		switch w {
		case "write":
			write = true
		case "group":
			group = true
		}
	}
	top, sub := os.FileMode(0o755), os.FileMode(0o755)
	switch {
	case write && group:
		top, sub = 0o750|os.ModeSticky, 0o770|os.ModeSticky
	case write:
		top, sub = 0o755|os.ModeSticky, 0o777|os.ModeSticky
	case group:
		top, sub = 0o750, 0o750
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.Chmod(filepath.Join(path, d), sub); err != nil {
			return err
		}
	}
	return os.Chmod(path, top)
}

// sharedMaildirsName lists the sharable maildirs a maildir reads, one
// "NICK<TAB>PATH" line each (Courier's format).
const sharedMaildirsName = "shared-maildirs"

// sharedMaildirsMain is maildirmake --add NICK=PATH and --del NICK.
func sharedMaildirsMain(dir string, add bool, spec, nick string, stdout, stderr io.Writer) int {
	path := ""
	if add {
		var ok bool
		nick, path, ok = strings.Cut(spec, "=")
		if !ok || nick == "" || !strings.HasPrefix(path, "/") || strings.ContainsAny(nick, "\t\n/") || strings.ContainsAny(path, "\t\n") {
			fmt.Fprint(stdout, maildirmakeUsage)
			return exitFailure
		}
		if _, err := os.Stat(path); err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", path, strerror.Text(err))
			return exitFailure
		}
	}
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", dir, strerror.Text(err))
		return exitFailure
	}
	file := filepath.Join(dir, sharedMaildirsName)
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "%s: %s\n", file, strerror.Text(err))
		return exitFailure
	}
	var out []string
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		n, _, _ := strings.Cut(line, "\t")
		if n == nick {
			found = true
			if !add {
				continue
			}
		}
		out = append(out, line)
	}
	switch {
	case add && found:
		fmt.Fprintf(stderr, "%s: already defined as a sharable maildir.\n", nick)
		return 2
	case !add && !found:
		fmt.Fprintf(stderr, "%s: not found.\n", nick)
		return exitFailure
	case add:
		out = append(out, nick+"\t"+path)
	}
	content := strings.Join(out, "\n")
	if content != "" {
		content += "\n"
	}
	if err := writeFileAtomic(file, []byte(content), 0o644); err != nil {
		fmt.Fprintf(stderr, "maildirmake: %v\n", err)
		return exitFailure
	}
	return exitOK
}
