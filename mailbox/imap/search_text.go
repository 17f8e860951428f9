package imap

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"

	"postern/mailbox/imap/textindex"
	"postern/mailbox/mime"
)

// SEARCH BODY and TEXT through the folder's text index (textindex,
// postern-imaptext): the index names the messages that may contain the
// string, and only those are read and compared. BODY compares the decoded
// text of the message's text parts, TEXT also its header (RFC 3501 6.4.4);
// the index keeps the trigrams of exactly the strings the matcher
// compares, one field each.
const (
	textFieldBody   textindex.Field = 0
	textFieldHeader textindex.Field = 1
)

// searchHeaderTexts returns the message header as TEXT compares it: the
// raw bytes and the encoded words decoded (RFC 2047), both lowercased.
func searchHeaderTexts(msg *loadedMessage) (raw []byte, decoded string) {
	hdr := msg.data[:min(msg.root.BodyStart, int64(len(msg.data)))]
	return bytes.ToLower(hdr), strings.ToLower(mime.DecodeHeaderValue(string(hdr)))
}

// searchBodyText returns the decoded text BODY and TEXT compare,
// lowercased.
func searchBodyText(msg *loadedMessage) (string, error) {
	t, err := msg.root.Text(bytes.NewReader(msg.data))
	if err != nil {
		return "", err
	}
	return strings.ToLower(t), nil
}

// textIndex returns the folder's text index, opened at the first use, or
// nil when this process cannot own it (another process holds its lock, or
// the folder is not writable): searches then read every message.
func (ix *folderIndex) textIndex() *textindex.Index {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.text == nil && !ix.textTried {
		ix.textTried = true
		dir := filepath.Join(filepath.Dir(ix.path), textindex.DirName)
		t, err := textindex.Open(dir, textindex.Options{Logger: ix.log})
		if err != nil {
			ix.log.Debug("imap: no text index, body search reads the messages", "dir", dir, "err", err)
			return nil
		}
		ix.text = t
	}
	return ix.text
}

// textFilter holds, per BODY or TEXT key of a search program, which
// messages of the view may match; a key it does not hold (a string under
// three bytes, or no index) is not filtered.
type textFilter struct {
	cands map[*searchKey][]bool
}

// excludes reports that view message i cannot match k.
func (f *textFilter) excludes(k *searchKey, i int) bool {
	if f == nil {
		return false
	}
	c, ok := f.cands[k]
	return ok && !c[i]
}

// prepareTextFilter brings the folder's text index up to date with the
// view (reading each message it has not seen once) and asks it for the
// candidates of each BODY and TEXT key of the program. It returns nil when
// the program has no such key worth filtering or there is no index.
func (s *session) prepareTextFilter(key *searchKey) *textFilter {
	var keys []*searchKey
	var walk func(k *searchKey)
	walk = func(k *searchKey) {
		if (k.op == "BODY" || k.op == "TEXT") && len(k.value) >= 3 {
			keys = append(keys, k)
		}
		for _, c := range k.children {
			walk(c)
		}
	}
	walk(key)
	if len(keys) == 0 {
		return nil
	}
	sel := s.sel
	ti := sel.index.textIndex()
	if ti == nil {
		return nil
	}
	live := make([]textindex.Message, len(sel.msgs))
	for i := range sel.msgs {
		live[i] = textindex.Message{UID: sel.msgs[i].uid, Key: sel.msgs[i].key}
	}
	sr, _, err := ti.Update(sel.uidValidity, live, s.textDoc)
	defer sr.Close()
	if err != nil {
		// What is indexed still filters; the rest are candidates.
		s.srv.log.Warn("imap: text index update", "folder", sel.name, "err", err)
	}
	f := &textFilter{cands: map[*searchKey][]bool{}}
	for _, k := range keys {
		fields := []textindex.Field{textFieldBody}
		if k.op == "TEXT" {
			fields = append(fields, textFieldHeader)
		}
		if c := sr.Candidates(k.value, fields...); c != nil {
			f.cands[k] = c
		}
	}
	return f
}

// textDoc reads one message for the text index. A message that cannot be
// read or parsed is left out (ok false): it stays a candidate, and the
// matcher reports what is wrong with it.
func (s *session) textDoc(m textindex.Message) (textindex.Doc, bool) {
	scratch := textScratch.Get().(*[]byte)
	defer func() {
		if cap(*scratch) <= 1<<20 { // a big message's buffer is not kept
			textScratch.Put(scratch)
		}
	}()
	msg, err := s.loadTextMessage(m, scratch)
	if err != nil {
		return textindex.Doc{}, false
	}
	body, err := searchBodyText(msg)
	if err != nil {
		return textindex.Doc{}, false
	}
	raw, decoded := searchHeaderTexts(msg)
	header := []string{string(raw)}
	if decoded != string(raw) {
		header = append(header, decoded)
	}
	text := make([][]string, 2)
	text[textFieldBody] = []string{body}
	text[textFieldHeader] = header
	return textindex.Doc{Text: text}, true
}

// loadTextMessage is loadMessage for the text index, which reads every
// message of a folder once: the file is read into scratch (one buffer
// reused, no *os.File) and parsed without the envelope, which the text
// does not need. The bytes and the MIME tree are the same, so the text
// indexed is the text the matcher compares. The message may use scratch:
// it must be dropped before scratch is used again.
func (s *session) loadTextMessage(m textindex.Message, scratch *[]byte) (*loadedMessage, error) {
	raw, err := s.sel.folder.ReadMessage(m.Key, (*scratch)[:0], maxLoadedMessage)
	*scratch = raw[:0]
	return s.parseLoaded(m.UID, raw, err, mime.ParseStructure)
}

// textScratch holds the buffers loadTextMessage reads into.
var textScratch = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
