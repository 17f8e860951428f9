package policy

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSettingFileOrDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "acceptmailfor"), "# our domains\nexample.test\n\n  Example.ORG.  \n")
	lines, err := ReadSetting(dir, "acceptmailfor")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Text != "example.test" || lines[0].Num != 2 || lines[1].Num != 4 {
		t.Fatalf("file setting: got %+v", lines)
	}

	// The same setting as a directory: files joined in lexical order, with
	// packaging leftovers skipped.
	dir2 := t.TempDir()
	write(t, filepath.Join(dir2, "aliases", "20-b"), "b: bob\n")
	write(t, filepath.Join(dir2, "aliases", "10-a"), "a: alice\n")
	write(t, filepath.Join(dir2, "aliases", "10-a~"), "stale: x\n")
	write(t, filepath.Join(dir2, "aliases", ".hidden"), "hidden: x\n")
	write(t, filepath.Join(dir2, "aliases", "30-c.dpkg-old"), "old: x\n")
	lines, err = ReadSetting(dir2, "aliases")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, filepath.Base(l.File)+":"+l.Text)
	}
	if strings.Join(got, ",") != "10-a:a: alice,20-b:b: bob" {
		t.Fatalf("directory setting joined as %v", got)
	}

	// NAME.d works as well.
	dir3 := t.TempDir()
	write(t, filepath.Join(dir3, "acceptmailfor.d", "x"), "x.test\n")
	if lines, err := ReadSetting(dir3, "acceptmailfor"); err != nil || len(lines) != 1 {
		t.Fatalf("NAME.d: %v %v", lines, err)
	}

	if _, err := ReadSetting(dir3, "missing"); !errors.Is(err, ErrNotSet) {
		t.Fatalf("missing setting: want ErrNotSet, got %v", err)
	}
	if _, err := ReadSetting(dir3, "../etc/passwd"); err == nil {
		t.Fatal("setting name with a slash accepted")
	}
}

func validDir(t *testing.T) string {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "me"), "mx.example.test\n")
	write(t, filepath.Join(dir, "acceptmailfor"), "example.test\n")
	write(t, filepath.Join(dir, "listen"), "smtp 127.0.0.1:2525\nimap 127.0.0.1:2143\n")
	write(t, filepath.Join(dir, "datadir"), "../data\n")
	write(t, filepath.Join(dir, "sizelimit"), "10M\n")
	return dir
}

func TestLoad(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Me != "mx.example.test" || !c.HasDomain("EXAMPLE.test.") || c.HasDomain("other.test") {
		t.Fatalf("me/domains wrong: %+v", c)
	}
	if c.SizeLimit != 10<<20 {
		t.Fatalf("sizelimit %d", c.SizeLimit)
	}
	if c.DataDir != filepath.Join(filepath.Dir(dir), "data") {
		t.Fatalf("datadir not relative to config dir: %s", c.DataDir)
	}
	if ls := c.ListenersNamed("imap"); len(ls) != 1 || ls[0].Address != "127.0.0.1:2143" || ls[0].Network() != "tcp" {
		t.Fatalf("listeners: %+v", c.Listeners)
	}
	// esmtpgreeting: the banner text; control characters are refused.
	write(t, filepath.Join(dir, "esmtpgreeting"), "mx.example.test ESMTP ready\n")
	if c, err = Load(dir); err != nil || c.Greeting != "mx.example.test ESMTP ready" {
		t.Fatalf("esmtpgreeting: %q %v", c.Greeting, err)
	}
	write(t, filepath.Join(dir, "esmtpgreeting"), "mx ESMTP grüß dich\n")
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "esmtpgreeting: printable ASCII only") {
		t.Fatalf("esmtpgreeting with UTF-8: %v", err)
	}
	os.Remove(filepath.Join(dir, "esmtpgreeting"))
	// lmtp may listen on a Unix socket.
	write(t, filepath.Join(dir, "listen"), "smtp 127.0.0.1:2525\nlmtp 127.0.0.1:2424\nlmtp /run/postern/lmtp\n")
	if c, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	if ls := c.ListenersNamed("lmtp"); len(ls) != 2 || ls[1].Address != "/run/postern/lmtp" || ls[1].Network() != "unix" {
		t.Fatalf("lmtp listeners: %+v", ls)
	}
}

