package imap

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// THREAD (RFC 5256 section 3): ORDEREDSUBJECT groups by base subject;
// REFERENCES is the algorithm of section 3 (after Jamie Zawinski's),
// linking messages by Message-ID, References and In-Reply-To, then
// merging threads whose base subjects agree.

type threadArgs struct {
	algorithm string
	search    searchArgs
}

func parseThread(d *decoder) (any, error) {
	if err := d.sp(); err != nil {
		return nil, err
	}
	alg, err := d.atom()
	if err != nil {
		return nil, err
	}
	a := threadArgs{algorithm: strings.ToUpper(alg)}
	switch a.algorithm {
	case "ORDEREDSUBJECT", "REFERENCES":
	default:
		return nil, syntaxErr("unknown THREAD algorithm %s", truncate(alg, 40))
	}
	if err := d.charsetAndKeys(&a.search); err != nil {
		return nil, err
	}
	return a, nil
}

// threadNode is one container of the REFERENCES algorithm; index is the
// view index of its message, -1 for an empty (dummy) container.
type threadNode struct {
	index    int
	id       string
	parent   *threadNode
	children []*threadNode
	date     time.Time
}

func execThread(s *session, c *command) result {
	a := c.args.(threadArgs)
	if r, bad := s.utf8AcceptCharset(a.search.charset); bad {
		return r
	}
	switch a.search.charset {
	case "US-ASCII", "UTF-8":
	default:
		return no("BADCHARSET (US-ASCII UTF-8)", "Unsupported charset")
	}
	s.sel.resolveSavedKeys(a.search.key) // "$" (RFC 5182)
	matches, _, err := s.search(a.search.key)
	if err != nil {
		return s.storageResult(err, "THREAD")
	}
	f := s.sortFacts(matches, true)
	var roots []*threadNode
	if a.algorithm == "ORDEREDSUBJECT" {
		roots = orderedSubjectThreads(matches, f)
	} else {
		roots = referenceThreads(matches, f)
	}
	w := s.w.line("* THREAD ")
	for _, r := range roots {
		w.buf = s.appendThread(w.buf, r, c.uid, true)
	}
	w.end()
	return ok(c.name + " completed")
}

// appendThread writes one thread: "(a b (c)(d e))". A node with one child
// continues the same list; several children each open their own.
func (s *session) appendThread(b []byte, n *threadNode, uid bool, top bool) []byte {
	if top {
		b = append(b, '(')
	}
	first := true
	for n != nil {
		if n.index >= 0 {
			if !first {
				b = append(b, ' ')
			}
			first = false
			if uid {
				b = appendNum(b, uint64(s.sel.msgs[n.index].uid))
			} else {
				b = appendNum(b, uint64(n.index+1))
			}
		}
		switch len(n.children) {
		case 0:
			n = nil
		case 1:
			n = n.children[0]
		default:
			if !first {
				b = append(b, ' ')
			}
			for _, c := range n.children {
				b = append(b, '(')
				b = s.appendThread(b, c, uid, false)
				b = append(b, ')')
			}
			n = nil
		}
	}
	if top {
		b = append(b, ')')
	}
	return b
}

