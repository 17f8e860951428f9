package managesieve

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/internal/netserve"
	"postern/mailbox/sievestore"
)

const vacationScript = "require [\"vacation\"];\r\n# Grüße\r\nvacation :days 7 \"Away\";\r\n"

// TestFullSession walks a client through what Roundcube or Thunderbird
// does: STARTTLS, AUTHENTICATE PLAIN, upload, list, activate, download,
// check, rename, the refusals, and LOGOUT.
func TestFullSession(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.Limits = sievestore.Limits{MaxScripts: 3, MaxScriptSize: 4096} })
	c, caps := env.dial()
	if caps["IMPLEMENTATION"] != "Postern" || caps["VERSION"] != "1.0" || caps["SIEVE"] != "fileinto vacation" {
		t.Errorf("greeting capabilities %v", caps)
	}
	if _, ok := caps["STARTTLS"]; !ok || caps["SASL"] != "" {
		t.Errorf("before TLS: STARTTLS offered %v, SASL %q (want empty)", ok, caps["SASL"])
	}
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", "alice", testPassword)+`"`, "NO (ENCRYPT-NEEDED)")
	c.expect("PUTSCRIPT \"x\" "+literal("keep;"), `NO "PUTSCRIPT is not allowed before AUTHENTICATE"`)

	caps = c.startTLS(env)
	if _, ok := caps["STARTTLS"]; ok || caps["SASL"] != "PLAIN LOGIN" {
		t.Errorf("after TLS: %v", caps)
	}
	c.expect(`AUTHENTICATE "PLAIN" `+literal(plainResponse("alice", "alice", testPassword)), `OK "Logged in"`)
	c.send("CAPABILITY\r\n")
	if caps := c.capabilities(); caps["OWNER"] != "alice" {
		t.Errorf("OWNER after login = %q", caps["OWNER"])
	}

	c.expect(`PUTSCRIPT "vacation" `+literal(vacationScript), `OK`)
	stored, err := os.ReadFile(filepath.Join(env.home("alice"), "sieve", "vacation.sieve"))
	if err != nil || string(stored) != vacationScript {
		t.Fatalf("stored script %q, %v", stored, err)
	}

	// The validator refuses a bad script with its message; nothing is stored.
	_, status := c.cmd(`PUTSCRIPT "broken" ` + literal("keep;\nbad\n"))
	if status != `NO "line 2: unknown command \"bad\""` {
		t.Errorf("PUTSCRIPT of a bad script: %q", status)
	}
	if _, err := os.Stat(filepath.Join(env.home("alice"), "sieve", "broken.sieve")); !os.IsNotExist(err) {
		t.Errorf("a refused script was stored: %v", err)
	}
	c.expect("CHECKSCRIPT "+literal("bad"), `NO "line 1: unknown command \"bad\""`)
	c.expect("CHECKSCRIPT "+literal("keep;"), `OK`)
	c.expect("CHECKSCRIPT "+literal("keep;\nredirect \"a@b\";"), `OK (WARNINGS) "line 2: redirect is limited to 2 a message"`)
	c.expect(`PUTSCRIPT "fwd" "redirect \"x@example.test\";"`, `OK (WARNINGS)`)

	if data := c.expect("LISTSCRIPTS", "OK"); strings.Join(data, "|") != `"fwd"|"vacation"` {
		t.Errorf("LISTSCRIPTS = %q", data)
	}
	c.expect(`SETACTIVE "vacation"`, "OK")
	if data := c.expect("LISTSCRIPTS", "OK"); strings.Join(data, "|") != `"fwd"|"vacation" ACTIVE` {
		t.Errorf("LISTSCRIPTS after SETACTIVE = %q", data)
	}
	if target, _ := os.Readlink(filepath.Join(env.home("alice"), ".dovecot.sieve")); target != "sieve/vacation.sieve" {
		t.Errorf(".dovecot.sieve -> %q", target)
	}
	data := c.expect(`GETSCRIPT "vacation"`, `OK`)
	if len(data) != 1 || data[0] != "{"+strconv.Itoa(len(vacationScript))+"}"+vacationScript {
		t.Errorf("GETSCRIPT = %q", data)
	}
	c.expect(`GETSCRIPT "nope"`, "NO (NONEXISTENT)")

	c.expect(`RENAMESCRIPT "vacation" "fwd"`, "NO (ALREADYEXISTS)")
	c.expect(`RENAMESCRIPT "vacation" "holidays"`, "OK")
	if data := c.expect("LISTSCRIPTS", "OK"); strings.Join(data, "|") != `"fwd"|"holidays" ACTIVE` {
		t.Errorf("LISTSCRIPTS after RENAMESCRIPT = %q", data)
	}
	c.expect(`DELETESCRIPT "holidays"`, "NO (ACTIVE)")
	c.expect(`DELETESCRIPT "fwd"`, "OK")
	c.expect(`DELETESCRIPT "fwd"`, "NO (NONEXISTENT)")

	// Quota: HAVESPACE answers before an upload is sent.
	c.expect(`HAVESPACE "big" 5000`, "NO (QUOTA/MAXSIZE)")
	c.expect(`HAVESPACE "small" 100`, "OK")
	c.expect(`PUTSCRIPT "two" "keep;"`, "OK")
	c.expect(`PUTSCRIPT "three" "keep;"`, "OK")
	c.expect(`HAVESPACE "four" 10`, "NO (QUOTA/MAXSCRIPTS)")
	c.expect(`PUTSCRIPT "four" "keep;"`, "NO (QUOTA/MAXSCRIPTS)")
	c.expect(`HAVESPACE "two" 10`, "OK") // replacing needs no new slot

	c.expect(`SETACTIVE ""`, "OK")
	if _, err := os.Lstat(filepath.Join(env.home("alice"), ".dovecot.sieve")); !os.IsNotExist(err) {
		t.Errorf("SETACTIVE \"\" left the link: %v", err)
	}
	c.expect(`NOOP "STARTTLS-RESYNC-CAPA"`, `OK (TAG "STARTTLS-RESYNC-CAPA") "Done"`)
	c.expect("LOGOUT", "OK")
	if !c.closed() {
		t.Error("connection open after LOGOUT")
	}
	st := env.srv.Stats()
	if st.Logins != 1 || st.ScriptsStored != 4 || st.ScriptsRejected != 2 || st.ScriptsDeleted != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestAuthenticateForms(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	// PLAIN without an initial response: an empty challenge, then the
	// response as a literal.
	c, caps := env.dial()
	if caps["SASL"] != "PLAIN LOGIN" {
		t.Errorf("SASL with AllowInsecureAuth = %q", caps["SASL"])
	}
	c.send("AUTHENTICATE \"plain\"\r\n")
	if l := c.line(); l != `""` {
		t.Fatalf("PLAIN challenge %q, want \"\"", l)
	}
	c.expect(literal(plainResponse("", "alice", testPassword)), `OK "Logged in"`)
	c.expect("UNAUTHENTICATE", "OK")
	c.expect("LISTSCRIPTS", "NO")

	// LOGIN: "Username:" and "Password:" challenges, quoted responses.
	c.send("AUTHENTICATE \"LOGIN\"\r\n")
	if l := c.line(); l != `"`+b64("Username:")+`"` {
		t.Fatalf("LOGIN challenge %q", l)
	}
	c.send(`"` + b64("alice") + "\"\r\n")
	if l := c.line(); l != `"`+b64("Password:")+`"` {
		t.Fatalf("LOGIN password challenge %q", l)
	}
	c.expect(`"`+b64(testPassword)+`"`, "OK")
	c.expect("LISTSCRIPTS", "OK")
	c.expect("UNAUTHENTICATE", "OK")

	// LOGIN with the user name as initial response.
	c.send(`AUTHENTICATE "LOGIN" "` + b64("alice") + "\"\r\n")
	if l := c.line(); l != `"`+b64("Password:")+`"` {
		t.Fatalf("LOGIN after initial response: %q", l)
	}
	c.expect(`"`+b64(testPassword)+`"`, "OK")
	c.expect(`AUTHENTICATE "PLAIN" ""`, `NO "AUTHENTICATE is not allowed once authenticated"`)
	c.expect("UNAUTHENTICATE", "OK")

	// Cancelling with "*" is a NO, not a failure.
	c.send("AUTHENTICATE \"PLAIN\"\r\n")
	c.line()
	c.expect(`"*"`, `NO "Authentication cancelled"`)
	c.expect(`AUTHENTICATE "CRAM-MD5"`, `NO "Unsupported authentication mechanism CRAM-MD5"`)
	if got := env.srv.Stats().LoginFailures; got != 0 {
		t.Errorf("LoginFailures = %d after cancels", got)
	}
}

