package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// listing is a module that lists the accounts it is given, and fails
// after failAfter of them when failAfter > 0.
type listing struct {
	name      string
	names     []string
	failAfter int
}

func (l *listing) Name() string { return l.name }

func (l *listing) Lookup(_ context.Context, name string) (*Account, error) {
	for _, n := range l.names {
		if n == name {
			return &Account{Name: n, Module: l.name}, nil
		}
	}
	return nil, ErrNoSuchUser
}

func (l *listing) Authenticate(ctx context.Context, _, name, _ string) (*Account, error) {
	return l.Lookup(ctx, name)
}

var errListing = errors.New("listing broke")

func (l *listing) Enumerate(_ context.Context, each func(*Account) error) error {
	for i, n := range l.names {
		if l.failAfter > 0 && i == l.failAfter {
			return errListing
		}
		if err := each(&Account{Name: n, Module: l.name}); err != nil {
			return err
		}
	}
	return nil
}

// TestServiceEnumerate: every listing module in order, through a Cache
// too; a module that cannot list is passed over; a name an earlier module
// listed is left out (the lookup finds the earlier one), a module's own
// repeats are not.
func TestServiceEnumerate(t *testing.T) {
	first := &listing{name: "first", names: []string{"a", "b"}}
	noList := &table{pw: map[string]string{"x": "pw"}}
	second := &listing{name: "second", names: []string{"c", "a", "d", "d"}}
	third := &listing{name: "third", names: []string{"d", "b", "e"}}
	svc := NewService(first, noList, NewCache(second, CacheConfig{TTL: 60e9, Size: 10}), third)

	var got, starts []string
	err := svc.EnumerateByModule(context.Background(),
		func(m Module) error { starts = append(starts, m.Name()); return nil },
		func(a *Account) error { got = append(got, a.Module+":"+a.Name); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := "first:a first:b second:c second:d second:d third:e"; strings.Join(got, " ") != want {
		t.Errorf("listed %v, want %s", got, want)
	}
	if want := "first second third"; strings.Join(starts, " ") != want {
		t.Errorf("modules started %v, want %s", starts, want)
	}
	// Each listed account is the one a lookup finds.
	for _, g := range got {
		mod, name, _ := strings.Cut(g, ":")
		if a, err := svc.Lookup(context.Background(), name); err != nil || a.Module != mod {
			t.Errorf("lookup of listed %s: %v %+v", g, err, a)
		}
	}
}

// TestServiceEnumerateErrors: a module's error ends the listing with the
// module named; each's error comes back as it is; a cancelled context
// stops it.
func TestServiceEnumerateErrors(t *testing.T) {
	ctx := context.Background()
	broken := &listing{name: "broken", names: []string{"a", "b", "c"}, failAfter: 2}
	after := &listing{name: "after", names: []string{"z"}}
	var got []string
	err := NewService(broken, after).Enumerate(ctx, func(a *Account) error { got = append(got, a.Name); return nil })
	if !errors.Is(err, errListing) || !strings.Contains(err.Error(), "auth broken: enumerate") {
		t.Errorf("a module's failure: %v", err)
	}
	if strings.Join(got, " ") != "a b" {
		t.Errorf("listed before the failure: %v (the later module must not be asked)", got)
	}

	stop := errors.New("enough")
	n := 0
	err = NewService(&listing{name: "m", names: []string{"a", "b", "c"}}, after).Enumerate(ctx, func(*Account) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("each's error: %v after %d accounts, want %v after 2", err, n, stop)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	n = 0
	err = NewService(&listing{name: "m", names: []string{"a"}}, after).Enumerate(cctx, func(*Account) error { n++; return nil })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancelled: %v after %d accounts", err, n)
	}
	if err := NewService(&table{}).Enumerate(ctx, func(*Account) error { t.Error("a module that cannot list listed"); return nil }); err != nil {
		t.Errorf("no listing module: %v", err)
	}
}
