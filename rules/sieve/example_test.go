package sieve_test

import (
	"context"
	"fmt"
	"time"

	"postern/rules/sieve"
)

// A delivery agent parses the user's script, runs it over the message and
// carries out the actions; on any error it keeps the message (RFC 5228
// 2.10.6).
func Example() {
	script, err := sieve.Parse([]byte(`
require ["fileinto", "variables", "imap4flags"];
if header :matches "List-Id" "*<*.lists.example.org>" {
    fileinto "Lists.${2}";
    stop;
}
if address :is "from" "boss@example.com" { addflag "\\Flagged"; }
`), sieve.Options{})
	if err != nil {
		fmt.Println("parse:", err) // "LINE:COL: message"
		return
	}
	msg := "From: Boss <boss@example.com>\r\nTo: bob@example.net\r\nSubject: budget\r\n\r\nSee me.\r\n"
	res, err := script.Execute(context.Background(), &sieve.Env{
		Message: []byte(msg), From: "boss@example.com", To: "bob@example.net", User: "bob",
		Now: time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println("runtime error, keeping the message:", err)
		return
	}
	for _, a := range res.Actions {
		switch a := a.(type) {
		case sieve.Keep:
			fmt.Println("deliver to INBOX with flags", a.Flags, "implicit:", a.Implicit)
		case sieve.FileInto:
			fmt.Println("deliver to", a.Mailbox)
		}
	}
	// Output:
	// deliver to INBOX with flags [\Flagged] implicit: true
}