// Every error names file and line, and all errors are reported at once.
func TestLoadErrorsNameFileAndLine(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "listen"), "smtp 127.0.0.1:2525\nbogus 127.0.0.1:1\nimap nocolon\nsmtp /run/smtp.sock\nlmtp /run/lmtp proxy\n")
	write(t, filepath.Join(dir, "acceptmailfor"), "ok.test\nbad domain!\n")
	write(t, filepath.Join(dir, "sizelimit"), "lots\n")
	write(t, filepath.Join(dir, "insecureauth"), "maybe\n")
	_, err := Load(dir)
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(dir, "listen") + ":2: unknown listener \"bogus\"",
		filepath.Join(dir, "listen") + ":3: address \"nocolon\"",
		filepath.Join(dir, "listen") + ":4: address \"/run/smtp.sock\"", // a socket path is for lmtp only
		filepath.Join(dir, "listen") + ":5: proxy: not for a socket",
		filepath.Join(dir, "acceptmailfor") + ":2: acceptmailfor: bad domain",
		filepath.Join(dir, "sizelimit") + ":1: sizelimit: not a size",
		filepath.Join(dir, "insecureauth") + ":1: insecureauth: want yes or no",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Line == 0 {
		t.Errorf("errors.As(*Error) failed or no line: %v", err)
	}
}

func TestLoadRejectsBinaryAndHugeLines(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "me"), "mx\x00evil\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "me:1: control character") {
		t.Fatalf("NUL in setting: %v", err)
	}
	dir = validDir(t)
	write(t, filepath.Join(dir, "acceptmailfor"), strings.Repeat("a", 100000)+"\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("huge line: %v", err)
	}
}

