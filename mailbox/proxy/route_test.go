package proxy

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"postern/auth"
)

func account(mailhost string) *auth.Account {
	a := &auth.Account{Name: "alice", Fields: map[string]string{}}
	if mailhost != "" {
		a.Fields["mailhost"] = mailhost
	}
	return a
}

func TestRoute(t *testing.T) {
	c := &Config{Enabled: true, Me: "mx1.example.test", Port: 143}
	for _, tc := range []struct {
		mailhost string
		hosts    []string
		local    bool
	}{
		{"", nil, true},
		{"mbox2.example.test", []string{"mbox2.example.test"}, false},
		{"MX1.Example.Test.", nil, true}, // this host, spelt otherwise
		{"mx1.example.test:1143", nil, true},
		{"mbox2:1143", []string{"mbox2:1143"}, false},
		{"a, b ,,c", []string{"a", "b", "c"}, false},
		{"a,mx1.example.test,b", []string{"a"}, true}, // Courier: this host ends the list
		{"[::1]:143,b", []string{"[::1]:143", "b"}, false},
		{" , ", nil, true},
	} {
		hosts, local := c.Route(account(tc.mailhost))
		if !slices.Equal(hosts, tc.hosts) || local != tc.local {
			t.Errorf("Route(%q) = %q, %v; want %q, %v", tc.mailhost, hosts, local, tc.hosts, tc.local)
		}
	}
	off := &Config{Me: "mx1"}
	if hosts, local := off.Route(account("mbox2")); hosts != nil || !local {
		t.Errorf("proxying off: %q, %v", hosts, local)
	}
	// Courier's place for it: the account options (LDAP_AUXOPTIONS, SQL
	// AUXOPTIONS_FIELD, userdb options=), which win over a userdb field.
	opt := account("ignored")
	opt.Options = map[string]string{"mailhost": "mbox3"}
	if hosts, local := c.Route(opt); !slices.Equal(hosts, []string{"mbox3"}) || local {
		t.Errorf("mailhost option: %q, %v", hosts, local)
	}
	var none *Config
	if hosts, local := none.Route(account("mbox2")); hosts != nil || !local {
		t.Errorf("nil config: %q, %v", hosts, local)
	}
}

func TestAddress(t *testing.T) {
	c := &Config{Port: 110}
	for in, want := range map[string]string{
		"mbox2":       "mbox2:110",
		"mbox2:995":   "mbox2:995",
		"::1":         "[::1]:110",
		"[::1]":       "[::1]:110",
		"[::1]:1110":  "[::1]:1110",
		"192.0.2.1":   "192.0.2.1:110",
		"192.0.2.1:1": "192.0.2.1:1",
	} {
		if got := c.address(in); got != want {
			t.Errorf("address(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQuoted(t *testing.T) {
	for in, want := range map[string]string{
		"secret":     `"secret"`,
		`a"b\c`:      `"a\"b\\c"`,
		"with space": `"with space"`,
		"":           `""`,
	} {
		if got, ok := quoted(in); !ok || got != want {
			t.Errorf("quoted(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"caf\xc3\xa9", "a\r\nb", "nul\x00"} {
		if _, ok := quoted(in); ok {
			t.Errorf("quoted(%q) should need a literal", in)
		}
	}
}

// unquote reads back an IMAP quoted string.
func unquote(q string) string {
	q = q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' {
			i++
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// FuzzQuoted: what quoted accepts reads back as the same string and is a
// valid quoted string (no CR, LF, NUL or 8-bit octets, quotes escaped).
func FuzzQuoted(f *testing.F) {
	f.Add("secret")
	f.Add(`a"b\c`)
	f.Add("caf\xc3\xa9")
	f.Fuzz(func(t *testing.T, s string) {
		q, ok := quoted(s)
		if !ok {
			return
		}
		if strings.ContainsAny(q, "\r\n\x00") {
			t.Fatalf("quoted(%q) = %q has a forbidden octet", s, q)
		}
		if got := unquote(q); got != s {
			t.Fatalf("quoted(%q) = %q reads back as %q", s, q, got)
		}
	})
}

// FuzzRoute: the mailhost field (from an account database) never makes
// Route return an empty host or this host's own name.
func FuzzRoute(f *testing.F) {
	f.Add("mbox2.example.test")
	f.Add("a,mx1.example.test,b")
	f.Add("[::1]:143, MX1.example.test.")
	c := &Config{Enabled: true, Me: "mx1.example.test", Port: 143}
	f.Fuzz(func(t *testing.T, field string) {
		hosts, local := c.Route(account(field))
		if len(hosts) == 0 && !local {
			t.Fatalf("Route(%q): no host and not local", field)
		}
		for _, h := range hosts {
			if strings.TrimSpace(h) == "" || strings.Contains(h, ",") {
				t.Fatalf("Route(%q): host %q", field, h)
			}
			if normalizeHost(hostOnly(h)) == "mx1.example.test" {
				t.Fatalf("Route(%q): this host %q among the backends", field, h)
			}
		}
	})
}

// FuzzReadTagged: whatever a backend sends, reading to the tagged answer
// ends (an error or the answer) without panicking, and an answer is the
// tagged line's rest.
func FuzzReadTagged(f *testing.F) {
	f.Add([]byte("* CAPABILITY IMAP4rev1\r\na1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"))
	f.Add([]byte("a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"))
	f.Add([]byte("+ go ahead\r\n"))
	f.Add([]byte("* OK\r\n* OK\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		untagged, status, err := readTagged(bufio.NewReader(strings.NewReader(string(data))), "a1")
		if err != nil {
			return
		}
		if !strings.Contains(string(data), "a1 "+status) {
			t.Fatalf("status %q not in the input", status)
		}
		if len(untagged) > maxLoginResponses {
			t.Fatalf("%d untagged lines kept", len(untagged))
		}
		for _, u := range untagged {
			if !strings.HasPrefix(u, "* ") {
				t.Fatalf("untagged %q", u)
			}
		}
	})
}
