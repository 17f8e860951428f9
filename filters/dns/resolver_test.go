package dns_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/filters/dns"
	"postern/filters/dns/dnstest"
)

func newResolver(t *testing.T, opts dns.Options) *dns.Resolver {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = time.Second // generous: the machine is shared and -race is slow
	}
	if opts.Attempts == 0 {
		opts.Attempts = 1
	}
	r, err := dns.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after it ends.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestLookupKinds(t *testing.T) {
	checkGoroutines(t)
	zone := dnstest.NewZone().Add(
		`example.com. 300 IN A 192.0.2.1`,
		`example.com. 300 IN A 192.0.2.2`,
		`example.com. 300 IN AAAA 2001:db8::1`,
		`example.com. 300 IN MX 20 mx2.example.com.`,
		`example.com. 300 IN MX 10 mx1.example.com.`,
		`example.com. 300 IN TXT "v=spf1 " "ip4:192.0.2.0/24 -all"`,
		`example.com. 300 IN TXT "other"`,
		`1.2.0.192.in-addr.arpa. 300 IN PTR mail.example.com.`,
		`1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.example.com.`,
	)
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	ctx := context.Background()

	a, err := r.LookupA(ctx, "Example.COM")
	if err != nil || len(a) != 2 || a[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("LookupA = %v, %v", a, err)
	}
	aaaa, err := r.LookupAAAA(ctx, "example.com.")
	if err != nil || len(aaaa) != 1 || aaaa[0] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("LookupAAAA = %v, %v", aaaa, err)
	}
	ips, err := r.LookupIP(ctx, "example.com")
	if err != nil || len(ips) != 3 {
		t.Errorf("LookupIP = %v, %v", ips, err)
	}
	mx, err := r.LookupMX(ctx, "example.com")
	if err != nil || !slices.Equal(mx, []dns.MX{{"mx1.example.com", 10}, {"mx2.example.com", 20}}) {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	txt, err := r.LookupTXT(ctx, "example.com")
	slices.Sort(txt)
	if err != nil || !slices.Equal(txt, []string{"other", "v=spf1 ip4:192.0.2.0/24 -all"}) {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	ptr, err := r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1"))
	if err != nil || !slices.Equal(ptr, []string{"mail.example.com"}) {
		t.Errorf("LookupPTR v4 = %v, %v", ptr, err)
	}
	ptr, err = r.LookupPTR(ctx, netip.MustParseAddr("2001:db8::1"))
	if err != nil || !slices.Equal(ptr, []string{"v6.example.com"}) {
		t.Errorf("LookupPTR v6 = %v, %v", ptr, err)
	}
	// IPv4-mapped IPv6 is asked as IPv4.
	ptr, err = r.LookupPTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1"))
	if err != nil || !slices.Equal(ptr, []string{"mail.example.com"}) {
		t.Errorf("LookupPTR mapped = %v, %v", ptr, err)
	}
}

func TestTXTBinaryOctetsSurvive(t *testing.T) {
	raw := "v=spf1 a:\xef\xbb\xbfx.example \x00\x7f \"quoted\" back\\slash"
	zone := dnstest.NewZone().AddRR(&mdns.TXT{
		Hdr: mdns.RR_Header{Name: "bin.example.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60},
		Txt: []string{dns.EscapeString(raw)},
	})
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	txt, err := r.LookupTXT(context.Background(), "bin.example")
	if err != nil || len(txt) != 1 || txt[0] != raw {
		t.Fatalf("LookupTXT = %q, %v; want %q", txt, err, raw)
	}
}

func TestNotFoundVersusTemporary(t *testing.T) {
	checkGoroutines(t)
	zone := dnstest.NewZone().Add(`exists.example. 300 IN A 192.0.2.1`)
	zone.ServFail("broken.example")
	zone.Timeout("slow.example")
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	ctx := context.Background()

	_, err := r.LookupA(ctx, "missing.example")
	if !dns.IsNotFound(err) || !errors.Is(err, dns.ErrNXDomain) || dns.IsTemporary(err) {
		t.Errorf("NXDOMAIN: err = %v", err)
	}
	var le *dns.LookupError
	if !errors.As(err, &le) || le.Name != "missing.example." || le.Type != mdns.TypeA {
		t.Errorf("NXDOMAIN: not a *LookupError naming the question: %#v", err)
	}

	_, err = r.LookupTXT(ctx, "exists.example")
	if !dns.IsNotFound(err) || !errors.Is(err, dns.ErrNoData) {
		t.Errorf("no data: err = %v", err)
	}

	_, err = r.LookupA(ctx, "broken.example")
	if !dns.IsTemporary(err) || !errors.Is(err, dns.ErrServerFailure) || dns.IsNotFound(err) {
		t.Errorf("SERVFAIL: err = %v", err)
	}

	start := time.Now()
	quick := newResolver(t, dns.Options{Servers: []string{srv.Addr}, Timeout: 200 * time.Millisecond})
	_, err = quick.LookupA(ctx, "slow.example")
	if !dns.IsTemporary(err) || !errors.Is(err, dns.ErrTimeout) {
		t.Errorf("timeout: err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v, want about 200ms", d)
	}

	_, err = r.LookupA(ctx, "bad..name")
	if !dns.IsPermanent(err) || !errors.Is(err, dns.ErrInvalidName) {
		t.Errorf("invalid name: err = %v", err)
	}
	_, err = r.LookupA(ctx, strings.Repeat("a", 64)+".example")
	if !errors.Is(err, dns.ErrInvalidName) {
		t.Errorf("64-octet label: err = %v", err)
	}
	if s, q := r.Stats(), quick.Stats(); q.Timeouts == 0 || s.ServerFailures == 0 {
		t.Errorf("stats did not count failures: %+v", s)
	}
}

func TestCacheServesSecondQueryAndExpires(t *testing.T) {
	zone := dnstest.NewZone().Add(`cached.example. 60 IN A 192.0.2.7`)
	srv := dnstest.Start(t, zone)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}, Now: clock})
	ctx := context.Background()

	for i := range 3 {
		if _, err := r.LookupA(ctx, "cached.example"); err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	if n := srv.Queries("cached.example", mdns.TypeA); n != 1 {
		t.Fatalf("server saw %d queries, want 1 (the rest from cache)", n)
	}
	ans, err := r.Query(ctx, "cached.example", mdns.TypeA)
	if err != nil || !ans.Cached || ans.TTL != 60*time.Second {
		t.Fatalf("cached answer = %+v, %v", ans, err)
	}
	advance(59 * time.Second)
	r.LookupA(ctx, "cached.example")
	if n := srv.Queries("cached.example", mdns.TypeA); n != 1 {
		t.Fatalf("after 59s server saw %d queries, want 1", n)
	}
	advance(2 * time.Second)
	r.LookupA(ctx, "cached.example")
	if n := srv.Queries("cached.example", mdns.TypeA); n != 2 {
		t.Fatalf("after TTL expiry server saw %d queries, want 2", n)
	}
	if s := r.Stats(); s.CacheHits != 4 || s.Exchanges != 2 {
		t.Errorf("stats = %+v, want 4 cache hits and 2 exchanges", s)
	}
}

