package acme_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"postern/internal/acme"
)

// A certificate the CA revokes is replaced at the next look, without
// waiting for the usual renewal time: Pebble's renewal information then
// puts the window in the past (RFC 9773 section 4.2), as a real CA does
// after a mass revocation.
func TestARIReplacesARevokedCertificate(t *testing.T) {
	ca, serve := setup(t)
	dir := t.TempDir()
	opt := acme.Options{Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client, Dir: dir}
	m, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	serve(m)
	ctx := context.Background()
	ariBefore := ca.RenewalInfoRequests()
	if err := m.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	if ca.RenewalInfoRequests() == ariBefore {
		t.Fatal("no renewal information asked for right after issuance")
	}
	first := m.Certificate("mail.example.test")
	// Not due: the window is far ahead, so nothing changes.
	if err := m.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	if m.Certificate("mail.example.test").Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("renewed before the CA's window")
	}

	// Revoke it with its own key, as RFC 8555 section 7.6 allows.
	rc := &xacme.Client{Key: first.PrivateKey.(crypto.Signer), DirectoryURL: ca.Directory, HTTPClient: ca.Client}
	if err := rc.RevokeCert(ctx, nil, first.Certificate[0], xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	// A reload (Retry) asks the CA again at once; the window is now past.
	m.Retry()
	if err := m.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	renewed := m.Certificate("mail.example.test")
	if renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("the revoked certificate was kept after the CA asked for its replacement")
	}
	verify(t, renewed, "mail.example.test", ca.Roots())
}

// A window the CA sets in the past is followed; an answer that cannot be
// used (not JSON, a window ending before it starts) leaves the usual
// schedule and the certificate in force.
func TestARIWindows(t *testing.T) {
	ca, serve := setup(t)
	dir := t.TempDir()
	opt := acme.Options{Hosts: []string{"mail.example.test"}, Directory: ca.Directory, HTTPClient: ca.Client, Dir: dir}
	m, err := acme.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	serve(m)
	ctx := context.Background()
	if err := m.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "mail.example.test.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serial := m.Certificate("mail.example.test").Leaf.SerialNumber
	now := time.Now().UTC()
	for _, bad := range []string{
		"not json",
		`{"suggestedWindow":{}}`,
		fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q}}`, now.Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339)),
	} {
		ca.SetRenewalInfo(t, certPEM, bad)
		m.Retry()
		if err := m.Renew(ctx, false); err != nil {
			t.Fatalf("%s: %v", bad, err)
		}
		if m.Certificate("mail.example.test").Leaf.SerialNumber.Cmp(serial) != 0 {
			t.Fatalf("renewed on an unusable answer %s", bad)
		}
	}
	past := fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q},"explanationURL":"https://ca.example/incident"}`,
		now.Add(-2*time.Hour).Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339))
	ca.SetRenewalInfo(t, certPEM, past)
	m.Retry()
	if err := m.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	if m.Certificate("mail.example.test").Leaf.SerialNumber.Cmp(serial) == 0 {
		t.Fatal("a window in the past did not renew the certificate")
	}
}

// The certificate identifier of RFC 9773 section 4.1's example.
func TestARICertID(t *testing.T) {
	leaf := &x509.Certificate{
		AuthorityKeyId: []byte{0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4},
	}
	leaf.SerialNumber = new(big.Int).SetBytes([]byte{0x87, 0x65, 0x43, 0x21})
	id, err := acme.ARICertID(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if id != "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE" {
		t.Fatalf("certID %q", id)
	}
	if _, err := acme.ARICertID(&x509.Certificate{SerialNumber: leaf.SerialNumber}); err == nil {
		t.Fatal("a certificate without an authority key identifier got an ID")
	}
}
