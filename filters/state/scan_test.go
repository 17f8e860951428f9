package state

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// testScan: ScanPrefix visits every key under the prefix once (across
// pages, keys with spaces and glob characters included) and none outside
// it; SetMany and DeleteMany store and remove in one call.
func testScan(t *testing.T, s interface {
	Store
	Scanner
	MultiSetter
	MultiDeleter
}) {
	ctx := context.Background()
	var keys []string
	var vals [][]byte
	for i := range 1234 {
		keys = append(keys, fmt.Sprintf("sc*n?:[k] %04d", i))
		vals = append(vals, []byte(fmt.Sprint(i)))
	}
	if err := s.SetMany(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	// Neighbours that the prefix must not match.
	s.Set(ctx, "sc*n?:", []byte("x"), 0)
	s.Set(ctx, "scan:other", []byte("x"), 0)
	s.Set(ctx, "sc*n?;after", []byte("x"), 0)
	var got []string
	cursor, pages := "", 0
	for {
		page, next, err := s.ScanPrefix(ctx, "sc*n?:[", cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, pages = append(got, page...), pages+1
		if next == "" {
			break
		}
		cursor = next
	}
	slices.Sort(got)
	got = slices.Compact(got) // Redis SCAN may return a key twice
	if !slices.Equal(got, keys) || pages < 2 {
		t.Fatalf("scanned %d keys in %d pages; want the %d under the prefix, several pages", len(got), pages, len(keys))
	}
	if v, found, err := s.Get(ctx, keys[7]); err != nil || !found || string(v) != "7" {
		t.Fatalf("SetMany value %q %v %v", v, found, err)
	}
	if err := s.DeleteMany(ctx, keys[:1000]); err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{} // Redis SCAN may return a key twice
	for cursor := ""; ; {
		page, next, err := s.ScanPrefix(ctx, "sc*n?:[", cursor, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page {
			left[k] = true
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(left) != 234 {
		t.Fatalf("%d keys left after DeleteMany; want 234", len(left))
	}
}

func TestEmbeddedScan(t *testing.T) {
	s, _ := openEmbedded(t)
	testScan(t, s)
}

func TestRedisScan(t *testing.T) {
	needRedis(t)
	testScan(t, openRedis(t, RedisOptions{Addr: redisAddr, Prefix: testPrefix(t)}))
}
