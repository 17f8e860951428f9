package imap

import (
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"postern/mailbox/maildir"
)

func TestQuotaWithGoIMAPClient(t *testing.T) {
	env := newTestEnv(t, nil)
	m := env.maildir("alice")
	if err := m.SetQuota(maildir.Quota{Bytes: 100 << 10, Messages: 50}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		env.deliver("alice", "INBOX", crlfMessage)
	}
	c := env.dialClient("alice", "secret", nil)
	caps, _ := c.Capability().Wait()
	for _, cp := range []imap.Cap{imap.CapQuota, "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "APPENDLIMIT=67108864", imap.CapListExtended, imap.CapListStatus} {
		if !caps.Has(cp) {
			t.Errorf("capability %s missing", cp)
		}
	}
	roots, err := c.GetQuotaRoot("INBOX").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || roots[0].Root != "" {
		t.Fatalf("GETQUOTAROOT: %+v", roots)
	}
	st := roots[0].Resources[imap.QuotaResourceStorage]
	msg := roots[0].Resources[imap.QuotaResourceMessage]
	if st.Limit != 100 || st.Usage != 1 || msg.Limit != 50 || msg.Usage != 3 {
		t.Errorf("quota resources: storage %+v message %+v", st, msg)
	}
	q, err := c.GetQuota("").Wait()
	if err != nil || q.Resources[imap.QuotaResourceMessage].Usage != 3 {
		t.Errorf("GETQUOTA: %+v %v", q, err)
	}
	if err := c.SetQuota("", map[imap.QuotaResourceType]int64{imap.QuotaResourceStorage: 1}).Wait(); err == nil {
		t.Error("SETQUOTA accepted")
	}
	// No quota at all: no quota root.
	r := env.login("bob", "hunter2")
	r.send("q GETQUOTAROOT INBOX\r\n")
	if l := r.expect("* QUOTAROOT"); l != "* QUOTAROOT INBOX" {
		t.Errorf("without quota: %q", l)
	}
	r.expect("q OK")
}

func TestListExtendedAndListStatus(t *testing.T) {
	env := newTestEnv(t, nil)
	env.deliver("alice", "INBOX", crlfMessage)
	env.deliver("alice", "INBOX", crlfMessage)
	r := env.login("alice", "secret")
	r.send("c1 CREATE Work.2024\r\nc2 CREATE Old\r\nc3 CREATE Gone\r\ns1 SUBSCRIBE Work.2024\r\ns2 SUBSCRIBE Gone\r\nd3 DELETE Gone\r\n")
	for _, tag := range []string{"c1", "c2", "c3", "s1", "s2", "d3"} {
		r.until(tag + " OK")
	}

	r.send(`l1 LIST (SUBSCRIBED) "" "*"` + "\r\n")
	got := r.until("l1 OK")
	text := strings.Join(got, "\n")
	for _, want := range []string{
		`* LIST (\HasNoChildren \Subscribed) "." Work.2024`,
		`* LIST (\NonExistent \HasNoChildren \Subscribed) "." Gone`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("LIST (SUBSCRIBED) lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, " Old") {
		t.Errorf("LIST (SUBSCRIBED) lists an unsubscribed folder:\n%s", text)
	}
	r.send(`l2 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"` + "\r\n")
	text = strings.Join(r.until("l2 OK"), "\n")
	if !strings.Contains(text, `"." Work ("CHILDINFO" ("SUBSCRIBED"))`) {
		t.Errorf("RECURSIVEMATCH lacks CHILDINFO for Work:\n%s", text)
	}
	r.send(`l3 LIST "" (INBOX Old) RETURN (STATUS (MESSAGES UNSEEN) SUBSCRIBED)` + "\r\n")
	lines := r.until("l3 OK")
	want := []string{
		`* LIST (\HasNoChildren) "." INBOX`,
		`* STATUS INBOX (MESSAGES 2 UNSEEN 2)`,
		`* LIST (\HasNoChildren) "." Old`,
		`* STATUS Old (MESSAGES 0 UNSEEN 0)`,
	}
	if strings.Join(lines[:len(lines)-1], "\n") != strings.Join(want, "\n") {
		t.Errorf("LIST RETURN (STATUS):\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	r.send(`l4 LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)` + "\r\n")
	text = strings.Join(r.until("l4 OK"), "\n")
	if !strings.Contains(text, `\Trash`) || strings.Contains(text, "Work") {
		t.Errorf("LIST (SPECIAL-USE):\n%s", text)
	}
	r.send(`l5 LIST (RECURSIVEMATCH) "" "*"` + "\r\n" + `l6 LIST (BOGUS) "" "*"` + "\r\n" + "a1 STATUS INBOX (APPENDLIMIT)\r\n")
	r.expect("l5 BAD")
	r.expect("l6 BAD")
	if l := r.expect("* STATUS"); l != "* STATUS INBOX (APPENDLIMIT 67108864)" {
		t.Errorf("STATUS APPENDLIMIT: %q", l)
	}

	c := env.dialClient("alice", "secret", nil)
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if l.Mailbox == "INBOX" && l.Status != nil && l.Status.NumMessages != nil && *l.Status.NumMessages == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("go-imap LIST-STATUS did not get INBOX with 2 messages: %+v", list)
	}
}
