package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"postern/policy"
)

// becomeMailUser gives up root's rights for the mail user of the
// "mailuser" setting, once the listeners are bound and before any session
// or delivery runs: Postfix's mail_owner, Dovecot's mail_uid for virtual
// mailboxes. The server's own files in the data directory (queue, state,
// journal, certificates; not the mailboxes under mail/, which belong to
// their accounts) are given to the mail user first, so that it can go on
// writing them. Every account it delivers to must then have the mail
// user's uid (virtual mailboxes): a delivery to another uid is deferred
// with the reason in the log.
func (s *Server) becomeMailUser(cfg *policy.Config) error {
	mu := cfg.MailUser
	if mu == nil {
		return nil
	}
	switch euid := os.Geteuid(); {
	case euid == mu.UID:
		return nil // started as the mail user (systemd's User=, say)
	case euid != 0:
		return fmt.Errorf("mailuser %s: the server runs as uid %d, which cannot become uid %d; start it as root or as that user", mu.Name, euid, mu.UID)
	}
	changed, err := giveDataDir(cfg.DataDir, mu.UID, mu.GID)
	if err != nil {
		return fmt.Errorf("mailuser %s: %w", mu.Name, err)
	}
	if err := syscall.Setgroups([]int{mu.GID}); err != nil {
		return fmt.Errorf("mailuser %s: setgroups: %w", mu.Name, err)
	}
	if err := syscall.Setgid(mu.GID); err != nil {
		return fmt.Errorf("mailuser %s: setgid %d: %w", mu.Name, mu.GID, err)
	}
	if err := syscall.Setuid(mu.UID); err != nil {
		return fmt.Errorf("mailuser %s: setuid %d: %w", mu.Name, mu.UID, err)
	}
	if s.mta != nil && s.mta.Local != nil && s.mta.Local.Agent != nil {
		s.mta.Local.Agent.ResetIdentity()
	}
	s.log.Info("running as the mail user", "mailuser", mu.Name, "uid", mu.UID, "gid", mu.GID, "files_given", changed)
	// What a reload reads must be readable now: say so at once rather
	// than at the first SIGHUP.
	if _, err := policy.Load(cfg.Dir); err != nil {
		s.log.Warn("the configuration does not load as the mail user, so reloads will fail: make it readable by that user (TLS keys included)",
			"mailuser", mu.Name, "err", err)
	}
	for _, sp := range s.authSpecs {
		if sp.Name() == "authpam" {
			s.log.Warn("authpam checks other users' passwords only as root; with mailuser it can fail", "mailuser", mu.Name)
		}
	}
	return nil
}

// giveDataDir makes the mail user the owner of everything in dir but the
// mailboxes and sockets, and returns how many entries changed. Of dir/mail
// (the mailboxes' root in postern init's layout: mail/DOMAIN/USER), the
// directory itself and its domains' directories are given when root owns
// them, so that the mail user reaches the mailboxes; what is below belongs
// to the accounts.
func giveDataDir(dir string, uid, gid int) (int, error) {
	changed := 0
	mail := filepath.Join(dir, "mail")
	give := func(p string, st *syscall.Stat_t) error {
		if int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		changed++
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // gone meanwhile
			}
			return err
		}
		if p == mail {
			return giveMailRoot(mail, give)
		}
		if d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		return give(p, st)
	})
	return changed, err
}

// giveMailRoot gives mail and its subdirectories, when root owns them, and
// tells WalkDir to go no deeper.
func giveMailRoot(mail string, give func(string, *syscall.Stat_t) error) error {
	dirs := []string{mail}
	entries, _ := os.ReadDir(mail)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(mail, e.Name()))
		}
	}
	for _, p := range dirs {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil || st.Uid != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			continue
		}
		if err := give(p, &st); err != nil {
			return err
		}
	}
	return filepath.SkipDir
}
