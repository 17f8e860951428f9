package dkim_test

import (
	"strings"
	"testing"

	"postern/filters/dkim"
	"postern/filters/dns/dnstest"
)

// TestRFC8463Example verifies the Ed25519-signed example of RFC 8463
// appendix A.3 with the key of appendix A.2 served by real DNS:
// interoperability with what another signer produced, not only with our
// own Signer. (The appendix's RSA signature is left out: it does not verify
// with the RSA key the appendix prints.)
func TestRFC8463Example(t *testing.T) {
	checkGoroutines(t)
	srv := dnstest.Start(t, dnstest.NewZone().Add(
		`brisbane._domainkey.football.example.com. 300 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`,
	))
	r := newResolver(t, srv.Addr)
	v := verify(t, r, rfc8463Message)
	s := wantOne(t, v, dkim.Pass)
	if s.Algorithm != "ed25519-sha256" || s.Domain != "football.example.com" || s.Identifier != "@football.example.com" {
		t.Errorf("signature facts %+v", s)
	}
	tampered := strings.Replace(rfc8463Message, "We lost the game.", "We won the game.", 1)
	for i, s := range verify(t, r, tampered).Signatures {
		if s.Status != dkim.Fail {
			t.Errorf("tampered signature %d: %s", i, s.Status)
		}
	}
}

var rfc8463Message = strings.ReplaceAll(`DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
`, "\n", "\r\n")
