package imap

import (
	"context"
	"strings"
	"testing"
	"time"

	"postern/mailbox/smap"
)

// newSMAPEnv starts an IMAP server that hands "\SMAP1" connections to a
// real SMAP server over the same accounts.
func newSMAPEnv(t *testing.T) *testEnv {
	t.Helper()
	var smapSrv *smap.Server
	e := newTestEnv(t, func(o *Options) {
		smapSrv = smap.NewServer(smap.Options{Auth: o.Auth, AllowInsecureAuth: true, Logger: testLogger(t)})
		o.SMAP = smapSrv
	})
	// Runs before the IMAP server's stop and goroutine check.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := smapSrv.Shutdown(ctx); err != nil {
			t.Errorf("smap shutdown: %v", err)
		}
	})
	return e
}

func TestSMAPAdvertisedAndHandedOff(t *testing.T) {
	e := newSMAPEnv(t)
	e.deliver("alice", "INBOX", "Subject: hi\r\n\r\nbody\r\n")
	r := e.dial()
	greet := r.expect("* OK [CAPABILITY ")
	if !strings.Contains(greet, " SMAP1 ") || !strings.Contains(greet, " KEYWORDS ") {
		t.Errorf("greeting without SMAP1 KEYWORDS: %q", greet)
	}
	r.send(`\SMAP1 LOGIN alice secret` + "\n")
	r.expect("+OK SMAP1 LOGIN Ok.")
	r.send("OPEN INBOX\n")
	r.expect("* EXISTS 1")
	r.expect("+OK Folder opened")
	r.send("LOGOUT\n")
	r.expect("* BYE")
	r.expect("+OK LOGOUT completed")
}

func TestSMAPTagOnlyBeforeLogin(t *testing.T) {
	e := newSMAPEnv(t)
	r := e.login("alice", "secret")
	// After login the tag is no IMAP tag, and no switch.
	r.send(`\SMAP1 NOOP` + "\r\n")
	r.expect("* BAD")
	r.send("N1 NOOP\r\n")
	r.expect("N1 OK")
	// A line that only starts like the tag is IMAP's, answered at once.
	r2 := e.dial()
	r2.expect("* OK")
	r2.send(`\SMA` + "\r\n")
	r2.expect("* BAD")
}

func TestNoSMAPWithoutOption(t *testing.T) {
	e := newTestEnv(t, nil)
	r := e.dial()
	if greet := r.expect("* OK [CAPABILITY "); strings.Contains(greet, "SMAP1") {
		t.Errorf("SMAP1 advertised without Options.SMAP: %q", greet)
	}
	r.send(`\SMAP1 LOGIN alice secret` + "\r\n")
	r.expect("* BAD")
}
