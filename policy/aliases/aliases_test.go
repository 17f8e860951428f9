package aliases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"postern/policy"
)

// writeFiles creates files (path relative to dir → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustLoad(t *testing.T, dir string, opts ...Option) *Aliases {
	t.Helper()
	a, err := Load(dir, opts...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a
}

// values renders targets as "kind:value" for comparison.
func values(ts []Target) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.Kind.String()+":"+t.Value)
	}
	return out
}

func expandValues(t *testing.T, e interface {
	Expand(context.Context, string) ([]Target, bool, error)
}, addr string) ([]string, bool) {
	t.Helper()
	ts, ok, err := e.Expand(context.Background(), addr)
	if err != nil {
		t.Fatalf("Expand(%q): %v", addr, err)
	}
	return values(ts), ok
}

// problems returns each joined error's text.
func problems(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func TestLoadFileFormat(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"aliases": `# comment
root: postmaster
Postmaster: alice, bob@Example.ORG.
staff: alice,
  bob@example.org,
	carol@example.net
larry: larry, moe, curly
moe: Moe Howard <moe@stooges.example>
list: :include:lists/members, dave
pipe: |/usr/bin/vacation -j alice, "|/usr/bin/logger -t a,b"
box: /var/mail/shared, alice
dup: alice, staff, ALICE
postmaster-empty:
`,
		"lists/members": "# members\nerin@example.com, frank@example.com\n\ngrace@example.com\n",
	})
	a := mustLoad(t, dir)
	cases := []struct {
		addr string
		want []string
		ok   bool
	}{
		{"root", []string{"address:alice", "address:bob@example.org"}, true},
		{"ROOT", []string{"address:alice", "address:bob@example.org"}, true},
		{"postmaster", []string{"address:alice", "address:bob@example.org"}, true},
		{"staff", []string{"address:alice", "address:bob@example.org", "address:carol@example.net"}, true},
		{"larry", []string{"address:larry", "address:moe@stooges.example", "address:curly"}, true},
		{"list", []string{"address:erin@example.com", "address:frank@example.com", "address:grace@example.com", "address:dave"}, true},
		{"pipe", []string{"program:/usr/bin/vacation -j alice", "program:/usr/bin/logger -t a,b"}, true},
		{"box", []string{"file:/var/mail/shared", "address:alice"}, true},
		{"dup", []string{"address:alice", "address:bob@example.org", "address:carol@example.net"}, true},
		{"postmaster-empty", []string{}, true},
		{"nobody", []string{}, false},
		{"", []string{}, false},
	}
	for _, c := range cases {
		got, ok := expandValues(t, a, c.addr)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Expand(%q) = %v, %v; want %v, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
	// Origins point at the line that wrote the target, includes too.
	ts, _, _ := a.Expand(context.Background(), "list")
	if want := filepath.Join(dir, "lists/members") + ":2"; ts[0].Origin != want {
		t.Errorf("include origin = %q, want %q", ts[0].Origin, want)
	}
	ts, _, _ = a.Expand(context.Background(), "staff")
	if want := filepath.Join(dir, "aliases") + ":4"; ts[2].Origin != want {
		t.Errorf("continuation origin = %q, want %q (the alias line)", ts[2].Origin, want)
	}
}

func TestLoadDirectoryFormMergesDefinitions(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"aliases/10-system": "root: postmaster\npostmaster: alice\n",
		"aliases/20-extra":  "postmaster: bob\n",
		"aliases/20-extra~": "postmaster: ignored-backup\n",
		"aliases/.hidden":   "postmaster: ignored-hidden\n",
	})
	a := mustLoad(t, dir)
	got, _ := expandValues(t, a, "root")
	if want := []string{"address:alice", "address:bob"}; !reflect.DeepEqual(got, want) {
		t.Errorf("root = %v, want %v", got, want)
	}
}

func TestLoadMissingSettingIsEmpty(t *testing.T) {
	a := mustLoad(t, t.TempDir())
	if a.Len() != 0 {
		t.Fatalf("Len = %d", a.Len())
	}
}

func TestLoopIsRefusedNamingEveryLine(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases": "a: b\nb: c, x\nc: a\nok: x\n"})
	_, err := Load(dir)
	if err == nil {
		t.Fatal("loop accepted")
	}
	var pe *policy.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *policy.Error", err)
	}
	msg := err.Error()
	f := filepath.Join(dir, "aliases")
	for _, want := range []string{f + ":1: alias loop", "a (" + f + ":1)", "b (" + f + ":2)", "c (" + f + ":3)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if n := len(problems(err)); n != 1 {
		t.Errorf("one loop reported %d times: %v", n, problems(err))
	}
}