func appendNum(b []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// orderedSubjectThreads: messages sorted by base subject then sent date;
// each run of one base subject is a thread whose first message is the
// parent of the others; threads are ordered by their first message's sent
// date (RFC 5256 section 3, ORDEREDSUBJECT).
func orderedSubjectThreads(matches []int, f *sortFacts) []*threadNode {
	type row struct {
		i    int
		subj string
		date time.Time
	}
	rows := make([]row, len(matches))
	for k, i := range matches {
		base, _ := baseSubject(f.hdr(i).subject)
		rows[k] = row{i, strings.ToUpper(base), f.sentDate(i)}
	}
	slices.SortStableFunc(rows, func(x, y row) int {
		if c := strings.Compare(x.subj, y.subj); c != 0 {
			return c
		}
		if c := x.date.Compare(y.date); c != 0 {
			return c
		}
		return cmp.Compare(x.i, y.i)
	})
	var roots []*threadNode
	for k := 0; k < len(rows); {
		root := &threadNode{index: rows[k].i, date: rows[k].date}
		j := k + 1
		for ; j < len(rows) && rows[j].subj == rows[k].subj; j++ {
			root.children = append(root.children, &threadNode{index: rows[j].i, date: rows[j].date})
		}
		roots = append(roots, root)
		k = j
	}
	sortNodes(roots)
	return roots
}

// sortNodes orders siblings by sent date, then by sequence number.
func sortNodes(nodes []*threadNode) {
	slices.SortStableFunc(nodes, func(x, y *threadNode) int {
		if c := x.date.Compare(y.date); c != 0 {
			return c
		}
		return cmp.Compare(x.firstIndex(), y.firstIndex())
	})
}

func (n *threadNode) firstIndex() int {
	if n.index >= 0 || len(n.children) == 0 {
		return n.index
	}
	return n.children[0].firstIndex()
}

// msgIDs extracts the "<...>" message identifiers of a header value.
func msgIDs(v string) []string {
	var ids []string
	for len(v) > 0 && len(ids) < 1000 {
		a := strings.IndexByte(v, '<')
		if a < 0 {
			break
		}
		b := strings.IndexByte(v[a:], '>')
		if b < 0 {
			break
		}
		id := v[a+1 : a+b]
		if id != "" && !strings.ContainsAny(id, " \t<") {
			ids = append(ids, id)
		}
		v = v[a+b+1:]
	}
	return ids
}

// isAncestor reports whether a is n or one of n's ancestors.
func isAncestor(a, n *threadNode) bool {
	for depth := 0; n != nil && depth < 10000; depth++ {
		if n == a {
			return true
		}
		n = n.parent
	}
	return false
}

func (n *threadNode) removeChild(c *threadNode) {
	n.children = slices.DeleteFunc(n.children, func(x *threadNode) bool { return x == c })
	c.parent = nil
}

func (n *threadNode) addChild(c *threadNode) {
	if c.parent != nil {
		c.parent.removeChild(c)
	}
	c.parent = n
	n.children = append(n.children, c)
}

// referenceThreads is RFC 5256's REFERENCES algorithm.
func referenceThreads(matches []int, f *sortFacts) []*threadNode {
	byID := map[string]*threadNode{}
	var all []*threadNode
	get := func(id string) *threadNode {
		if n := byID[id]; n != nil {
			return n
		}
		n := &threadNode{index: -1, id: id}
		byID[id] = n
		all = append(all, n)
		return n
	}
	// (1) Containers for every message and every referenced ID.
	for _, i := range matches {
		h := f.hdr(i)
		ids := msgIDs(h.messageID)
		var node *threadNode
		if len(ids) > 0 && (byID[ids[0]] == nil || byID[ids[0]].index < 0) {
			node = get(ids[0])
		} else {
			// No Message-ID, or a duplicate: a unique container.
			node = &threadNode{index: -1}
			all = append(all, node)
		}
		node.index = i
		node.date = f.sentDate(i)
		refs := msgIDs(h.references)
		if len(refs) == 0 {
			if irt := msgIDs(h.inReplyTo); len(irt) > 0 {
				refs = irt[:1]
			}
		}
		// (1B) Link the references as a parent chain, without loops and
		// without undoing links made earlier.
		var prev *threadNode
		for _, id := range refs {
			c := get(id)
			if prev != nil && c.parent == nil && !isAncestor(c, prev) {
				prev.addChild(c)
			}
			prev = c
		}
		// (1C) The last reference is the message's parent.
		if node.parent != nil {
			node.parent.removeChild(node)
		}
		if prev != nil && !isAncestor(node, prev) {
			prev.addChild(node)
		}
	}
	// (2) The root set.
	var roots []*threadNode
	for _, n := range all {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	// (3) Prune empty containers.
	roots = pruneEmpty(roots, true)
	// (4) Sort the root set (and, recursively, all children) by date;
	// an empty container takes its first child's date.
	var sortTree func(nodes []*threadNode)
	sortTree = func(nodes []*threadNode) {
		for _, n := range nodes {
			sortTree(n.children)
			if n.index < 0 && len(n.children) > 0 {
				n.date = n.children[0].date
			}
		}
		sortNodes(nodes)
	}
	sortTree(roots)
	// (5) Merge threads with the same base subject.
	subjectOf := func(n *threadNode) (string, bool) {
		if n.index < 0 && len(n.children) > 0 {
			n = n.children[0]
		}
		if n.index < 0 {
			return "", false
		}
		base, reply := baseSubject(f.hdr(n.index).subject)
		return strings.ToUpper(base), reply
	}
	table := map[string]*threadNode{}
	for _, r := range roots {
		subj, reply := subjectOf(r)
		if subj == "" {
			continue
		}
		old := table[subj]
		if old == nil || (old.index >= 0 && r.index < 0) {
			table[subj] = r
			continue
		}
		if _, oldReply := subjectOf(old); old.index >= 0 && oldReply && !reply {
			table[subj] = r
		}
	}
	for _, r := range roots {
		if r.parent != nil {
			continue // already merged under another thread
		}
		subj, reply := subjectOf(r)
		t := table[subj]
		if subj == "" || t == nil || t == r {
			continue
		}
		_, tReply := subjectOf(t)
		switch {
		case t.index < 0 && r.index < 0:
			for _, c := range slices.Clone(r.children) {
				t.addChild(c)
			}
		case t.index < 0:
			t.addChild(r)
		case r.index < 0:
			// An empty container with children: the table's message joins it.
			r.addChild(t)
			table[subj] = r
		case !tReply && reply:
			t.addChild(r)
		default:
			// Neither is a reply of the other: both under a new dummy.
			d := &threadNode{index: -1}
			d.addChild(t)
			d.addChild(r)
			table[subj] = d
		}
	}
	// The threads are the topmost containers; emptied ones drop out.
	var merged []*threadNode
	seen := map[*threadNode]bool{}
	for _, r := range roots {
		top := r
		for top.parent != nil {
			top = top.parent
		}
		if !seen[top] && (top.index >= 0 || len(top.children) > 0) {
			seen[top] = true
			merged = append(merged, top)
		}
	}
	// Re-sort what merging touched, and the roots.
	sortTree(merged)
	return merged
}

// pruneEmpty removes empty containers: one without children vanishes; one
// with children gives them to its parent, except at the root where it is
// kept when it has more than one child (RFC 5256 step 3).
func pruneEmpty(nodes []*threadNode, root bool) []*threadNode {
	var out []*threadNode
	for _, n := range nodes {
		n.children = pruneEmpty(n.children, false)
		if n.index >= 0 {
			out = append(out, n)
			continue
		}
		switch {
		case len(n.children) == 0:
		case root && len(n.children) > 1:
			out = append(out, n)
		default:
			for _, c := range n.children {
				c.parent = n.parent
				out = append(out, c)
			}
		}
	}
	return out
}
