package outbound

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestDNSResolverAnswers(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.add(t,
		"example.test. 60 IN MX 10 mx1.example.test.",
		"example.test. 60 IN MX 20 mx2.example.test.",
		"alias.test. 60 IN CNAME example.test.",
		"mx1.example.test. 60 IN A 192.0.2.1",
		"mx1.example.test. 60 IN AAAA 2001:db8::1",
		"noaddr.test. 60 IN TXT \"x\"",
		"big.test. 60 IN A 192.0.2.9",
	)
	z.truncate["big.test."] = true
	r := NewDNSResolver([]string{startDNS(t, z)}, time.Second)
	ctx := context.Background()

	mxs, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("MX: %v %v", mxs, err)
	}
	// An MX query answered through a CNAME gives the target's records.
	if mxs, err := r.LookupMX(ctx, "alias.test"); err != nil || len(mxs) != 2 {
		t.Fatalf("MX via CNAME: %v %v", mxs, err)
	}
	// A name that exists without MX: no records, no error (implicit MX).
	if mxs, err := r.LookupMX(ctx, "noaddr.test"); err != nil || len(mxs) != 0 {
		t.Fatalf("no MX: %v %v", mxs, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mx1.example.test")
	if err != nil || len(ips) != 2 || !ips[0].IP.Equal(net.ParseIP("192.0.2.1")) || !ips[1].IP.Equal(net.ParseIP("2001:db8::1")) {
		t.Fatalf("addresses: %v %v", ips, err)
	}
	if ips, err := r.LookupIPAddr(ctx, "noaddr.test"); err != nil || len(ips) != 0 {
		t.Fatalf("no addresses: %v %v", ips, err)
	}
	// Truncated over UDP: asked again over TCP (RFC 7766).
	if ips, err := r.LookupIPAddr(ctx, "big.test"); err != nil || len(ips) != 1 {
		t.Fatalf("after truncation: %v %v", ips, err)
	}
}

func TestDNSResolverFailureClasses(t *testing.T) {
	checkGoroutines(t)
	z := newZone()
	z.servfail["broken.test."] = true
	z.silent["slow.test."] = true
	addr := startDNS(t, z)
	r := NewDNSResolver([]string{addr}, 200*time.Millisecond)
	ctx := context.Background()

	_, err := r.LookupMX(ctx, "missing.test")
	var de *DNSError
	if !errors.Is(err, ErrNoSuchDomain) || !errors.As(err, &de) || de.Type != "MX" || de.Name != "missing.test" {
		t.Errorf("NXDOMAIN: %v", err)
	}
	if _, err := r.LookupIPAddr(ctx, "missing.test"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("NXDOMAIN A/AAAA: %v", err)
	}
	if _, err := r.LookupMX(ctx, "broken.test"); !errors.Is(err, ErrDNSTemporary) || errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("SERVFAIL: %v", err)
	}
	if _, err := r.LookupMX(ctx, "slow.test"); !errors.Is(err, ErrDNSTemporary) {
		t.Errorf("timeout: %v", err)
	}
	if _, err := r.LookupMX(ctx, "bad..name"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("invalid name: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.LookupMX(cctx, "missing.test"); !errors.Is(err, ErrDNSTemporary) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestDNSResolverTriesNextServer(t *testing.T) {
	checkGoroutines(t)
	bad := newZone()
	bad.servfail["example.test."] = true
	good := newZone()
	good.add(t, "example.test. 60 IN MX 10 mx.example.test.")
	r := NewDNSResolver([]string{startDNS(t, bad), startDNS(t, good)}, time.Second)
	if mxs, err := r.LookupMX(context.Background(), "example.test"); err != nil || len(mxs) != 1 {
		t.Fatalf("%v %v", mxs, err)
	}
}

func TestNetDNSErrorClassified(t *testing.T) {
	// A resolver built on the standard library reports *net.DNSError.
	if !isNoSuchDomain(&net.DNSError{Err: "no such host", IsNotFound: true}) {
		t.Error("IsNotFound not taken as no such domain")
	}
	if isNoSuchDomain(&net.DNSError{Err: "timeout", IsTimeout: true}) {
		t.Error("timeout taken as no such domain")
	}
}