func TestNegativeCacheUsesSOAMinimumWithCap(t *testing.T) {
	zone := dnstest.NewZone().SetNegativeTTL(3600)
	srv := dnstest.Start(t, zone)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}, Now: clock, MaxNegativeTTL: 10 * time.Minute})
	ctx := context.Background()
	for range 2 {
		if _, err := r.LookupA(ctx, "nx.example"); !errors.Is(err, dns.ErrNXDomain) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := srv.Queries("nx.example", mdns.TypeA); n != 1 {
		t.Fatalf("NXDOMAIN not cached: %d queries", n)
	}
	mu.Lock()
	now = now.Add(10*time.Minute + time.Second) // past the cap, before the SOA's hour
	mu.Unlock()
	r.LookupA(ctx, "nx.example")
	if n := srv.Queries("nx.example", mdns.TypeA); n != 2 {
		t.Fatalf("negative TTL not capped: %d queries", n)
	}
}

func TestTemporaryFailuresAreNotCached(t *testing.T) {
	zone := dnstest.NewZone().ServFail("flaky.example")
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	ctx := context.Background()
	r.LookupA(ctx, "flaky.example")
	r.LookupA(ctx, "flaky.example")
	if n := srv.Queries("flaky.example", mdns.TypeA); n != 2 {
		t.Fatalf("SERVFAIL was cached: %d queries", n)
	}
}