func TestDepthLimit(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range maxExpandDepth + 5 {
		fmt.Fprintf(&b, "a%d: a%d\n", i, i+1)
	}
	writeFiles(t, dir, map[string]string{"aliases": b.String()})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("deep chain: err = %v", err)
	}
	// A chain within the limit is fine.
	b.Reset()
	for i := range maxExpandDepth - 1 {
		fmt.Fprintf(&b, "a%d: a%d\n", i, i+1)
	}
	writeFiles(t, dir, map[string]string{"aliases": b.String()})
	a := mustLoad(t, dir)
	got, _ := expandValues(t, a, "a0")
	if want := []string{fmt.Sprintf("address:a%d", maxExpandDepth-1)}; !reflect.DeepEqual(got, want) {
		t.Errorf("a0 = %v, want %v", got, want)
	}
}

func TestBadLinesAllReported(t *testing.T) {
	dir := t.TempDir()
	src := strings.Join([]string{
		"good: alice",                  // 1
		"no colon here",                // 2
		": nobody",                     // 3
		"bad name: alice",              // 4
		"x: bob@",                      // 5
		"y: ./relative/mailbox",        // 6
		"z: |",                         // 7
		"w: :include:missing-file",     // 8
		"@bad_domain..x: john",         // 9
		"@example.com: |/bin/prog",     // 10
		"v: a b c",                     // 11
		"|prog: alice",                 // 12
		"u: <unbalanced@example.com",   // 13
		"t: .hidden",                   // 14
		"s: user@exa mple.com",         // 15
		"fine: bob, carol@example.com", // 16
	}, "\n") + "\n"
	writeFiles(t, dir, map[string]string{"aliases": src})
	_, err := Load(dir)
	if err == nil {
		t.Fatal("bad source accepted")
	}
	got := problems(err)
	f := filepath.Join(dir, "aliases")
	for _, line := range []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} {
		prefix := fmt.Sprintf("%s:%d: ", f, line)
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem reported for line %d; got:\n%s", line, strings.Join(got, "\n"))
		}
	}
	for _, g := range got {
		if strings.HasPrefix(g, f+":1:") || strings.HasPrefix(g, f+":16:") {
			t.Errorf("good line reported: %s", g)
		}
	}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *policy.Error
		if !errors.As(e, &pe) || pe.Line == 0 {
			t.Errorf("problem %v has no FILE:LINE", e)
		}
	}
}

func TestContinuationWithoutAlias(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases/a": "a: b\n", "aliases/b": "  c\nd: e\n"})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "aliases/b")+":1: indented line") {
		t.Fatalf("err = %v", err)
	}
}

func TestIncludeRules(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"aliases":  "loop: :include:one\nprog: :include:prog\nnest: :include:nest1\n",
		"one":      "a@example.com\n:include:two\n",
		"two":      ":include:one\n",
		"prog":     "|/bin/evil\n/var/mail/x\n",
		"nest1":    "n1@example.com, :include:" + filepath.Join(dir, "nest2") + "\n",
		"nest2":    "n2@example.com\n",
		"notafile": "",
	})
	_, err := Load(dir)
	if err == nil {
		t.Fatal("include loop and program in include accepted")
	}
	msg := err.Error()
	for _, want := range []string{"include loop", "not allowed in an :include: file", filepath.Join(dir, "prog") + ":1:", filepath.Join(dir, "prog") + ":2:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	// Nested includes that do not loop are fine.
	writeFiles(t, dir, map[string]string{"aliases": "nest: :include:nest1\nd: :include:" + dir + "\n"})
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory include: err = %v", err)
	}
	writeFiles(t, dir, map[string]string{"aliases": "nest: :include:nest1\n"})
	a := mustLoad(t, dir)
	got, _ := expandValues(t, a, "nest")
	if want := []string{"address:n1@example.com", "address:n2@example.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nest = %v, want %v", got, want)
	}
}

