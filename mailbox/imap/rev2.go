package imap

// IMAP4rev2 (RFC 9051). The server speaks IMAP4rev1 and advertises both;
// "ENABLE IMAP4rev2" switches a session to rev2 behaviour (RFC 9051 6.3.1).
// Most of rev2 is the rev1 extensions this server has anyway; what a
// rev2 session changes is decided in one place each, by s.rev2():
//
//   - no \Recent: views are built without it (view.go), no "* n RECENT"
//     (SELECT, EXAMINE, updates), STATUS RECENT and the search keys NEW,
//     OLD and RECENT are BAD (they left the grammar);
//   - SELECT and EXAMINE answer a "* LIST" of the mailbox instead of
//     "* n RECENT" and "OK [UNSEEN n]", and "OK [CLOSED]" when a mailbox
//     was selected (RFC 9051 6.3.2, 7.1);
//   - SEARCH always answers ESEARCH (RFC 9051 6.4.4);
//   - mailbox names are UTF-8 both ways (RFC 9051 5.1; names.go);
//   - LIST marks a name that exists only as a parent \NonExistent
//     (RFC 9051 7.3.1), not \Noselect.
//
// docs/imap.md goes through RFC 9051 Appendix E item by item.

// rev2 reports whether the client enabled IMAP4rev2.
func (s *session) rev2() bool { return s.enabled["IMAP4REV2"] }

// utf8Accept reports whether the client enabled UTF8=ACCEPT (RFC 6855).
func (s *session) utf8Accept() bool { return s.enabled["UTF8=ACCEPT"] }

// utf8Names: mailbox names are UTF-8 both ways, after ENABLE IMAP4rev2
// (RFC 9051 5.1) or ENABLE UTF8=ACCEPT (RFC 6855 3); on disk they stay
// modified UTF-7, as Courier keeps them.
func (s *session) utf8Names() bool { return s.rev2() || s.utf8Accept() }

// writeSelectedList sends the "* LIST" a rev2 SELECT or EXAMINE answers
// with (RFC 9051 6.3.2): the mailbox's name and accurate attributes.
func (s *session) writeSelectedList(name, folder string) {
	attrs := []string{`\HasNoChildren`}
	if entries, err := s.hierarchy(); err == nil && entries[name] != nil && entries[name].children {
		attrs[0] = `\HasChildren`
	}
	if su := specialUseAttr(folder); su != "" && !s.isSharedName(name) {
		attrs = append(attrs, su)
	}
	s.writeListLine("LIST", attrs, name)
}

// parentOnlyAttr is the LIST attribute of a name that exists only as the
// parent of other mailboxes: \Noselect for IMAP4rev1 clients, which know
// no other, \NonExistent for rev2 ones (RFC 9051 7.3.1).
func (s *session) parentOnlyAttr() string {
	if s.rev2() {
		return `\NonExistent`
	}
	return `\Noselect`
}

// utf8AcceptCharset checks SORT's and THREAD's mandatory charset after
// ENABLE UTF8=ACCEPT: only UTF-8 (RFC 6855 3, erratum 4029).
func (s *session) utf8AcceptCharset(charset string) (result, bool) {
	if s.utf8Accept() && !s.rev2() && charset != "UTF-8" {
		return bad("only CHARSET UTF-8 after ENABLE UTF8=ACCEPT"), true
	}
	return result{}, false
}

// rev2SearchKeys rejects the search keys IMAP4rev2 dropped with \Recent.
func rev2SearchKeys(k *searchKey) error {
	switch k.op {
	case "NEW", "OLD", "RECENT":
		return syntaxErr("%s is not a search key in IMAP4rev2", k.op)
	}
	for _, c := range k.children {
		if err := rev2SearchKeys(c); err != nil {
			return err
		}
	}
	return nil
}
