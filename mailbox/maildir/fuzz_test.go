package maildir

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// Every parser that reads what another process or a client wrote is
// fuzzed: folder names (IMAP), file names and their info (any program
// writing into the maildir), maildirsize, courierimapuiddb and the
// keyword files. Seeds live in testdata/fuzz/.

func FuzzValidFolderName(f *testing.F) {
	for _, s := range []string{"Sent", "A.B", "..", "a/b", "INBOX", "&AOQ-", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidFolderName(name)
		if err != nil {
			if !errors.Is(err, ErrBadFolderName) {
				t.Fatalf("error %v does not wrap ErrBadFolderName", err)
			}
			return
		}
		// A valid name is one path component under the root, never a
		// way out of it.
		dir := filepath.Join("/root/Maildir", "."+name)
		if filepath.Dir(dir) != "/root/Maildir" {
			t.Fatalf("%q escapes the root: %s", name, dir)
		}
		if strings.ContainsAny(name, "/\x00\n\r\x7f") || strings.Contains(name, "..") || name[0] == '.' || name[len(name)-1] == '.' {
			t.Fatalf("%q accepted", name)
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	for _, s := range []string{"1.M2P3.h,S=10:2,FS", "k:2,Sab", "k:1,x", "k,S=,W=3", "k,S=99999999999999999999", ":2,", "k:2,zzZZ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, info := splitName(name)
		if strings.Contains(key, ":") {
			t.Fatalf("key %q keeps the info separator", key)
		}
		flags, idx := parseInfo(info)
		norm, err := normalizeFlags(flags)
		if err != nil || norm != flags {
			t.Fatalf("parseInfo flags %q not normalized: %q %v", flags, norm, err)
		}
		for i, n := range idx {
			if n < 0 || n >= maxKeywords || (i > 0 && idx[i-1] >= n) {
				t.Fatalf("keyword indexes %v", idx)
			}
		}
		if s := sizeField(key, 'S'); s < -1 {
			t.Fatalf("size %d", s)
		}
		_ = compareKeys(key, name)
	})
}

func FuzzParseMaildirsize(f *testing.F) {
	for _, s := range []string{"100S,5C\n10 1\n-4 -1\n", "garbage", "1000C\n", "S,C\n1 1\n", "\n\n\n", "99999999999999999999S\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		ms := parseMaildirsize([]byte(data))
		if ms.limit.Bytes < 0 || ms.limit.Messages < 0 {
			t.Fatalf("negative limit %+v", ms.limit)
		}
		if q, err := ParseQuota(data); err == nil {
			back, err := ParseQuota(q.String())
			if q.IsZero() {
				if err == nil && !back.IsZero() {
					t.Fatalf("zero quota round trip %+v", back)
				}
				return
			}
			if err != nil || back != q {
				t.Fatalf("round trip %q → %+v → %q → %+v %v", data, q, q.String(), back, err)
			}
		} else if !errors.Is(err, ErrBadQuota) {
			t.Fatalf("error %v does not wrap ErrBadQuota", err)
		}
	})
}

func FuzzParseUIDDB(f *testing.F) {
	for _, s := range []string{"1 1234 5\n1 a\n2 b\n", "1 1 1\n", "3 V1 N2\n", "1 5 2\n9 x\n", "1 1 4294967295\n4294967294 k\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		db, _, err := parseUIDDB([]byte(data))
		if err != nil {
			if !errors.Is(err, errCorruptUIDDB) {
				t.Fatalf("error %v does not wrap errCorruptUIDDB", err)
			}
			return
		}
		seen := map[uint32]bool{}
		for k, u := range db.uids {
			if u == 0 || u >= db.next || seen[u] || k == "" {
				t.Fatalf("inconsistent db: key %q UID %d next %d", k, u, db.next)
			}
			seen[u] = true
		}
		again, _, err := parseUIDDB(db.marshal())
		if err != nil || again.next != db.next || again.validity != db.validity || len(again.uids) != len(db.uids) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func FuzzParseKeywords(f *testing.F) {
	for _, s := range []string{"0 $Junk\n1 work\n", "26 x\n", "-1 y\n", "0 a b\n", "$Junk\nwork\n\nk1:0 1\nk2:5\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		km := parseKeywords([]byte(data))
		for _, n := range km.names {
			if n != "" && ValidKeyword(n) != nil {
				t.Fatalf("invalid keyword %q kept", n)
			}
		}
		if again := parseKeywords(km.marshal()); *again != *km {
			t.Fatalf("round trip differs")
		}
		list, err := parseCourierKeywordList([]byte(data))
		if err != nil {
			return
		}
		for _, idx := range list.messages {
			for _, i := range idx {
				if i < 0 || i >= len(list.names) {
					t.Fatalf("index %d out of %d names", i, len(list.names))
				}
			}
		}
	})
}

// FuzzJournalRecord: a journal record's payload comes from disk after a
// crash; a damaged one must be refused (never a path outside an absolute,
// clean destination), never a panic.
func FuzzJournalRecord(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, '/', 'a', '/', 'n', 'e', 'w', '/', 'k', 'b', 'o', 'd', 'y'})
	f.Add([]byte{1})
	f.Add(append([]byte{1, 1, 2, 3, 4, 5, 6, 7, 8, 12, 0}, "/m/../new/k1"...))
	f.Fuzz(func(t *testing.T, p []byte) {
		dest, _, data, err := decodeRecord(p)
		if err != nil {
			return
		}
		if !filepath.IsAbs(dest) || filepath.Clean(dest) != dest || strings.Contains(dest, "\x00") {
			t.Fatalf("accepted destination %q", dest)
		}
		if len(data) > len(p) {
			t.Fatal("data longer than the record")
		}
	})
}
