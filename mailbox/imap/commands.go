package imap

import "sync/atomic"

// commandSpec describes one command: where it is valid, how its arguments
// are read, what runs it, and which capabilities its presence implies. The
// CAPABILITY response is computed from the registered specs, so an extension
// cannot be advertised without its command being here.
type commandSpec struct {
	name   string
	states state
	// caps are the capability names this command implements.
	caps []string
	// parse reads the arguments, starting with the space after the name,
	// up to (not including) the CRLF. nil means "no arguments".
	parse func(d *decoder) (any, error)
	exec  func(s *session, c *command) result
	// ownsLineEnd: exec reads the rest of the command itself (APPEND's
	// message literal is streamed, then the CRLF).
	ownsLineEnd bool
	// expungeOK: untagged EXPUNGE may follow this command. RFC 3501 7.4.1
	// forbids it after FETCH, STORE and SEARCH (sequence numbers would
	// shift under the client's feet); UID variants follow the same rule.
	expungeOK bool
	// noUpdates: the command reports changes itself (SELECT, IDLE, EXPUNGE)
	// or must not report any (LOGOUT).
	noUpdates bool
	count     atomic.Uint64
}

// newCommandTable builds the table; one function per command family adds
// its commands.
func newCommandTable() map[string]*commandSpec {
	t := map[string]*commandSpec{}
	add := func(specs ...*commandSpec) {
		for _, c := range specs {
			t[c.name] = c
		}
	}
	add(anyStateCommands()...)
	add(authCommands()...)
	add(mailboxCommands()...)
	add(appendCommands()...)
	add(selectCommands()...)
	add(fetchCommands()...)
	add(storeCommands()...)
	add(searchCommands()...)
	add(sortCommands()...)
	add(quotaCommands()...)
	add(copyCommands()...)
	add(replaceCommands()...)
	add(idleCommands()...)
	add(compressCommands()...)
	add(aclCommands()...)
	return t
}
