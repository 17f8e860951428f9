package maildir

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

func TestDovecotUIDListImportKeepsUIDsAndKeywords(t *testing.T) {
	m := newTestMaildir(t)
	root := m.Root()
	keys := []string{"1600000000.M1P1.dove,S=5,W=6", "1600000001.M1P1.dove,S=5", "1600000002.M1P1.dove,S=5"}
	writeFile(t, filepath.Join(root, "cur", keys[0]+":2,Sa"), "aaaaa")
	writeFile(t, filepath.Join(root, "cur", keys[1]+":2,"), "bbbbb")
	writeFile(t, filepath.Join(root, "new", keys[2]), "ccccc")
	writeFile(t, filepath.Join(root, "dovecot-keywords"), "0 $Forwarded\n")
	writeFile(t, filepath.Join(root, dovecotUIDListName), fmt.Sprintf(
		"3 V1500000000 N40 G3085f01b7f11094c501100008c4a11c1\n5 W6 :%s\n17 :%s\n38 G2f2b S5 :%s\n", keys[0], keys[1], keys[2]))
	inbox, _ := m.Folder(Inbox)
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.UIDValidity != 1500000000 || snap.UIDNext != 40 {
		t.Errorf("validity %d next %d, want 1500000000 40", snap.UIDValidity, snap.UIDNext)
	}
	var uids []uint32
	for _, msg := range snap.Messages {
		uids = append(uids, msg.UID)
	}
	if !slices.Equal(uids, []uint32{5, 17, 38}) {
		t.Errorf("UIDs %v, want [5 17 38]", uids)
	}
	if !slices.Equal(snap.Messages[0].Keywords, []string{"$Forwarded"}) {
		t.Errorf("keywords %v", snap.Messages[0].Keywords)
	}
	// The import wrote courierimapuiddb; a new delivery continues at 40.
	deliverString(t, inbox, "d", DeliverOptions{})
	snap, err = inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if last := snap.Messages[len(snap.Messages)-1].UID; last != 40 {
		t.Errorf("next delivery got UID %d, want 40", last)
	}
}

func TestParseDovecotUIDList(t *testing.T) {
	db, err := parseDovecotUIDList([]byte("1 77 9\n3 a.b\n4 c.d:2,S\n"))
	if err != nil || db.validity != 77 || db.next != 9 || db.uids["a.b"] != 3 || db.uids["c.d"] != 4 {
		t.Errorf("version 1: %+v %v", db, err)
	}
	for _, bad := range []string{"", "2 V1", "3 N5", "3 V1 N2\n0 :x", "3 V1 N2\n1 :a\n1 :b", "3 V1 N2\n1 W5", "1 5\n"} {
		if _, err := parseDovecotUIDList([]byte(bad)); !errors.Is(err, errCorruptUIDDB) {
			t.Errorf("%q: err %v, want errCorruptUIDDB", bad, err)
		}
	}
}

func FuzzParseDovecotUIDList(f *testing.F) {
	f.Add([]byte("3 V1500000000 N40 G3085f01b\n5 W6 :a.b,S=5\n17 :c\n"))
	f.Add([]byte("1 77 9\n3 a.b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := parseDovecotUIDList(data)
		if err != nil {
			return
		}
		for k, u := range db.uids {
			if k == "" || u == 0 || u >= db.next {
				t.Fatalf("entry %q=%d with next %d", k, u, db.next)
			}
		}
	})
}