func TestImplicitTLSListenerNeedsCertificate(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "listen"), "imaps 127.0.0.1:2993\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Fatalf("imaps without certificate: %v", err)
	}
	write(t, filepath.Join(dir, "tlscert"), "missing.pem\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tlscert:1: certificate") {
		t.Fatalf("missing certificate file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "4k": 4096, "10M": 10 << 20, "1G": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "x", "1T", "99999999999999999999", "1.5M"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

// FuzzLoad feeds arbitrary bytes as every setting; Load must return a config
// or an error, never panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("smtp 127.0.0.1:25\n"), []byte("example.test\n"), []byte("10M"))
	f.Add([]byte("imap [::1]:143\nbogus\n"), []byte("a..b\n"), []byte("x"))
	f.Add([]byte("\x00\xff"), []byte("#c\n\n"), []byte("1G"))
	f.Fuzz(func(t *testing.T, listen, domains, size []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "listen"), listen, 0o644)
		os.WriteFile(filepath.Join(dir, "acceptmailfor"), domains, 0o644)
		os.WriteFile(filepath.Join(dir, "sizelimit"), size, 0o644)
		c, err := Load(dir)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

func TestInitWritesLoadableSetup(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	c, err := Load(filepath.Join(dir, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasDomain("example.test") || c.TLSCertificate == nil || c.Me != "mail.example.test" {
		t.Fatalf("init config: %+v", c)
	}
	if got := len(c.Listeners); got != len(DefaultListeners) {
		t.Fatalf("%d listeners, want %d", got, len(DefaultListeners))
	}
	if ls := c.ListenersNamed(ListenIMAPS); len(ls) != 1 || ls[0].Address != "127.0.0.1:2993" {
		t.Fatalf("imaps listener: %+v", ls)
	}
	if err := Init(dir, "example.test", "mail.example.test", false); err == nil {
		t.Fatal("init overwrote an existing configuration without --force")
	}
	if err := Init(dir, "other.test", "mx.other.test", true); err != nil {
		t.Fatalf("--force: %v", err)
	}
}

func TestQueueSettingsAndSchedule(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Courier's defaults: 3 retries 5 minutes apart, then 15m, 30m, 60m, 120m gaps.
	var got []string
	for _, d := range c.RetrySchedule() {
		got = append(got, d.String())
	}
	want := "5m0s 5m0s 5m0s 15m0s 5m0s 5m0s 5m0s 30m0s 5m0s 5m0s 5m0s 1h0m0s 5m0s 5m0s 5m0s 2h0m0s"
	if strings.Join(got, " ") != want {
		t.Fatalf("schedule %v\nwant %s", got, want)
	}
	if c.QueueTime != 7*24*time.Hour || c.WarnTime != 4*time.Hour || c.MaxRecipients != 100 || c.MaxDels != 20 || c.MaxHost != 4 || c.HopLimit != 100 {
		t.Fatalf("defaults: %v %v %d %d %d %d", c.QueueTime, c.WarnTime, c.MaxRecipients, c.MaxDels, c.MaxHost, c.HopLimit)
	}
	write(t, filepath.Join(dir, "maxdels"), "50\n")
	write(t, filepath.Join(dir, "maxhost"), "2\n")
	if c, err = Load(dir); err != nil || c.MaxDels != 50 || c.MaxHost != 2 {
		t.Fatalf("maxdels/maxhost: %v %+v", err, c)
	}
	write(t, filepath.Join(dir, "maxhost"), "0\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "maxhost:1") {
		t.Fatalf("maxhost 0 accepted: %v", err)
	}
	os.Remove(filepath.Join(dir, "maxhost"))
	write(t, filepath.Join(dir, "queuetime"), "2d\n")
	write(t, filepath.Join(dir, "retrybeta"), "1\n")
	write(t, filepath.Join(dir, "retrymaxdelta"), "0\n")
	write(t, filepath.Join(dir, "trustedproxies"), "10.0.0.0/8\n192.0.2.7\n")
	write(t, filepath.Join(dir, "resolvers"), "127.0.0.1:5353\n192.0.2.53\n")
	write(t, filepath.Join(dir, "listen"), "smtp 127.0.0.1:2525 proxy\n")
	if c, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	if c.QueueTime != 48*time.Hour || len(c.RetrySchedule()) != 2 || len(c.TrustedProxies) != 2 ||
		c.TrustedProxies[1].String() != "192.0.2.7/32" || c.Resolvers[1] != "192.0.2.53:53" || !c.Listeners[0].Proxy {
		t.Fatalf("settings not read: %+v", c)
	}
	write(t, filepath.Join(dir, "queuetime"), "forever\n")
	write(t, filepath.Join(dir, "trustedproxies"), "10.0.0.0/33\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "queuetime:1") || !strings.Contains(err.Error(), "trustedproxies:1") {
		t.Fatalf("bad settings accepted: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "15m": 15 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-5m", "d", "x1d", "99999999999w"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// Local users' sendmail must reach etc/datadir and data/submit.sock: init
// makes the directories it creates searchable (0751), the datadir file
// readable, and leaves secrets and an existing DIR's mode alone.
func TestInitModesForLocalSendmail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inst")
	if err := Init(dir, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dir: 0o751, filepath.Join(dir, "etc"): 0o751, filepath.Join(dir, "data"): 0o751,
		filepath.Join(dir, "etc", "datadir"): 0o644, filepath.Join(dir, "etc", "userdb"): 0o600,
		filepath.Join(dir, "etc", "certs", "postern.pem"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
		}
	}
	existing := t.TempDir()
	os.Chmod(existing, 0o700)
	if err := Init(existing, "example.test", "mail.example.test", false); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(existing); fi.Mode().Perm() != 0o700 {
		t.Errorf("an existing directory's mode changed to %v", fi.Mode().Perm())
	}
	if got, err := DataDirOf(filepath.Join(dir, "etc")); err != nil || got != filepath.Join(dir, "etc", "../data") {
		t.Errorf("DataDirOf: %q %v", got, err)
	}
}

func TestDeliveryJournalSettings(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.DeliveryJournal != 32<<20 || c.JournalCheckpoint != 200*time.Millisecond {
		t.Fatalf("defaults: %d %v", c.DeliveryJournal, c.JournalCheckpoint)
	}
	write(t, filepath.Join(dir, "deliveryjournal"), "0\n")
	write(t, filepath.Join(dir, "journalcheckpoint"), "1s\n")
	if c, err = Load(dir); err != nil || c.DeliveryJournal != 0 || c.JournalCheckpoint != time.Second {
		t.Fatalf("settings not read: %v %+v", err, c)
	}
	write(t, filepath.Join(dir, "deliveryjournal"), "512k\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "deliveryjournal") {
		t.Fatalf("a journal under 1M accepted: %v", err)
	}
}

func TestWebmailSessionSettings(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.WebmailFilters {
		t.Fatal("webmailfilters: default is yes")
	}
	if c.WebmailIdle != 30*time.Minute || c.WebmailMaxSession != 12*time.Hour {
		t.Fatalf("defaults: %v %v", c.WebmailIdle, c.WebmailMaxSession)
	}
	write(t, filepath.Join(dir, "webmailidle"), "15m\n")
	write(t, filepath.Join(dir, "webmailmaxsession"), "1d\n")
	if c, err = Load(dir); err != nil || c.WebmailIdle != 15*time.Minute || c.WebmailMaxSession != 24*time.Hour {
		t.Fatalf("settings not read: %v %+v", err, c)
	}
	write(t, filepath.Join(dir, "webmailfilters"), "no\n")
	if c, err = Load(dir); err != nil || c.WebmailFilters {
		t.Fatalf("webmailfilters no: %v %v", err, c.WebmailFilters)
	}
	write(t, filepath.Join(dir, "webmailidle"), "10s\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "webmailidle") {
		t.Fatalf("an idle time under a minute accepted: %v", err)
	}
}

// hosteddomains (Courier's): domains hosted like acceptmailfor's, and
// "ALIAS<TAB>DOMAIN" alias domains; bad lines name file and line.
func TestHostedDomains(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "hosteddomains"), "# hosted\nHosted.test\nalias.test\texample.test\nalias2.test   hosted.test.\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.test", "hosted.test", "alias.test", "alias2.test"} {
		if !c.HasDomain(d) {
			t.Errorf("%s not accepted", d)
		}
	}
	if c.CanonicalDomain("alias.test") != "example.test" || c.CanonicalDomain("alias2.test") != "hosted.test" || c.CanonicalDomain("hosted.test") != "hosted.test" {
		t.Errorf("aliases %v", c.DomainAliases)
	}

	write(t, filepath.Join(dir, "hosteddomains"), "a.test\tnowhere.test\nb.test\talias.test\nalias.test\texample.test\nexample.test\thosted2.test\nhosted2.test\nx.test y.test z.test\n")
	_, err = Load(dir)
	if err == nil {
		t.Fatal("bad hosteddomains accepted")
	}
	f := filepath.Join(dir, "hosteddomains")
	for _, want := range []string{
		f + ":1: hosteddomains: a.test is an alias of nowhere.test, which is neither",
		f + ":2: hosteddomains: b.test is an alias of alias.test, itself an alias",
		f + ":4: hosteddomains: example.test is both a domain of its own and an alias",
		f + ":6: hosteddomains: want DOMAIN, or ALIAS and DOMAIN",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

// esmtpacceptmailfor: domains relayed for anyone, ".domain" for
// subdomains; our own domains stay ours; a bare ".tld" is refused.
func TestRelayDomains(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "esmtpacceptmailfor"), "Relay.test.\n.sub.test\nexample.test\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{"relay.test": true, "a.sub.test": true, "b.a.sub.test": true, "sub.test": false, "example.test": false, "other.test": false, "x.relay.test": false} {
		if got := c.RelaysFor(d); got != want {
			t.Errorf("RelaysFor(%s) = %v, want %v", d, got, want)
		}
	}
	write(t, filepath.Join(dir, "esmtpacceptmailfor"), ".com\nbad domain\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), `esmtpacceptmailfor:1: esmtpacceptmailfor: ".com" would relay`) || !strings.Contains(err.Error(), "esmtpacceptmailfor:2:") {
		t.Fatalf("bad esmtpacceptmailfor: %v", err)
	}
}

// locals: Courier's local domains. Without the file, me is the one; an
// empty file makes none; ".domain" takes subdomains, "!host" leaves one
// out; a bad line is refused with its place.
func TestLocals(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "me"), "Mail.Example.Test.\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsLocal("mail.example.test") || !c.HasDomain("MAIL.example.test.") || c.IsLocal("example.test") {
		t.Fatalf("default locals: %v", c.Locals)
	}
	write(t, filepath.Join(dir, "locals"), "")
	if c, err = Load(dir); err != nil || c.IsLocal("mail.example.test") {
		t.Fatalf("empty locals: %v %v", err, c.Locals)
	}
	write(t, filepath.Join(dir, "locals"), "Lan.Test.\n.corp.test\n!mx.corp.test\n")
	if c, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{"lan.test": true, "LAN.test.": true, "a.corp.test": true, "b.a.corp.test": true, "corp.test": false, "mx.corp.test": false, "a.mx.corp.test": true, "mail.example.test": false, "x.lan.test": false} {
		if got := c.IsLocal(d); got != want {
			t.Errorf("IsLocal(%s) = %v, want %v", d, got, want)
		}
		if got := c.HasDomain(d); got != want && !c.AcceptMailFor[strings.ToLower(strings.TrimSuffix(d, "."))] {
			t.Errorf("HasDomain(%s) = %v, want %v", d, got, want)
		}
	}
	f := filepath.Join(dir, "locals")
	write(t, f, ".test\nbad domain\n!.x.test\nok.test\n")
	_, err = Load(dir)
	for _, want := range []string{f + `:1: locals: ".test" would make every domain`, f + ":2: locals:", f + ":3: locals:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), ":4:") {
		t.Errorf("a good line refused: %v", err)
	}
}

// relayrecipients: addresses (any case) or @domain; a relay domain with
// no entry takes every address.
func TestRelayRecipients(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "esmtpacceptmailfor"), "a.test\nb.test\nc.test\n")
	write(t, filepath.Join(dir, "relayrecipients"), "Carol@A.test\n@b.test.\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		local, domain string
		want          bool
	}{{"carol", "a.test", true}, {"CAROL", "a.test", true}, {"dave", "a.test", false}, {"anyone", "b.test", true}, {"anyone", "c.test", true}} {
		if got := c.RelayRecipientOK(tc.local, tc.domain); got != tc.want {
			t.Errorf("%s@%s: %v, want %v", tc.local, tc.domain, got, tc.want)
		}
	}
	write(t, filepath.Join(dir, "relayrecipients"), "nodomain\nx@bad domain\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "relayrecipients:1:") || !strings.Contains(err.Error(), "relayrecipients:2:") {
		t.Fatalf("bad relayrecipients: %v", err)
	}
}