func TestAuthenticationFailures(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AllowInsecureAuth = true })
	c, _ := env.dial()
	// An authorization identity other than the user is refused.
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("root", "alice", testPassword)+`"`, `NO "Malformed SASL response"`)
	c.expect(`AUTHENTICATE "PLAIN" "not base64!"`, `NO "Malformed SASL response"`)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", "alice", "wrong")+`"`, `BYE "Too many failed logins`)
	if !c.closed() {
		t.Error("connection open after 3 failures")
	}
	if got := env.srv.Stats().LoginFailures; got != 3 {
		t.Errorf("LoginFailures = %d, want 3", got)
	}

	c, _ = env.dial()
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", "bob", testPassword)+`"`, `NO "ManageSieve access is disabled for this account"`)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", "dave", testPassword)+`"`, `NO (ENCRYPT-NEEDED)`)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainResponse("", "nobody", testPassword)+`"`, `NO "Authentication failed"`)
}

func TestDaveMayLogInOverTLS(t *testing.T) {
	env := newTestEnv(t)
	c := env.login("dave")
	c.expect(`PUTSCRIPT "x" "keep;"`, "OK")
}

// TestLiteralsAndStrings: the string forms RFC 5804 section 4 allows, and
// the synchronizing literal older clients send.
func TestLiteralsAndStrings(t *testing.T) {
	env := newTestEnv(t)
	c := env.login("alice")
	c.expect("PUTSCRIPT {5}\r\nsync1 {5}\r\nkeep;", "OK")
	c.expect(`PUTSCRIPT "with \"quote\" and \\" "keep;"`, "OK")
	c.expect("PUTSCRIPT "+literal("Grüße ☀")+" {0+}\r\n", "OK")
	c.expect(`PUTSCRIPT  "spaces"   "keep;"`, "OK") // runs of spaces are tolerated
	data := c.expect("LISTSCRIPTS", "OK")
	want := `"Grüße ☀"|"spaces"|"sync1"|"with \"quote\" and \\"`
	if strings.Join(data, "|") != want {
		t.Errorf("LISTSCRIPTS = %q, want %q", strings.Join(data, "|"), want)
	}
	if data := c.expect(`GETSCRIPT "Grüße ☀"`, "OK"); len(data) != 1 || data[0] != "{0}" {
		t.Errorf("GETSCRIPT of an empty script = %q", data)
	}
	// A name with a line break cannot be quoted; it is refused anyway.
	c.expect("PUTSCRIPT "+literal("a\r\nb")+" \"keep;\"", `NO "Invalid script name: control character U+000D at octet 2"`)
}

func TestHostileNames(t *testing.T) {
	env := newTestEnv(t)
	c := env.login("alice")
	for _, name := range []string{`"../x"`, `"a/b"`, literal("\x00"), `".dovecot"`, `""`, literal("x\u2028")} {
		for _, cmd := range []string{"PUTSCRIPT " + name + ` "keep;"`, "GETSCRIPT " + name, "DELETESCRIPT " + name, "HAVESPACE " + name + " 1"} {
			_, status := c.cmd(cmd)
			if !strings.HasPrefix(status, `NO "Invalid script name`) {
				t.Errorf("%q: %q", cmd, status)
			}
		}
	}
	c.expect(`RENAMESCRIPT "a" "../../etc/passwd"`, `NO "Invalid script name`)
	entries, _ := os.ReadDir(env.dir)
	for _, e := range entries {
		if e.Name() == "x" || e.Name() == "etc" {
			t.Errorf("a script escaped the storage: %s", e.Name())
		}
	}
	c.expect("NOOP", "OK") // the hostile names were not "bad commands" to hang up on
}

