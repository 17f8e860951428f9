package imap

// SEARCHRES (RFC 5182): "SEARCH RETURN (SAVE)" keeps the result of a search
// in the session, and "$" names it wherever a command takes a sequence set
// (FETCH, STORE, COPY, MOVE, UID EXPUNGE, the SEQ and UID search keys, and
// their UID forms).
//
// The result is kept as UIDs in the selected mailbox's state: a message
// expunged since is no longer found (RFC 5182 2.1: it leaves the list), a
// message that arrived since is never added, and selecting, examining or
// leaving a mailbox drops it with the rest of that state.

// seqArg is a sequence-set argument of a selected-state command: a set as
// the client wrote it, or "$", the saved search result (RFC 5182 3:
// "sequence-set =/ seq-last-command", seq-last-command = "$").
type seqArg struct {
	set  seqSet
	last bool // "$"
}

// seqArg reads a sequence set or "$". "$" stands alone: "$,1" or "1:$" are
// not sequence sets.
func (d *decoder) seqArg() (seqArg, error) {
	b, err := d.peek()
	if err != nil {
		return seqArg{}, err
	}
	if b != '$' {
		set, err := d.seqSet()
		return seqArg{set: set}, err
	}
	d.readByte()
	if b, err := d.peek(); err == nil && (isAtomChar(b) || b == '*') {
		return seqArg{}, syntaxErr(`"$" must stand alone`)
	}
	return seqArg{last: true}, nil
}

// expand gives the set a command works on: the client's own, or for "$"
// the saved result, as UIDs for a UID command and as the sequence numbers
// those messages have in the view now for the others. An empty saved
// result is an empty set: the command then touches no message.
func (sel *selected) expand(a seqArg, uid bool) seqSet {
	if !a.last {
		return a.set
	}
	nums := make([]uint32, 0, len(sel.saved))
	for _, u := range sel.saved {
		if uid {
			nums = append(nums, u)
		} else if i := sel.indexOfUID(u); i >= 0 {
			nums = append(nums, uint32(i+1))
		}
	}
	return setOf(nums)
}

// setOf turns ascending numbers into a set of ranges.
func setOf(nums []uint32) seqSet {
	set := seqSet{}
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		set = append(set, seqRange{nums[i], nums[j]})
		i = j + 1
	}
	return set
}

// saveResult stores a SEARCH result (view indexes, ascending) as the
// search result variable. With only MIN and/or MAX among the other RETURN
// options, only those messages are saved (RFC 5182 2.4).
func (sel *selected) saveResult(matches []int, ret map[string]bool) {
	if len(matches) > 0 && (ret["MIN"] || ret["MAX"]) && !ret["ALL"] && !ret["COUNT"] {
		var keep []int
		if ret["MIN"] {
			keep = append(keep, matches[0])
		}
		if ret["MAX"] && (len(keep) == 0 || keep[0] != matches[len(matches)-1]) {
			keep = append(keep, matches[len(matches)-1])
		}
		matches = keep
	}
	saved := make([]uint32, len(matches))
	for k, i := range matches {
		saved[k] = sel.msgs[i].uid
	}
	sel.saved = saved
}

// resolveSavedKeys replaces "$" in the SEQ and UID keys of a search
// program by the saved result, as sequence numbers or UIDs.
func (sel *selected) resolveSavedKeys(k *searchKey) {
	if k.last {
		k.set = sel.expand(seqArg{last: true}, k.op == "UID")
		k.last = false
	}
	for _, c := range k.children {
		sel.resolveSavedKeys(c)
	}
}