// srssecrets and srsdomain: SRS is off without secrets; its domain
// defaults to the first accepted domain and must be ours; short secrets
// and a domain without secrets are refused with the file.
func TestSRSSettings(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil || c.SRS != nil {
		t.Fatalf("no srssecrets: SRS %v, err %v", c.SRS, err)
	}
	if got := c.ForwardSender("bob@elsewhere.test"); got != "bob@elsewhere.test" {
		t.Fatalf("ForwardSender without SRS = %q", got)
	}
	write(t, filepath.Join(dir, "srssecrets"), "the newest secret, long\nthe older secret, long\n")
	if c, err = Load(dir); err != nil || c.SRS == nil || c.SRS.Domain != "example.test" || len(c.SRS.Secrets) != 2 {
		t.Fatalf("srssecrets: %+v %v", c.SRS, err)
	}
	fwd := c.ForwardSender("bob@elsewhere.test")
	if back, err := c.SRS.Reverse(fwd); !strings.HasPrefix(fwd, "SRS0=") || err != nil || back != "bob@elsewhere.test" {
		t.Fatalf("ForwardSender = %q, Reverse = %q %v", fwd, back, err)
	}
	for _, keep := range []string{"", "alice@example.test", "alice@EXAMPLE.test"} {
		if got := c.ForwardSender(keep); got != keep {
			t.Errorf("ForwardSender(%q) = %q", keep, got)
		}
	}
	write(t, filepath.Join(dir, "srsdomain"), "elsewhere.test\n")
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "srsdomain") {
		t.Fatalf("srsdomain not ours: %v", err)
	}
	write(t, filepath.Join(dir, "srssecrets"), "short\n")
	write(t, filepath.Join(dir, "srsdomain"), "example.test\n")
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "srssecrets:1:") {
		t.Fatalf("short secret: %v", err)
	}
	os.Remove(filepath.Join(dir, "srssecrets"))
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), "srssecrets is missing") {
		t.Fatalf("srsdomain without secrets: %v", err)
	}
}