// TestOversizedInput: a literal over MaxScriptSize is refused with a NO
// the client can show and the session goes on; one too big to skip, a
// line far too long, or too much garbage ends it with BYE.
func TestOversizedInput(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.Limits.MaxScriptSize = 1000 })
	c := env.login("alice")
	big := strings.Repeat("#", 3000)
	c.expect(`PUTSCRIPT "big" `+literal(big), `NO (QUOTA/MAXSIZE) "Literal of 3000 octets is larger than the 1000 allowed"`)
	c.expect(`NOOP "still here"`, `OK (TAG "still here")`)
	c.expect(strings.Repeat("x", 9000), `NO "Syntax error: command line longer than 8192 octets"`)
	c.expect("NOOP", "OK")
	c.expect(`PUTSCRIPT "big" {999999999+}`, `BYE (QUOTA/MAXSIZE)`)
	if !c.closed() {
		t.Error("open after a literal too big to skip")
	}

	// Before login literals are bounded by what a SASL response needs.
	c, _ = env.dial()
	c.expect(`PUTSCRIPT "x" `+literal(strings.Repeat("a", 10000)), `NO (QUOTA/MAXSIZE) "Literal of 10000 octets is larger than the 8192 allowed"`)
	c.expect(`AUTHENTICATE "PLAIN" {100000+}`, "BYE")

	c, _ = env.dial()
	c.send(strings.Repeat("A", 2<<20)) // no line end
	if _, status := c.response(); status != `BYE "Command line far too long, closing connection"` {
		t.Errorf("endless line: %q", status)
	}
}

