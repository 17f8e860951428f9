package imap

import (
	"postern/mailbox/maildir"
)

// QUOTA (RFC 9208, compatible with RFC 2087): one quota root, "", for the
// whole Maildir, with the STORAGE (in units of 1024 octets) and MESSAGE
// resources of Maildir++'s maildirsize. Quotas are set by the
// administrator (maildirmake -q, the account's quota), so SETQUOTA is
// refused.
func quotaCommands() []*commandSpec {
	return []*commandSpec{
		{name: "GETQUOTAROOT", states: authenticated, caps: []string{"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"}, parse: parseMailboxArg, exec: execGetQuotaRoot, expungeOK: true},
		{name: "GETQUOTA", states: authenticated, parse: parseMailboxArg, exec: execGetQuota, expungeOK: true},
		{name: "SETQUOTA", states: authenticated, parse: parseSetQuota, exec: execSetQuota, expungeOK: true},
	}
}

// quotaRoot is the name of the only quota root.
const quotaRoot = ""

func execGetQuotaRoot(s *session, c *command) result {
	folder, err := s.folderName(c.args.(string))
	if err != nil {
		return nameResult(err)
	}
	if _, err := s.mail.Folder(folder); err != nil {
		return s.storageResult(err, "GETQUOTAROOT")
	}
	limit, used, err := s.mail.Quota()
	if err != nil {
		return s.storageResult(err, "GETQUOTAROOT")
	}
	w := s.w.line("* QUOTAROOT ")
	w.buf = appendAstring(w.buf, s.imapName(folder))
	if limit.IsZero() {
		// No quota: the mailbox has no quota root (RFC 9208 4.3.2).
		w.end()
		return ok("GETQUOTAROOT completed")
	}
	w.raw(` ""`).end()
	s.writeQuota(limit, used)
	return ok("GETQUOTAROOT completed")
}

func execGetQuota(s *session, c *command) result {
	if c.args.(string) != quotaRoot {
		return no("NONEXISTENT", "No such quota root")
	}
	limit, used, err := s.mail.Quota()
	if err != nil {
		return s.storageResult(err, "GETQUOTA")
	}
	if limit.IsZero() {
		return no("NONEXISTENT", "No quota")
	}
	s.writeQuota(limit, used)
	return ok("GETQUOTA completed")
}

// writeQuota sends `* QUOTA "" (STORAGE used limit MESSAGE used limit)`
// with the resources that have a limit.
func (s *session) writeQuota(limit, used maildir.Quota) {
	w := s.w.line(`* QUOTA "" (`)
	first := true
	if limit.Bytes > 0 {
		// STORAGE counts units of 1024 octets, rounded up.
		w.raw("STORAGE ").num(uint64((max(used.Bytes, 0) + 1023) / 1024)).byte(' ').num(uint64(limit.Bytes / 1024))
		first = false
	}
	if limit.Messages > 0 {
		if !first {
			w.byte(' ')
		}
		w.raw("MESSAGE ").num(uint64(max(used.Messages, 0))).byte(' ').num(uint64(limit.Messages))
	}
	w.byte(')').end()
}

// parseSetQuota reads and discards "SP root SP (list)": the command is
// refused, but its syntax is checked so that a bad one gets BAD.
func parseSetQuota(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	if _, err := d.astring(); err != nil {
		return nil, err
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	if err := d.expect('(', "'('"); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		b, err := d.peek()
		if err != nil {
			return nil, err
		}
		if b == ')' {
			d.readByte()
			return nil, nil
		}
		if i > 0 {
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		if i > 32 {
			return nil, syntaxErr("too many quota resources")
		}
		if _, err := d.atom(); err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if _, err := d.number64(); err != nil {
			return nil, err
		}
	}
}

func execSetQuota(s *session, c *command) result {
	return no("NOPERM", "Quotas are set by the administrator")
}
