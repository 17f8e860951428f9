package maildir

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/internal/dirfact"
)

// newTestMaildir makes a fresh maildir in a temp dir with a quiet logger.
func newTestMaildir(t *testing.T) *Maildir {
	t.Helper()
	root := filepath.Join(t.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		t.Fatal(err)
	}
	m, err := OpenWithOptions(root, Options{Logger: slog.New(slog.DiscardHandler), Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func deliverString(t *testing.T, f *Folder, body string, opt DeliverOptions) string {
	t.Helper()
	key, err := f.Deliver(strings.NewReader(body), opt)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return key
}

func TestDeliverWritesDurableFileInNew(t *testing.T) {
	m := newTestMaildir(t)
	inbox, err := m.Folder("inbox")
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\nhello\r\n"
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	key := deliverString(t, inbox, body, DeliverOptions{InternalDate: date})
	if !strings.HasSuffix(key, ",S=22") {
		t.Errorf("key %q lacks exact size ,S=22", key)
	}
	if !strings.Contains(key, ".test.example") {
		t.Errorf("key %q lacks host name", key)
	}
	st, err := os.Stat(filepath.Join(m.Root(), "new", key))
	if err != nil {
		t.Fatalf("message not in new/: %v", err)
	}
	if !st.ModTime().Equal(date) {
		t.Errorf("mtime %v, want %v", st.ModTime(), date)
	}
	tmp, _ := os.ReadDir(filepath.Join(m.Root(), "tmp"))
	if len(tmp) != 0 {
		t.Errorf("tmp/ not empty after delivery: %v", tmp)
	}
}

func TestHostnameEscaped(t *testing.T) {
	root := filepath.Join(t.TempDir(), "M")
	if err := Make(root); err != nil {
		t.Fatal(err)
	}
	m, err := OpenWithOptions(root, Options{Hostname: "a/b:c", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := m.Deliver(Inbox, strings.NewReader("x"), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(key, `a\057b\072c`) {
		t.Errorf("key %q: host not escaped", key)
	}
}

func TestDeliverWithFlagsGoesToCur(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	key := deliverString(t, inbox, "x", DeliverOptions{Flags: "SF", Keywords: []string{"$Junk", "work"}})
	snap, err := inbox.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 1 {
		t.Fatalf("got %d messages", len(snap.Messages))
	}
	msg := snap.Messages[0]
	if msg.Key != key || msg.Flags != "FS" || !slices.Equal(msg.Keywords, []string{"$Junk", "work"}) {
		t.Errorf("got %+v", msg)
	}
	if msg.Name != "cur/"+key+":2,FSab" {
		t.Errorf("name %q", msg.Name)
	}
}

func TestSyncAssignsUIDsAndPersists(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, deliverString(t, inbox, "message", DeliverOptions{}))
	}
	snap, err := inbox.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 5 || snap.UIDNext != 6 {
		t.Fatalf("snapshot: %d messages, UIDNext %d", len(snap.Messages), snap.UIDNext)
	}
	for i, msg := range snap.Messages {
		if msg.UID != uint32(i+1) || msg.Key != keys[i] {
			t.Errorf("message %d: UID %d key %s, want %d %s", i, msg.UID, msg.Key, i+1, keys[i])
		}
		if !strings.HasPrefix(msg.Name, "cur/") || msg.Size != 7 {
			t.Errorf("message %d: name %s size %d", i, msg.Name, msg.Size)
		}
	}
	// A new Maildir object (a restart) sees the same UIDs.
	m2, err := Open(m.Root())
	if err != nil {
		t.Fatal(err)
	}
	inbox2, _ := m2.Folder(Inbox)
	snap2, err := inbox2.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	if snap2.UIDValidity != snap.UIDValidity || !slices.EqualFunc(snap.Messages, snap2.Messages, func(a, b Message) bool { return a.UID == b.UID && a.Key == b.Key }) {
		t.Errorf("UIDs changed across restart:\n%v\n%v", snap.Messages, snap2.Messages)
	}
	// Expunge one, deliver one: the UID is never reused.
	if err := inbox2.Remove(keys[4]); err != nil {
		t.Fatal(err)
	}
	deliverString(t, inbox2, "later", DeliverOptions{})
	snap3, err := inbox2.Sync(true)
	if err != nil {
		t.Fatal(err)
	}
	last := snap3.Messages[len(snap3.Messages)-1]
	if len(snap3.Messages) != 5 || last.UID != 6 || snap3.UIDNext != 7 {
		t.Errorf("after expunge+deliver: %d messages, last UID %d, next %d", len(snap3.Messages), last.UID, snap3.UIDNext)
	}
	db, err := os.ReadFile(filepath.Join(m.Root(), uidDBName))
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := parseUIDDB(db)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.uids[keys[4]] != 0 || parsed.next != 7 {
		t.Errorf("expunged key still live in courierimapuiddb (next %d):\n%s", parsed.next, db)
	}
}

func TestSetFlagsAndOpen(t *testing.T) {
	m := newTestMaildir(t)
	inbox, _ := m.Folder(Inbox)
	key := deliverString(t, inbox, "body", DeliverOptions{})
	if _, err := inbox.Sync(true); err != nil {
		t.Fatal(err)
	}
	if err := inbox.SetFlags(key, "TSS", []string{"work"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(inbox.Path(), "cur", key+":2,STa")); err != nil {
		t.Fatalf("renamed file missing: %v", err)
	}
	// Another process renames the file behind our back.
	if err := os.Rename(filepath.Join(inbox.Path(), "cur", key+":2,STa"), filepath.Join(inbox.Path(), "cur", key+":2,R")); err != nil {
		t.Fatal(err)
	}
	if err := inbox.SetFlags(key, "F", nil); err != nil {
		t.Fatalf("set flags after foreign rename: %v", err)
	}
	file, err := inbox.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(file)
	file.Close()
	if string(data) != "body" {
		t.Errorf("content %q", data)
	}
	if err := inbox.SetFlags(key, "s", nil); !errors.Is(err, ErrBadFlags) {
		t.Errorf("lower-case flag: err %v, want ErrBadFlags", err)
	}
	if err := inbox.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := inbox.SetFlags(key, "S", nil); !errors.Is(err, ErrNoMessage) {
		t.Errorf("gone message: err %v, want ErrNoMessage", err)
	}
	if _, err := inbox.Open(key); !errors.Is(err, ErrNoMessage) {
		t.Errorf("open gone message: err %v, want ErrNoMessage", err)
	}
}

// Open remembers a maildir seen whole while its directory is unchanged
// (dirfact); a subdirectory removed afterwards is still noticed.
func TestOpenNoticesASubdirectoryRemovedAfterItWasRemembered(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	if err := Make(root); err != nil {
		t.Fatal(err)
	}
	time.Sleep(dirfact.Settle + 100*time.Millisecond)
	if _, err := OpenWithOptions(root, Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(root); !wholeMaildirs.Holds(root, st) {
		t.Fatal("a settled whole maildir was not remembered")
	}
	if err := os.Remove(filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWithOptions(root, Options{Logger: slog.New(slog.DiscardHandler)}); !errors.Is(err, ErrNotMaildir) {
		t.Fatalf("open after tmp/ was removed: %v, want ErrNotMaildir", err)
	}
}