// sourceaddress: one address per family; anything else is refused with
// the file and line.
func TestSourceAddress(t *testing.T) {
	dir := validDir(t)
	write(t, filepath.Join(dir, "sourceaddress"), "192.0.2.7\n2001:db8::7\n")
	c, err := Load(dir)
	if err != nil || len(c.SourceAddrs) != 2 || c.SourceAddrs[0].String() != "192.0.2.7" || c.SourceAddrs[1].String() != "2001:db8::7" {
		t.Fatalf("sourceaddress: %v %v", c.SourceAddrs, err)
	}
	write(t, filepath.Join(dir, "sourceaddress"), "192.0.2.7\n192.0.2.8\n0.0.0.0\nmx.example.org\n")
	_, err = Load(dir)
	for _, want := range []string{"sourceaddress:2: sourceaddress: one address per family", "sourceaddress:3:", "sourceaddress:4:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad sourceaddress: %v, want %q", err, want)
		}
	}
}

// tlscert with several files: each client gets the certificate for the
// name it asks for (SNI), the first when it asks for none or an unknown
// one; tlsminversion refuses older clients.
func TestTLSCertificatesBySNI(t *testing.T) {
	dir := validDir(t)
	for _, n := range []string{"one", "two"} {
		pemBytes, err := selfSignedPEM("mail."+n+".test", n+".test")
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, n+".pem"), string(pemBytes))
	}
	write(t, filepath.Join(dir, "tlscert"), "one.pem\ntwo.pem\n")
	write(t, filepath.Join(dir, "tlsminversion"), "1.3\n")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { conn.(*tls.Conn).Handshake(); conn.Close() }()
		}
	}()
	names := func(serverName string, max uint16) (string, error) {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MaxVersion: max})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return strings.Join(conn.ConnectionState().PeerCertificates[0].DNSNames, ","), nil
	}
	for sni, want := range map[string]string{"two.test": "mail.two.test", "mail.one.test": "mail.one.test", "": "mail.one.test", "other.test": "mail.one.test"} {
		if got, err := names(sni, 0); err != nil || !strings.HasPrefix(got, want) {
			t.Errorf("SNI %q: %q %v, want %s", sni, got, err, want)
		}
	}
	if _, err := names("two.test", tls.VersionTLS12); err == nil {
		t.Error("a TLS 1.2 client was served with tlsminversion 1.3")
	}
	write(t, filepath.Join(dir, "tlsminversion"), "1.4\n")
	write(t, filepath.Join(dir, "tlscert"), "one.pem\nmissing.pem\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "tlscert:2:") || !strings.Contains(err.Error(), "tlsminversion") {
		t.Fatalf("bad tlscert and tlsminversion: %v", err)
	}
}

