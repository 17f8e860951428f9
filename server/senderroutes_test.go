package server

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// senderroutes through the whole server: a submitted message from a
// customer domain leaves through that domain's relay, not the recipient's
// MX; a bad senderroutes file is refused at reload with its file and line
// and the last good rules stay; a good reload changes the choice.
func TestSenderRoutesAndReload(t *testing.T) {
	relay := startRemoteMTA(t)
	_, relayPort, _ := net.SplitHostPort(relay.addr)
	h, mx := newMTAHarnessWith(t, func(h *harness) {
		h.writeSetting("senderroutes", "@example.test: [127.0.0.2],"+relayPort+"\n")
	})
	send := func(subject string) {
		t.Helper()
		if err := submit(t, h, h.user, []string{"bob@remote.example"}, testMessage(subject, "x\r\n"), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	send("through the customer's relay")
	waitFor(t, "delivery to the sender's relay", func() bool { return len(relay.messages()) == 1 })
	if len(mx.messages()) != 0 {
		t.Fatalf("the recipient's MX got %d messages; the sender rule should send them to the relay", len(mx.messages()))
	}
	if got := relay.messages()[0]; got.from != h.user || got.rcpts[0] != "bob@remote.example" {
		t.Fatalf("relay got from %q to %v", got.from, got.rcpts)
	}

	h.writeSetting("senderroutes", "@example.test: [127.0.0.2],"+relayPort+" /nosuchoption\n")
	err := h.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(h.etc, "senderroutes")+":1") {
		t.Fatalf("bad senderroutes: reload error %v, want its file and line", err)
	}
	send("still through the relay")
	waitFor(t, "delivery under the last good rules", func() bool { return len(relay.messages()) == 2 })

	h.writeSetting("senderroutes", "@other.example: [127.0.0.2],"+relayPort+"\n")
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	send("by MX now")
	waitFor(t, "delivery by MX after the reload", func() bool { return len(mx.messages()) == 1 })
	if len(relay.messages()) != 2 {
		t.Fatalf("relay got %d messages after the rule for the sender was removed", len(relay.messages()))
	}
}
