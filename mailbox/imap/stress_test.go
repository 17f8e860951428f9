package imap

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestConcurrentSessionsStayConsistent runs several sessions on one folder
// that append, flag, expunge and poll at once while an MTA delivers. At the
// end every session's view (its message count, kept only from EXISTS and
// EXPUNGE responses, and its UID list) must equal the folder on disk.
func TestConcurrentSessionsStayConsistent(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := 0; i < 10; i++ {
		env.deliver("alice", "INBOX", fmt.Sprintf("Subject: seed %d\n\nx\n", i))
	}
	const sessions, rounds = 4, 15
	var wg sync.WaitGroup
	clients := make([]*clientT, sessions)
	for i := range clients {
		clients[i] = &clientT{c: env.dialClient("alice", "secret", nil)}
		if _, err := clients[i].c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, sessions*rounds*4)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cl.c
			for r := 0; r < rounds; r++ {
				msg := []byte(fmt.Sprintf("Subject: s%d r%d\r\n\r\nbody\r\n", i, r))
				cmd := c.Append("INBOX", int64(len(msg)), nil)
				cmd.Write(msg)
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					errs <- fmt.Errorf("append: %w", err)
				}
				if err := c.Noop().Wait(); err != nil {
					errs <- err
				}
				n := c.Mailbox().NumMessages
				if n > 0 {
					seq := uint32(r%int(n)) + 1
					flag := imap.FlagFlagged
					if r%3 == 0 {
						flag = imap.FlagDeleted
					}
					// Another session may have expunged it: RFC 2180 4.2.1
					// allows NO [EXPUNGEISSUED] then.
					if err := c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil && !strings.Contains(err.Error(), "EXPUNGEISSUED") {
						errs <- fmt.Errorf("store: %w", err)
					}
				}
				if r%4 == 0 {
					if err := c.Expunge().Close(); err != nil {
						errs <- fmt.Errorf("expunge: %w", err)
					}
				}
				if i == 0 && r%5 == 0 {
					env.deliver("alice", "INBOX", "Subject: mta\n\nx\n")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	f, err := env.maildir("alice").Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := f.Sync(false)
	if err != nil {
		t.Fatal(err)
	}
	for i, cl := range clients {
		if err := cl.c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if got := cl.c.Mailbox().NumMessages; got != uint32(len(snap.Messages)) {
			t.Errorf("session %d counts %d messages from EXISTS/EXPUNGE, folder has %d", i, got, len(snap.Messages))
		}
		msgs, err := cl.c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(snap.Messages) {
			t.Fatalf("session %d fetched %d messages, folder has %d", i, len(msgs), len(snap.Messages))
		}
		for j, m := range msgs {
			if uint32(m.UID) != snap.Messages[j].UID || m.SeqNum != uint32(j+1) {
				t.Fatalf("session %d: seq %d is UID %d, folder says UID %d", i, m.SeqNum, m.UID, snap.Messages[j].UID)
			}
		}
	}
}

type clientT struct{ c *imapclient.Client }