// FuzzLocals: any locals file loads or is refused with an error, and when
// it loads every plain domain line is local and every "!host" line is not.
func FuzzLocals(f *testing.F) {
	for _, s := range []string{"lan.test\n.corp.test\n!mx.corp.test\n", "", ".test\n", "!.x.test\n", "\xff\n", "a\n!a\n"} {
		f.Add([]byte(s), "x.corp.test")
	}
	f.Fuzz(func(t *testing.T, locals []byte, probe string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "locals"), locals, 0o644)
		c, err := Load(dir)
		if err != nil {
			return
		}
		c.IsLocal(probe)
		c.HasDomain(probe)
		for d := range c.Locals {
			switch {
			case strings.HasPrefix(d, "!"):
				if c.IsLocal(d[1:]) && !c.Locals[d[1:]] {
					t.Fatalf("%q is local despite %q", d[1:], d)
				}
			case !strings.HasPrefix(d, "."):
				if !c.IsLocal(d) {
					t.Fatalf("listed %q is not local", d)
				}
			}
		}
	})
}

// esmtphelo: a host name, or a refusal with its place.
func TestESMTPHelo(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil || c.HELOName != "" {
		t.Fatalf("default: %q %v", c.HELOName, err)
	}
	write(t, filepath.Join(dir, "esmtphelo"), "Out.Example.Test.\n")
	if c, err = Load(dir); err != nil || c.HELOName != "out.example.test" {
		t.Fatalf("set: %q %v", c.HELOName, err)
	}
	write(t, filepath.Join(dir, "esmtphelo"), "not a name\n")
	if _, err = Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "esmtphelo")+":1: esmtphelo:") {
		t.Fatalf("bad name: %v", err)
	}
}

