package auth

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"postern/filters/state"
)

func testGuard(cfg GuardConfig) (*Guard, *time.Time) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	g := NewGuard(cfg)
	g.now = func() time.Time { return now }
	return g, &now
}

// Failures within the window block the client's network (an IPv4
// address, an IPv6 /64) for the block time; exempt networks never are.
func TestGuardBlocks(t *testing.T) {
	var blocked []string
	g, now := testGuard(GuardConfig{Failures: 3, Window: time.Hour, Block: 30 * time.Minute, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	g.OnBlock = func(p netip.Prefix, n int, until time.Time) { blocked = append(blocked, p.String()) }
	a := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 2; i++ {
		g.Fail(a)
	}
	if g.Blocked(a) {
		t.Fatal("blocked after 2 of 3 failures")
	}
	g.Fail(a)
	if !g.Blocked(a) || g.Blocked(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("the third failure did not block exactly that address")
	}
	if len(blocked) != 1 || blocked[0] != "192.0.2.7/32" {
		t.Fatalf("OnBlock calls %v", blocked)
	}
	*now = now.Add(31 * time.Minute)
	if g.Blocked(a) {
		t.Fatal("still blocked after the block time")
	}
	// IPv6: one /64 counts as one client.
	for _, s := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		g.Fail(netip.MustParseAddr(s))
	}
	if !g.Blocked(netip.MustParseAddr("2001:db8:1:2::99")) || g.Blocked(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("IPv6 failures not counted per /64")
	}
	// The window: failures spread out over more than it do not add up.
	b := netip.MustParseAddr("198.51.100.1")
	g.Fail(b)
	g.Fail(b)
	*now = now.Add(61 * time.Minute)
	g.Fail(b)
	if g.Blocked(b) {
		t.Fatal("failures of two windows added up")
	}
	// Exempt networks.
	c := netip.MustParseAddr("10.1.2.3")
	for i := 0; i < 10; i++ {
		g.Fail(c)
	}
	if g.Blocked(c) {
		t.Fatal("an exempt network was blocked")
	}
	if st := g.Stats(); st.Blocks != 2 || st.Refused < 2 {
		t.Fatalf("stats %+v", st)
	}
	g.SetConfig(GuardConfig{})
	g.Fail(b)
	g.Fail(b)
	g.Fail(b)
	if g.Blocked(b) {
		t.Fatal("a guard turned off blocked")
	}
}

type fixedModule struct{}

func (fixedModule) Name() string { return "fixed" }
func (fixedModule) Lookup(ctx context.Context, name string) (*Account, error) {
	if name == "alice" {
		return &Account{Name: "alice"}, nil
	}
	return nil, ErrNoSuchUser
}
func (fixedModule) Authenticate(ctx context.Context, service, name, password string) (*Account, error) {
	switch {
	case name != "alice":
		return nil, ErrNoSuchUser
	case password != "right":
		return nil, ErrBadPassword
	}
	return &Account{Name: "alice"}, nil
}

// AuthenticateFrom: wrong passwords and unknown users count; once the
// client is blocked even the right password is refused without a look.
func TestAuthenticateFrom(t *testing.T) {
	s := NewService(fixedModule{})
	g, _ := testGuard(GuardConfig{Failures: 2, Window: time.Hour, Block: time.Hour})
	s.SetGuard(g)
	ctx := context.Background()
	ip := netip.MustParseAddr("203.0.113.5")
	if _, err := s.AuthenticateFrom(ctx, "imap", ip, "alice", "right"); err != nil {
		t.Fatal(err)
	}
	s.AuthenticateFrom(ctx, "imap", ip, "alice", "wrong")
	s.AuthenticateFrom(ctx, "smtp", ip, "mallory", "x")
	if _, err := s.AuthenticateFrom(ctx, "pop3", ip, "alice", "right"); !errors.Is(err, ErrBlocked) {
		t.Fatalf("blocked client with the right password: %v", err)
	}
	if _, err := s.AuthenticateFrom(ctx, "imap", netip.MustParseAddr("203.0.113.6"), "alice", "right"); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// Without a guard nothing is counted.
	plain := NewService(fixedModule{})
	for i := 0; i < 5; i++ {
		plain.AuthenticateFrom(ctx, "imap", ip, "alice", "wrong")
	}
	if _, err := plain.AuthenticateFrom(ctx, "imap", ip, "alice", "right"); err != nil {
		t.Fatal(err)
	}
}

// With a store, the counts are shared: two servers (two guards) over one
// store block a client that failed at both, and a new guard over the
// same store (a restart) still knows the block.
func TestGuardSharedStore(t *testing.T) {
	st, err := state.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := GuardConfig{Failures: 3, Window: time.Hour, Block: time.Hour}
	one, two := NewGuard(cfg), NewGuard(cfg)
	one.SetStore(st)
	two.SetStore(st)
	var blocks int
	two.OnBlock = func(netip.Prefix, int, time.Time) { blocks++ }
	ip := netip.MustParseAddr("198.51.100.9")
	one.Fail(ip)
	one.Fail(ip)
	if one.Blocked(ip) || two.Blocked(ip) {
		t.Fatal("blocked after 2 of 3 failures")
	}
	two.Fail(ip)
	if !one.Blocked(ip) || !two.Blocked(ip) || blocks != 1 {
		t.Fatalf("after failures at both servers: blocked %v/%v, OnBlock %d", one.Blocked(ip), two.Blocked(ip), blocks)
	}
	restarted := NewGuard(cfg)
	restarted.SetStore(st)
	if !restarted.Blocked(ip) {
		t.Fatal("a restarted server forgot the block")
	}
	if other := netip.MustParseAddr("198.51.100.10"); one.Blocked(other) {
		t.Fatal("another address blocked")
	}
}