func TestVirtualDomainsAndLocalDomains(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases": `@example.com: john
@uucp.example: gw!bang!path!
@ext.example: john-ext@other.example
sales@example.com: carol
root: postmaster
tom: john@example.com
`})
	local := func(d string) bool { return d == "local.example" }
	a := mustLoad(t, dir, WithLocalDomains(local))
	cases := []struct {
		addr string
		want []string
		ok   bool
	}{
		{"postmaster@example.com", []string{"address:john-postmaster"}, true},
		{"Sales-Info@Example.COM", []string{"address:john-Sales-Info"}, true},
		{"sales@example.com", []string{"address:carol"}, true}, // exact beats the domain
		{"user@uucp.example", []string{"address:gw!bang!path!user"}, true},
		{"x@ext.example", []string{"address:john-ext-x@other.example"}, true},
		{"root@local.example", []string{"address:postmaster"}, true},
		{"root@remote.example", []string{}, false},          // unqualified aliases are local only
		{"tom", []string{"address:john@example.com"}, true}, // not recursive through @example.com
	}
	for _, c := range cases {
		got, ok := expandValues(t, a, c.addr)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Expand(%q) = %v, %v; want %v, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
	// Without WithLocalDomains, bare aliases answer only bare lookups.
	b := mustLoad(t, dir)
	if _, ok := expandValues(t, b, "root@local.example"); ok {
		t.Error("bare alias answered a qualified lookup without local domains")
	}
}

func TestExpandCancelledContext(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases": "a: b\n"})
	a := mustLoad(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := a.Expand(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDump(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"aliases": "Root: postmaster\npostmaster: alice, |/bin/x\nempty:\n"})
	var b strings.Builder
	if err := mustLoad(t, dir).Dump(&b); err != nil {
		t.Fatal(err)
	}
	want := "empty:\npostmaster: alice, |/bin/x\nRoot: alice, |/bin/x\n"
	if b.String() != want {
		t.Errorf("Dump =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestSplitExtension(t *testing.T) {
	cases := []struct{ local, seps, base, ext string }{
		{"user-foo-bar", "-", "user", "foo-bar"},
		{"user+tag", "+", "user", "tag"},
		{"user+tag", "-", "user+tag", ""},
		{"user-a+b", "+-", "user", "a+b"},
		{"user", "-+", "user", ""},
		{"-leading", "-", "-leading", ""},
		{"user-", "-", "user", ""},
		{"user-x", "", "user-x", ""},
	}
	for _, c := range cases {
		b, e := SplitExtension(c.local, c.seps)
		if b != c.base || e != c.ext {
			t.Errorf("SplitExtension(%q, %q) = %q, %q; want %q, %q", c.local, c.seps, b, e, c.base, c.ext)
		}
	}
	got := ExtensionCandidates("mary-ann-lists", "-")
	want := []Split{{"mary-ann-lists", ""}, {"mary-ann", "lists"}, {"mary", "ann-lists"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExtensionCandidates = %v, want %v", got, want)
	}
	if got := DotCourierNames("Foo.Bar-baz"); !reflect.DeepEqual(got, []string{".courier-foo:bar-baz", ".courier-foo:bar-default", ".courier-default"}) {
		t.Errorf("DotCourierNames = %v", got)
	}
	if got := DotCourierNames(""); !reflect.DeepEqual(got, []string{".courier"}) {
		t.Errorf("DotCourierNames(\"\") = %v", got)
	}
}

func TestAddressCanonicalForm(t *testing.T) {
	good := map[string]string{
		"User@Example.COM.":        "User@example.com",
		"  <a@b.example>  ":        "a@b.example",
		`"J, Smith" <j@x.example>`: "j@x.example",
		`"odd local"@x.example`:    `"odd local"@x.example`,
		"user@[192.0.2.1]":         "user@[192.0.2.1]",
		"üser@bücher.example":      "üser@bücher.example",
		"gw!bang!path!":            "gw!bang!path!",
	}
	for in, want := range good {
		got, err := canonicalAddress(in)
		if err != nil || got != want {
			t.Errorf("canonicalAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a@", "a b", "a@b c", "<a@b", "a@-x.example", "a@x..example", ".a", "a\x01b", `"unterminated@x`, strings.Repeat("a", 400)} {
		if got, err := canonicalAddress(bad); err == nil {
			t.Errorf("canonicalAddress(%q) = %q, want error", bad, got)
		} else if !errors.Is(err, errBadAddress) {
			t.Errorf("canonicalAddress(%q) error %v is not errBadAddress", bad, err)
		}
	}
}

// LoadFile reads another file as the source, with :include: paths still
// relative to the configuration directory, and names that file in errors.
func TestLoadFileReadsCandidate(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"aliases":      "old: someone@example.com\n",
		"staff":        "ann@example.com\nbob@example.com\n",
		".candidate-1": "team: :include:staff\nnew:\n  carl@example.com\n",
	})
	a, err := LoadFile(dir, filepath.Join(dir, ".candidate-1"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok, _ := a.Expand(context.Background(), "team")
	if !ok || len(got) != 2 || got[1].Value != "bob@example.com" {
		t.Errorf("team = %v %v", got, ok)
	}
	if got, ok, _ := a.Expand(context.Background(), "new"); !ok || len(got) != 1 || got[0].Value != "carl@example.com" {
		t.Errorf("new (continuation line) = %v %v", got, ok)
	}
	if _, ok, _ := a.Expand(context.Background(), "old"); ok {
		t.Error("LoadFile read the setting's own file")
	}
	writeFiles(t, dir, map[string]string{".candidate-2": "fine: x@example.com\nbroken line without colon\n"})
	_, err = LoadFile(dir, filepath.Join(dir, ".candidate-2"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ".candidate-2")+":2:") {
		t.Errorf("bad candidate: %v, want FILE:2:", err)
	}
}