// tlsclientcerts: no (default), ask, or ask CAFILE (relative to the
// configuration directory); mistakes name the setting.
func TestTLSClientCerts(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil || c.TLSAskClientCert || c.TLSClientCAs != nil {
		t.Fatalf("default: %v %v %v", err, c.TLSAskClientCert, c.TLSClientCAs)
	}
	pemBytes, err := selfSignedPEM("ca.test", "ca.test")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "ca.pem"), string(pemBytes))
	for text, want := range map[string]string{"ask": "ask", "ask ca.pem": "ask+cas", "no": "no"} {
		write(t, filepath.Join(dir, "tlsclientcerts"), text+"\n")
		c, err := Load(dir)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		got := map[bool]string{true: "ask", false: "no"}[c.TLSAskClientCert]
		if c.TLSClientCAs != nil {
			got += "+cas"
		}
		if got != want {
			t.Errorf("%q: %s, want %s", text, got, want)
		}
	}
	for _, bad := range []string{"yes", "ask missing.pem", "ask tlsclientcerts", "ask a b"} {
		write(t, filepath.Join(dir, "tlsclientcerts"), bad+"\n")
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tlsclientcerts") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// LoadWith reads a replaced setting from its other file, against the rest
// of the configuration, and leaves the directory's own file alone.
func TestLoadWithReplacedSetting(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "acceptmailfor"), "example.test\n")
	write(t, filepath.Join(dir, "hosteddomains"), "alias.test\texample.test\n")
	alt := filepath.Join(t.TempDir(), "candidate")
	write(t, alt, "# new list\nexample.test\nother.test\n")
	c, err := LoadWith(dir, map[string]string{"acceptmailfor": alt})
	if err != nil {
		t.Fatal(err)
	}
	if !c.AcceptMailFor["other.test"] || !c.AcceptMailFor["alias.test"] {
		t.Errorf("AcceptMailFor = %v, want other.test from the candidate and alias.test from hosteddomains", c.AcceptMailFor)
	}
	// A candidate that breaks another setting is refused with its line.
	write(t, alt, "other.test\n")
	_, err = LoadWith(dir, map[string]string{"acceptmailfor": alt})
	if err == nil || !strings.Contains(err.Error(), "hosteddomains:1:") {
		t.Errorf("candidate dropping hosteddomains' target: %v, want the hosteddomains line refused", err)
	}
	write(t, alt, "ok.test\nbad domain\n")
	_, err = LoadWith(dir, map[string]string{"acceptmailfor": alt})
	if err == nil || !strings.Contains(err.Error(), alt+":2:") {
		t.Errorf("bad candidate line: %v, want %s:2:", err, alt)
	}
	if c, err := Load(dir); err != nil || c.AcceptMailFor["ok.test"] {
		t.Errorf("Load after LoadWith: %v %v", c, err)
	}
}

