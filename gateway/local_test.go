package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"postern/gateway/delivery"
	"postern/mailbox/maildir"
)

// A queued local delivery repeated with the same key (the queue crashed
// before recording it) is not delivered twice.
func TestLocalDeliveryKeyIsIdempotent(t *testing.T) {
	r := newTestRouter(t, "", "alice@example.test")
	acct, _ := r.lookupAccount(context.Background(), "alice", "example.test")
	if err := maildir.Make(acct.MaildirPath()); err != nil {
		t.Fatal(err)
	}
	ld := &LocalDelivery{Router: r}
	env := &delivery.Envelope{ID: "q1", From: "bob@example.net"}
	msg := newBytesMessage([]byte("Subject: once\r\n\r\nbody\r\n"))
	rc := delivery.Recipient{Addr: "alice@example.test", Local: true, DeliveryKey: "q1.0"}
	for i := 0; i < 3; i++ {
		if res := ld.Deliver(context.Background(), env, []delivery.Recipient{rc}, msg); res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(acct.MaildirPath(), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d copies delivered for one key", len(files))
	}
	rc.DeliveryKey = "" // direct deliveries have no key: each one counts
	ld.Deliver(context.Background(), env, []delivery.Recipient{rc}, msg)
	files, _ = filepath.Glob(filepath.Join(acct.MaildirPath(), "new", "*"))
	if len(files) != 2 {
		t.Fatalf("%d files after a keyless delivery", len(files))
	}
}

// The SMTP session delivers to the accounts it resolved at RCPT, without a
// second lookup: a virtual-domain alias to a domain-less account
// ("@virt.test: john" makes sales@virt.test john-sales@virt.test, which
// only the domain-less lookup finds) lands in john's Maildir with the
// extension "sales".
func TestInSessionDeliveryUsesTheResolvedAccount(t *testing.T) {
	r := newTestRouter(t, "@virt.test: john\n", "john")
	targets, ref := r.Resolve(context.Background(), "sales@virt.test", false)
	if ref != nil {
		t.Fatal(ref)
	}
	if len(targets) != 1 || targets[0].Account == nil || targets[0].Extension != "sales" {
		t.Fatalf("targets = %+v", targets)
	}
	acct := targets[0].Account
	if err := maildir.Make(acct.MaildirPath()); err != nil {
		t.Fatal(err)
	}
	ld := &LocalDelivery{Router: r}
	env := delivery.Envelope{From: "bob@example.net"}
	if _, err := accept(context.Background(), ld, nil, env, targets, []byte("Subject: hi\r\n\r\nbody\r\n"), forwarding{Sender: env.From}, nil, slog.Default()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(acct.MaildirPath(), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in john's Maildir, want 1", len(files))
	}
}
