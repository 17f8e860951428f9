package managesieve

import (
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSieveConnect drives the server with the real client sieve-connect
// (Debian package sieve-connect): STARTTLS with certificate verification,
// SASL PLAIN (and LOGIN once), then upload, list, activate, download, check and delete.
// It is skipped only when the binary is missing.
func TestSieveConnect(t *testing.T) {
	bin, err := exec.LookPath("sieve-connect")
	if err != nil {
		t.Skip("sieve-connect is not installed (apt-get install sieve-connect)")
	}
	env := newTestEnv(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: env.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(env.addr)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pw.WriteString(testPassword + "\n")
		pw.Close()
		defer pr.Close()
		base := []string{"--server", "127.0.0.1", "--port", port, "--user", "alice", "--passwordfd", "3",
			"--tlscafile", caFile, "--tlshostname", "sieve.example.test", "--noclearauth"}
		if os.Getenv("SIEVE_CONNECT_DEBUG") != "" {
			base = append(base, "--debug")
		}
		cmd := exec.Command(bin, append(base, args...)...)
		cmd.ExtraFiles = []*os.File{pr}
		cmd.Dir = dir
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("sieve-connect %v hung; output:\n%s", args, out)
		}
		t.Logf("sieve-connect %s:\n%s", strings.Join(args, " "), out)
		if (err == nil) != wantOK {
			t.Fatalf("sieve-connect %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	local := filepath.Join(dir, "vacation.sieve")
	os.WriteFile(local, []byte(vacationScript), 0o600)
	run(true, "--upload", "--localsieve", local, "--remotesieve", "vacation")
	run(true, "--activate", "--remotesieve", "vacation", "--authmech", "LOGIN")
	if out := run(true, "--list"); !strings.Contains(out, `"vacation" ACTIVE`) {
		t.Errorf("--list printed %q", out)
	}
	if target, _ := os.Readlink(filepath.Join(env.home("alice"), ".dovecot.sieve")); target != "sieve/vacation.sieve" {
		t.Errorf("active link -> %q", target)
	}
	downloaded := filepath.Join(dir, "copy.sieve")
	run(true, "--download", "--remotesieve", "vacation", "--localsieve", downloaded)
	if got, _ := os.ReadFile(downloaded); string(got) != vacationScript {
		t.Errorf("downloaded %q", got)
	}
	bad := filepath.Join(dir, "bad.sieve")
	os.WriteFile(bad, []byte("keep;\nbad\n"), 0o600)
	out := run(false, "--exec", writeExec(t, dir, "put "+bad+" broken\nlist\n"))
	if !strings.Contains(out, `PUTSCRIPT(broken) failed: NO "line 2: unknown command \"bad\""`) {
		t.Errorf("uploading a bad script: %q", out)
	}
	if _, err := os.Stat(filepath.Join(env.home("alice"), "sieve", "broken.sieve")); !os.IsNotExist(err) {
		t.Errorf("a bad script was stored: %v", err)
	}
	run(true, "--deactivate")
	run(true, "--delete", "--remotesieve", "vacation")
	if out := run(true, "--list"); strings.Contains(out, "vacation") {
		t.Errorf("--list after delete printed %q", out)
	}
}

func writeExec(t *testing.T, dir, script string) string {
	p := filepath.Join(dir, "commands")
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