func TestCacheSizeBound(t *testing.T) {
	zone := dnstest.NewZone()
	for i := range 20 {
		zone.Add(fmt.Sprintf("h%d.example. 300 IN A 192.0.2.%d", i, i))
	}
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}, CacheSize: 5})
	for i := range 20 {
		if _, err := r.LookupA(context.Background(), fmt.Sprintf("h%d.example", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().CacheEntries; n != 5 {
		t.Fatalf("cache holds %d entries, want 5", n)
	}
}

func TestTruncatedUDPFallsBackToTCP(t *testing.T) {
	zone := dnstest.NewZone()
	// 40 TXT records of 100 octets: about 4.5 kB, more than the 1232-byte
	// EDNS0 buffer, so the UDP answer is truncated.
	for i := range 40 {
		zone.Add(fmt.Sprintf(`big.example. 300 IN TXT "%02d%s"`, i, strings.Repeat("x", 98)))
	}
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	txt, err := r.LookupTXT(context.Background(), "big.example")
	if err != nil || len(txt) != 40 {
		t.Fatalf("LookupTXT got %d records, err %v", len(txt), err)
	}
	if u, tc := srv.QueriesOver("udp", "big.example", mdns.TypeTXT), srv.QueriesOver("tcp", "big.example", mdns.TypeTXT); u != 1 || tc != 1 {
		t.Fatalf("queries udp=%d tcp=%d, want 1 and 1", u, tc)
	}
	if r.Stats().TCPFallbacks != 1 {
		t.Errorf("TCP fallback not counted: %+v", r.Stats())
	}
}

func TestHugeAnswerIsRefused(t *testing.T) {
	zone := dnstest.NewZone()
	for i := range 300 {
		zone.Add(fmt.Sprintf("huge.example. 300 IN A 10.0.%d.%d", i/256, i%256))
	}
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	_, err := r.LookupA(context.Background(), "huge.example")
	if !errors.Is(err, dns.ErrTooLarge) || !dns.IsPermanent(err) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestCNAMEChainsAndLoops(t *testing.T) {
	zone := dnstest.NewZone().Add(
		`alias.example. 300 IN CNAME mid.example.`,
		`mid.example. 300 IN CNAME target.example.`,
		`target.example. 60 IN A 192.0.2.9`,
		`loop1.example. 300 IN CNAME loop2.example.`,
		`loop2.example. 300 IN CNAME loop1.example.`,
		`self.example. 300 IN CNAME self.example.`,
		`dangling.example. 300 IN CNAME nowhere.example.`,
	)
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	ctx := context.Background()
	ans, err := r.Query(ctx, "alias.example", mdns.TypeA)
	if err != nil || len(ans.Records) != 1 || !slices.Equal(ans.CNAMEs, []string{"mid.example", "target.example"}) || ans.TTL != 60*time.Second {
		t.Fatalf("chain: %+v, %v", ans, err)
	}
	for _, name := range []string{"loop1.example", "self.example"} {
		if _, err := r.LookupA(ctx, name); !errors.Is(err, dns.ErrCNAMELoop) {
			t.Errorf("%s: err = %v, want ErrCNAMELoop", name, err)
		}
	}
	if _, err := r.LookupA(ctx, "dangling.example"); !errors.Is(err, dns.ErrNXDomain) {
		t.Errorf("dangling CNAME: err = %v, want NXDOMAIN (RFC 6604)", err)
	}
}

// A server that returns only the CNAME (not its target) makes the resolver
// ask for the target itself, within the chain bound.
func TestCNAMEFollowedAcrossQueries(t *testing.T) {
	zone := dnstest.NewZone().Add(
		`alias.example. 300 IN CNAME target.example.`,
		`target.example. 300 IN A 192.0.2.10`,
	)
	zone.Rewrite(func(req, resp *mdns.Msg) {
		if len(resp.Answer) > 1 {
			resp.Answer = resp.Answer[:1]
		}
	})
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	a, err := r.LookupA(context.Background(), "alias.example")
	if err != nil || len(a) != 1 || a[0] != netip.MustParseAddr("192.0.2.10") {
		t.Fatalf("LookupA = %v, %v", a, err)
	}
	if srv.Queries("target.example", mdns.TypeA) != 1 {
		t.Fatalf("target was not asked")
	}
}

func TestMismatchedQuestionIsRejected(t *testing.T) {
	zone := dnstest.NewZone().Add(`real.example. 300 IN A 192.0.2.1`)
	zone.Rewrite(func(req, resp *mdns.Msg) {
		resp.Question[0].Name = "other.example."
	})
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	_, err := r.LookupA(context.Background(), "real.example")
	if !errors.Is(err, dns.ErrBadResponse) || !dns.IsTemporary(err) {
		t.Fatalf("err = %v, want ErrBadResponse", err)
	}
}

func TestSequentialFallbackToSecondServer(t *testing.T) {
	bad := dnstest.Start(t, dnstest.NewZone().ServFail("x.example"))
	good := dnstest.Start(t, dnstest.NewZone().Add(`x.example. 300 IN A 192.0.2.3`))
	r := newResolver(t, dns.Options{Servers: []string{bad.Addr, good.Addr}})
	a, err := r.LookupA(context.Background(), "x.example")
	if err != nil || len(a) != 1 {
		t.Fatalf("LookupA = %v, %v", a, err)
	}
	if bad.Total() != 1 || good.Total() != 1 {
		t.Fatalf("bad=%d good=%d queries", bad.Total(), good.Total())
	}
}

func TestParallelTakesFirstGoodAnswer(t *testing.T) {
	checkGoroutines(t)
	slow := dnstest.Start(t, dnstest.NewZone().Timeout("x.example"))
	goodZone := dnstest.NewZone().Add(`x.example. 300 IN A 192.0.2.3`)
	// The good server answers after a short pause, so that the query to the
	// slow server has surely been sent by then; without it a fast answer
	// may (rightly) cancel that query before it leaves.
	goodZone.Rewrite(func(req, resp *mdns.Msg) { time.Sleep(100 * time.Millisecond) })
	good := dnstest.Start(t, goodZone)
	r := newResolver(t, dns.Options{Servers: []string{slow.Addr, good.Addr}, Parallel: true, Timeout: 2 * time.Second})
	start := time.Now()
	a, err := r.LookupA(context.Background(), "x.example")
	if err != nil || len(a) != 1 {
		t.Fatalf("LookupA = %v, %v", a, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("parallel query waited for the slow server: %v", d)
	}
	for i := 0; slow.Total() == 0 && i < 100; i++ {
		time.Sleep(10 * time.Millisecond) // the query may still be in flight
	}
	if slow.Total() != 1 {
		t.Fatalf("slow server was not asked in parallel")
	}
}

func TestContextCancelEndsQuery(t *testing.T) {
	checkGoroutines(t)
	srv := dnstest.Start(t, dnstest.NewZone().Timeout("x.example"))
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.LookupA(ctx, "x.example")
	if !dns.IsTemporary(err) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel not honoured: %v", d)
	}
}

func TestConcurrentIdenticalQueriesShareOneExchange(t *testing.T) {
	zone := dnstest.NewZone().Add(`x.example. 300 IN A 192.0.2.3`)
	// Slow the answer a little so that the queries overlap.
	zone.Rewrite(func(req, resp *mdns.Msg) { time.Sleep(50 * time.Millisecond) })
	srv := dnstest.Start(t, zone)
	r := newResolver(t, dns.Options{Servers: []string{srv.Addr}})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := r.LookupA(context.Background(), "x.example"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.Total(); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
}

func TestServersFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("# comment\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:1\n"), 0o644)
	r, err := dns.New(dns.Options{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Fatalf("servers = %v", got)
	}
	empty := filepath.Join(t.TempDir(), "empty.conf")
	os.WriteFile(empty, []byte("search example\n"), 0o644)
	if _, err := dns.New(dns.Options{ResolvConf: empty}); !errors.Is(err, dns.ErrNoServers) {
		t.Fatalf("empty resolv.conf: err = %v", err)
	}
	if _, err := dns.New(dns.Options{Servers: []string{"no-port"}}); err == nil {
		t.Fatal("server without port accepted")
	}
}

func TestReverseName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192.in-addr.arpa.",
		"::ffff:192.0.2.1": "1.2.0.192.in-addr.arpa.",
		"2001:db8::cafe":   "e.f.a.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
	} {
		if got := dns.ReverseName(netip.MustParseAddr(ip)); got != want {
			t.Errorf("ReverseName(%s) = %s, want %s", ip, got, want)
		}
	}
}
