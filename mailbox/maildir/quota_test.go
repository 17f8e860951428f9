package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseQuota(t *testing.T) {
	good := map[string]Quota{
		"5000000S":       {Bytes: 5000000},
		"1000C":          {Messages: 1000},
		"5000000S,1000C": {Bytes: 5000000, Messages: 1000},
		"1000C,5000000S": {Bytes: 5000000, Messages: 1000},
		" 10S ":          {Bytes: 10},
	}
	for in, want := range good {
		got, err := ParseQuota(in)
		if err != nil || got != want {
			t.Errorf("ParseQuota(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "S", "10", "10X", "-5S", "+5S", "10S,20S", "10S,", ",10S", "1e3S", "99999999999999999999S", "10 S", "10s"} {
		if _, err := ParseQuota(bad); !errors.Is(err, ErrBadQuota) {
			t.Errorf("ParseQuota(%q) err = %v, want ErrBadQuota", bad, err)
		}
	}
	if s := (Quota{Bytes: 10, Messages: 2}).String(); s != "10S,2C" {
		t.Errorf("String() = %q", s)
	}
	if s := (Quota{Messages: 2}).String(); s != "2C" {
		t.Errorf("String() = %q", s)
	}
}

func TestQuotaOverAndUnder(t *testing.T) {
	m := newTestMaildir(t)
	if err := m.SetQuota(Quota{Bytes: 100, Messages: 3}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(m.Root(), maildirsizeName))
	if !strings.HasPrefix(string(data), "100S,3C\n") {
		t.Errorf("maildirsize = %q", data)
	}
	inbox, _ := m.Folder(Inbox)
	k1 := deliverString(t, inbox, strings.Repeat("x", 60), DeliverOptions{})
	if _, err := inbox.Deliver(strings.NewReader(strings.Repeat("y", 41)), DeliverOptions{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("101 bytes of 100: err %v, want ErrOverQuota", err)
	}
	entries, _ := os.ReadDir(filepath.Join(m.Root(), "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp/ keeps a refused message: %v", entries)
	}
	deliverString(t, inbox, strings.Repeat("y", 40), DeliverOptions{}) // exactly 100
	limit, used, err := m.Quota()
	if err != nil || limit != (Quota{Bytes: 100, Messages: 3}) || used != (Quota{Bytes: 100, Messages: 2}) {
		t.Errorf("Quota() = %+v %+v %v", limit, used, err)
	}
	deliverString(t, inbox, strings.Repeat("z", 500), DeliverOptions{IgnoreQuota: true})
	if err := inbox.Remove(k1); err != nil {
		t.Fatal(err)
	}
	_, used, _ = m.Quota()
	if used != (Quota{Bytes: 540, Messages: 2}) {
		t.Errorf("after remove: used %+v", used)
	}
	// Message-count limit.
	if err := m.SetQuota(Quota{Messages: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Deliver(strings.NewReader("a"), DeliverOptions{}); !errors.Is(err, ErrOverQuota) {
		t.Errorf("3rd message of 2: %v", err)
	}
	// Trash does not count, nor messages flagged T.
	if err := m.CreateFolder("Trash"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Deliver("Trash", strings.NewReader("a"), DeliverOptions{}); err != nil {
		t.Errorf("delivery to Trash refused: %v", err)
	}
	snap, _ := inbox.Sync(true)
	if err := inbox.SetFlags(snap.Messages[0].Key, "T", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Deliver(strings.NewReader("a"), DeliverOptions{}); err != nil {
		t.Errorf("after flagging one T the count is 1 of 2: %v", err)
	}
	// Zero quota removes the limit.
	if err := m.SetQuota(Quota{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.Root(), maildirsizeName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("maildirsize still there: %v", err)
	}
}

func TestQuotaRecalculatedWhenStale(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	var keys []string
	for i := 0; i < 3; i++ {
		keys = append(keys, deliverString(t, inbox, strings.Repeat("x", 30), DeliverOptions{}))
	}
	if err := m.SetQuota(Quota{Bytes: 100}); err != nil { // one usage line: 90 bytes
		t.Fatal(err)
	}
	// Two messages removed behind maildirsize's back (a shell rm).
	for _, k := range keys[:2] {
		os.Remove(filepath.Join(inbox.Path(), "new", k))
	}
	// Fresh file with a single line: Courier trusts it and refuses.
	if _, err := inbox.Deliver(strings.NewReader(strings.Repeat("y", 20)), DeliverOptions{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("fresh maildirsize: err %v, want ErrOverQuota", err)
	}
	old := time.Now().Add(-16 * time.Minute)
	if err := os.Chtimes(filepath.Join(m.Root(), maildirsizeName), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Deliver(strings.NewReader(strings.Repeat("y", 20)), DeliverOptions{}); err != nil {
		t.Fatalf("16-minute-old maildirsize must be recalculated: %v", err)
	}
	_, used, _ := m.Quota()
	if used != (Quota{Bytes: 50, Messages: 2}) {
		t.Errorf("used %+v, want 50 bytes 2 messages", used)
	}
}

func TestQuotaRecalculatedAt5120Bytes(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	deliverString(t, inbox, "0123456789", DeliverOptions{})
	// A maildirsize grown to 5120 bytes whose lines claim far more usage
	// than the maildir holds.
	var b strings.Builder
	b.WriteString("1000S\n")
	for b.Len() < maildirsizeRecalcSize {
		b.WriteString("         100            1\n")
	}
	writeFile(t, filepath.Join(m.Root(), maildirsizeName), b.String())
	if _, err := inbox.Deliver(strings.NewReader("abc"), DeliverOptions{}); err != nil {
		t.Fatalf("delivery after 5120-byte maildirsize: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(m.Root(), maildirsizeName))
	if len(data) >= 200 || !strings.HasPrefix(string(data), "1000S\n") {
		t.Errorf("maildirsize not rebuilt: %d bytes %q", len(data), data[:min(len(data), 80)])
	}
	_, used, _ := m.Quota()
	if used != (Quota{Bytes: 13, Messages: 2}) {
		t.Errorf("used %+v", used)
	}
}

func TestParseMaildirsize(t *testing.T) {
	ms := parseMaildirsize([]byte("100S,5C\n  10 1\n-4 -1\nbogus\n7 1\n"))
	if ms.limit != (Quota{Bytes: 100, Messages: 5}) || ms.used != (Quota{Bytes: 13, Messages: 1}) || ms.lines != 3 || ms.needRecalc {
		t.Errorf("parsed %+v", ms)
	}
	if ms := parseMaildirsize([]byte("100S\n-5 -1\n")); !ms.needRecalc {
		t.Errorf("negative total must ask for recalculation")
	}
}

func TestDefaultQuotaCreatesMaildirsize(t *testing.T) {
	m := newTestMaildir(t)
	m2, err := OpenWithOptions(m.Root(), Options{DefaultQuota: Quota{Bytes: 10}, Logger: m.log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Deliver(Inbox, strings.NewReader("12345678901"), DeliverOptions{}); !errors.Is(err, ErrOverQuota) {
		t.Errorf("11 bytes with default quota 10: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(m.Root(), maildirsizeName))
	if !strings.HasPrefix(string(data), "10S\n") {
		t.Errorf("maildirsize = %q", data)
	}
}