func TestGarbageGetsNOThenBYE(t *testing.T) {
	env := newTestEnv(t)
	c, _ := env.dial()
	garbage := []string{"\x00\x01\x02", "(((", `"unterminated`, "{12x}", "FROB", `"quoted command"`, "PUTSCRIPT \"a\"\"b\"", "NOOP \"a\\x\"", "GETSCRIPT", "LOGOUT extra"}
	for i, g := range garbage {
		_, status := c.cmd(g)
		t.Logf("%q -> %s", g, status)
		if i < len(garbage)-1 && !strings.HasPrefix(status, "NO") {
			t.Errorf("%q: %q, want NO", g, status)
		}
		if i == len(garbage)-1 && !strings.HasPrefix(status, "BYE") {
			t.Errorf("tenth bad command: %q, want BYE", status)
		}
	}
	if !c.closed() {
		t.Error("open after ten bad commands")
	}
}

func TestSTARTTLSRules(t *testing.T) {
	env := newTestEnv(t)
	// Commands pipelined after STARTTLS arrive in the clear: refused.
	c, _ := env.dial()
	c.send("STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"x\"\r\n")
	if _, status := c.response(); !strings.HasPrefix(status, "BYE") {
		t.Errorf("STARTTLS with pipelined data: %q", status)
	}
	c, _ = env.dial()
	c.startTLS(env)
	c.expect("STARTTLS", `NO "TLS is already active"`)

	env2 := newTestEnv(t, func(o *Options) { o.TLSConfig = nil; o.AllowInsecureAuth = true })
	c, caps := env2.dial()
	if _, ok := caps["STARTTLS"]; ok {
		t.Error("STARTTLS offered without a TLSConfig")
	}
	c.expect("STARTTLS", `NO "STARTTLS is not available"`)
}

func TestIdleTimeoutAndShutdown(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	c, _ := env.dial()
	start := time.Now()
	if _, status := c.response(); status != `BYE "Disconnected for inactivity"` {
		t.Errorf("idle: %q", status)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle timeout took %v", d)
	}

	c, _ = env.dial()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go env.srv.Shutdown(ctx)
	if _, status := c.response(); status != `BYE (TRYLATER) "Server shutting down"` {
		t.Errorf("shutdown: %q", status)
	}
}

func TestStorageErrorsAreTemporary(t *testing.T) {
	env := newTestEnv(t)
	c := env.login("alice")
	// The storage directory is a file: every change fails, not the client's fault.
	if err := os.WriteFile(filepath.Join(env.home("alice"), "sieve"), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.expect(`PUTSCRIPT "x" "keep;"`, `NO (TRYLATER) "Your scripts cannot be reached now, try again later"`)
	_, status := c.cmd(`LISTSCRIPTS`)
	if strings.Contains(status, env.dir) {
		t.Errorf("a server path leaked to the client: %q", status)
	}
}

func TestWhoAndKick(t *testing.T) {
	env := newTestEnv(t)
	c := env.login("alice")
	who := env.srv.Who()
	if len(who) != 1 || who[0].User != "alice" || !who[0].TLS || who[0].Protocol != "managesieve" {
		t.Fatalf("Who = %+v", who)
	}
	kicked := env.srv.Kick(netserve.Match{UserMask: "ali*"})
	if len(kicked) != 1 {
		t.Fatalf("Kick ended %d sessions", len(kicked))
	}
	if _, status := c.response(); !strings.HasPrefix(status, "BYE") {
		t.Errorf("kicked session got %q", status)
	}
	if !c.closed() {
		t.Error("kicked session still open")
	}
}

// RFC 5804 section 1.7: NOTIFY lists the notification methods when, and
// only when, enotify is among the SIEVE extensions.
func TestNotifyCapability(t *testing.T) {
	_, caps := newTestEnv(t).dial()
	if v, ok := caps["NOTIFY"]; ok {
		t.Errorf("NOTIFY %q without enotify", v)
	}
	env := newTestEnv(t, func(o *Options) { o.Extensions = func() []string { return []string{"fileinto", "enotify"} } })
	if _, caps := env.dial(); caps["NOTIFY"] != "mailto" {
		t.Errorf("with enotify: NOTIFY %q, want mailto (%v)", caps["NOTIFY"], caps)
	}
}