// The mailhost proxying settings (docs/proxy.md): off by default, the
// host name defaulting to "me", bad values refused with the file named.
func TestMailhostProxySettings(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.IMAPProxy || c.POP3Proxy || c.ProxyHostname != c.Me || c.IMAPProxyPort != 143 || c.POP3ProxyPort != 110 ||
		c.ProxyStartTLS || !c.ProxyTLSVerify || c.ProxyTLSCAs != nil {
		t.Fatalf("defaults: %+v", c)
	}
	write(t, filepath.Join(dir, "imapproxy"), "1\n")
	write(t, filepath.Join(dir, "pop3proxy"), "yes\n")
	write(t, filepath.Join(dir, "proxyhostname"), "mbox1.example.test\n")
	write(t, filepath.Join(dir, "imapproxyport"), "1143\n")
	write(t, filepath.Join(dir, "proxytls"), "starttls\n")
	write(t, filepath.Join(dir, "proxytlsverify"), "no\n")
	if c, err = Load(dir); err != nil || !c.IMAPProxy || !c.POP3Proxy || c.ProxyHostname != "mbox1.example.test" ||
		c.IMAPProxyPort != 1143 || c.POP3ProxyPort != 110 || !c.ProxyStartTLS || c.ProxyTLSVerify {
		t.Fatalf("settings not read: %v %+v", err, c)
	}
	for name, bad := range map[string]string{
		"proxytls":      "maybe\n",
		"pop3proxyport": "0\n",
		"proxyhostname": "a,b\n",
		"proxytlsca":    "missing.pem\n",
	} {
		write(t, filepath.Join(dir, name), bad)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s %q accepted: %v", name, bad, err)
		}
		os.Remove(filepath.Join(dir, name))
	}
}

// The connection limits of the IMAP, POP3 and ManageSieve servers: their
// defaults, 0 for none, and bad values refused with file and line.
func TestConnLimitSettings(t *testing.T) {
	dir := validDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.IMAPLimits != (ConnLimits{1000, 100, 20}) || c.POP3Limits != (ConnLimits{1000, 100, 10}) || c.ManageSieveLimits != (ConnLimits{200, 20, 5}) {
		t.Fatalf("defaults: %+v %+v %+v", c.IMAPLimits, c.POP3Limits, c.ManageSieveLimits)
	}
	write(t, filepath.Join(dir, "imapmaxdaemons"), "0\n")
	write(t, filepath.Join(dir, "imapmaxperip"), "4\n")
	write(t, filepath.Join(dir, "pop3maxuserip"), "1\n")
	write(t, filepath.Join(dir, "managesievemaxperip"), "7\n")
	if c, err = Load(dir); err != nil || c.IMAPLimits != (ConnLimits{0, 4, 20}) || c.POP3Limits != (ConnLimits{1000, 100, 1}) || c.ManageSieveLimits != (ConnLimits{200, 7, 5}) {
		t.Fatalf("settings not read: %v %+v %+v %+v", err, c.IMAPLimits, c.POP3Limits, c.ManageSieveLimits)
	}
	for name, bad := range map[string]string{
		"imapmaxdaemons":       "-1\n",
		"imapmaxuserip":        "ten\n",
		"pop3maxperip":         "1.5\n",
		"pop3maxdaemons":       "99999999999\n",
		"managesievemaxuserip": "5 6\n",
	} {
		path := filepath.Join(dir, name)
		old, _ := os.ReadFile(path)
		write(t, path, bad)
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), path+":1:") || !strings.Contains(err.Error(), name+": want a whole number") {
			t.Errorf("%s %q: %v; want refused with file and line", name, bad, err)
		}
		if old != nil {
			write(t, path, string(old))
		} else {
			os.Remove(path)
		}
	}
}
