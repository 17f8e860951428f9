package smap

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"postern/internal/atomicfile"
)

// Snapshots (SOPEN) let a client that kept a folder's index resume it:
// after SOPEN, a NOOP that finds the folder as the client knows it saves
// the view and names it ("* SNAPSHOT id"); a later SOPEN with that id
// restores the view ("* SNAPSHOTEXISTS id") and reports only what changed
// since, as EXPUNGE, EXISTS and FETCH, instead of the whole folder. This is
// how Courier behaves (smapsnapshot.c); the files are Postern's own, in
// the folder's postern-smapsnapshots directory (Courier's
// courierimapsnapshots are in its format, which is not kept here), the
// most recent few per folder.

const (
	snapshotDir  = "postern-smapsnapshots"
	snapshotKeep = 8 // per folder; older ones are removed
	snapshotHead = "POSTERN-SMAP-SNAPSHOT 1"
)

// validSnapshotID: what this server hands out, so a client's word can
// never name a file elsewhere.
func validSnapshotID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// saveSnapshot writes the view and returns its id.
func (of *openFolder) saveSnapshot() (string, error) {
	var rnd [16]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	dir := filepath.Join(of.f.Path(), snapshotDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d\n", snapshotHead, of.snap.UIDValidity)
	for _, m := range of.msgs {
		fmt.Fprintf(&b, "%d %s %d %s %s\n", m.uid, m.key, m.size, orDash(m.flags), orDash(strings.Join(m.keywords, ",")))
	}
	if err := atomicfile.Write(filepath.Join(dir, id), []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	pruneSnapshots(dir)
	return id, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fromDash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// pruneSnapshots keeps the most recent snapshotKeep files.
func pruneSnapshots(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= snapshotKeep {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var files []aged
	for _, e := range entries {
		if info, err := e.Info(); err == nil && validSnapshotID(e.Name()) {
			files = append(files, aged{e.Name(), info.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(files, func(a, b aged) int { return int(min(max(b.mod-a.mod, -1), 1)) })
	for _, f := range files[min(len(files), snapshotKeep):] {
		os.Remove(filepath.Join(dir, f.name))
	}
}

// loadSnapshot reads a saved view of the folder; ok is false when there is
// none by that id or it belongs to another UIDVALIDITY.
func (of *openFolder) loadSnapshot(id string) ([]viewMsg, bool) {
	if !validSnapshotID(id) {
		return nil, false
	}
	f, err := os.Open(filepath.Join(of.f.Path(), snapshotDir, id))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	if !sc.Scan() || sc.Text() != snapshotHead+" "+strconv.FormatUint(uint64(of.snap.UIDValidity), 10) {
		return nil, false
	}
	var msgs []viewMsg
	var last uint64
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 5 {
			return nil, false
		}
		uid, err1 := strconv.ParseUint(fields[0], 10, 32)
		size, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil || uid <= last {
			return nil, false
		}
		last = uid
		m := viewMsg{uid: uint32(uid), key: fields[1], size: size, flags: fromDash(fields[3])}
		if kw := fromDash(fields[4]); kw != "" {
			m.keywords = strings.Split(kw, ",")
		}
		msgs = append(msgs, m)
	}
	if sc.Err() != nil {
		return nil, false
	}
	return msgs, true
}
