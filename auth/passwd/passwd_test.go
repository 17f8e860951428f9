package passwd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const secret = "correct horse"

// Known vectors. Each was made outside Go by the command in its comment, so
// the tests check interoperability, not just a round trip through our code.
var knownGood = []struct {
	name, hash, password string
}{
	// openssl passwd -6 -salt saltsaltsaltsalt 'correct horse'
	{"sha512-crypt", "$6$saltsaltsaltsalt$GkzgkzVbauGAKXpOTbypQEKy/9yJWVjcvXvDw7CxoJjnJ1.w.g1rV8bhCVTpHrRrO/h6b3DAwPN3y5qmHXZ1R1", secret},
	// openssl passwd -5 -salt abcdefgh 'correct horse'
	{"sha256-crypt", "$5$abcdefgh$ruMep1ijHnJPZbETDNiumskxcX3kN4lzZd5VlsqE7eB", secret},
	// python3 -c "import crypt; print(crypt.crypt('correct horse','\$5\$rounds=10000\$saltstring'))"
	{"sha256-crypt rounds", "$5$rounds=10000$saltstring$ggJFhqdTxePyBHLQYFUkzFoOn.JeJ0OPTPpSZXyvS/3", secret},
	// python3 -c "import crypt; print(crypt.crypt('correct horse','\$6\$rounds=2000\$saltstring'))"
	{"sha512-crypt rounds", "$6$rounds=2000$saltstring$CWO3pnVxqUMtdDqk7gJ84eEXL8QmMHeR9YxuP4Paplo1mBQb5V0Ln8er866OPJvzQPpjkyb5T.TzFaWTZL7yx/", secret},
	// openssl passwd -1 -salt abcdefgh 'correct horse'
	{"md5-crypt", "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", secret},
	// The public OpenBSD/John the Ripper bcrypt vector for "U*U"
	// (no htpasswd or python bcrypt on the build machine).
	{"bcrypt 2a", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	// For ASCII passwords $2b$ and $2y$ (PHP, htpasswd -B, Dovecot) hash identically.
	{"bcrypt 2b", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"bcrypt 2y", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"{BLF-CRYPT}", "{BLF-CRYPT}$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"{SHA512-CRYPT}", "{SHA512-CRYPT}$6$saltsaltsaltsalt$GkzgkzVbauGAKXpOTbypQEKy/9yJWVjcvXvDw7CxoJjnJ1.w.g1rV8bhCVTpHrRrO/h6b3DAwPN3y5qmHXZ1R1", secret},
	{"{SHA256-CRYPT}", "{SHA256-CRYPT}$5$abcdefgh$ruMep1ijHnJPZbETDNiumskxcX3kN4lzZd5VlsqE7eB", secret},
	{"{MD5-CRYPT}", "{MD5-CRYPT}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", secret},
	{"{CRYPT} md5", "{CRYPT}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", secret},
	{"{CRYPT} sha512", "{crypt}$6$saltsaltsaltsalt$GkzgkzVbauGAKXpOTbypQEKy/9yJWVjcvXvDw7CxoJjnJ1.w.g1rV8bhCVTpHrRrO/h6b3DAwPN3y5qmHXZ1R1", secret},
	// Dovecot's {MD5} is MD5-crypt.
	{"{MD5} dovecot", "{MD5}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", secret},
	{"{PLAIN}", "{PLAIN}" + secret, secret},
	{"{CLEARTEXT}", "{CLEARTEXT}" + secret, secret},
	// echo -n 'correct horse' | openssl dgst -md5 -binary | base64   (Courier's {MD5})
	{"{MD5} courier", "{MD5}PLTnMmMfR+brlh80VUt83g==", secret},
	// echo -n 'correct horse' | openssl dgst -md5 -hex   (Dovecot's {PLAIN-MD5})
	{"{PLAIN-MD5} hex", "{PLAIN-MD5}3cb4e732631f47e6eb961f34554b7cde", secret},
	{"{PLAIN-MD5} b64", "{PLAIN-MD5}PLTnMmMfR+brlh80VUt83g==", secret},
	{"{MD5.HEX}", "{MD5.HEX}3cb4e732631f47e6eb961f34554b7cde", secret},
	// echo -n 'correct horse' | openssl dgst -sha1 -binary | base64   (Courier's and Dovecot's {SHA})
	{"{SHA}", "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", secret},
	// (echo -n 'correct horse'; echo -n NaCl) | openssl dgst -sha1 -binary > d; (cat d; echo -n NaCl) | base64
	{"{SSHA}", "{SSHA}Ki+Q9Ri8Nn2QN1jUbcaqfsgK/pJOYUNs", secret},
	// echo -n 'correct horse' | openssl dgst -sha256 -binary | base64
	{"{SHA256}", "{SHA256}QQTTb42iwlQ0n4WDZ5Pr4CngyVcGOjTJHC6SAxh7VjE=", secret},
	// (echo -n 'correct horse'; echo -n NaCl1234) | openssl dgst -sha256 -binary > d; (cat d; echo -n NaCl1234) | base64
	{"{SSHA256}", "{SSHA256}U+kc1alrfU/YkBSrUMVgRVRSDIXIhJKFdZfdaHQ8IbROYUNsMTIzNA==", secret},
	// echo -n 'correct horse' | openssl dgst -sha512 -binary | base64
	{"{SHA512}", "{SHA512}VraY3v7bWkNbY0r+MyC7rz/c2SC2xQOkRvx7endrKY1HnRumqLYXgI6wv1ec6aldZoNHvKtxSQhayTyyeZUZew==", secret},
	// (echo -n 'correct horse'; echo -n 'pepper!!') | openssl dgst -sha512 -binary > d; (cat d; echo -n 'pepper!!') | base64
	{"{SSHA512}", "{SSHA512}JVcc5iWOClGJNh1Mjd7G80VQCod+dK7vZbnCHsY6POVA7pJb5iBewgKWGG8435bUGBKBqRUKh6Teh+y/yNdSjnBlcHBlciEh", secret},
}

func TestVerifyKnownVectorsMatch(t *testing.T) {
	for _, v := range knownGood {
		t.Run(v.name, func(t *testing.T) {
			ok, err := Verify(v.hash, v.password)
			if err != nil || !ok {
				t.Fatalf("Verify(%q, right password) = %v, %v; want true, nil", v.hash, ok, err)
			}
		})
	}
}

func TestVerifyKnownVectorsRejectWrongPassword(t *testing.T) {
	for _, v := range knownGood {
		t.Run(v.name, func(t *testing.T) {
			for _, wrong := range []string{"", v.password + "x", v.password + " ", "x" + v.password, v.password[:len(v.password)-1]} {
				ok, err := Verify(v.hash, wrong)
				if err != nil || ok {
					t.Fatalf("Verify(%q, %q) = %v, %v; want false, nil", v.hash, wrong, ok, err)
				}
			}
		})
	}
}

func TestVerifyEmptyAndLockedHashesNeverMatch(t *testing.T) {
	for _, h := range []string{"", "!", "*", "!$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", "{PLAIN}"} {
		for _, pw := range []string{"", secret} {
			if ok, err := Verify(h, pw); ok || err != nil {
				t.Errorf("Verify(%q, %q) = %v, %v; want false, nil", h, pw, ok, err)
			}
		}
	}
}

func TestVerifyUnknownSchemeIsAnError(t *testing.T) {
	for _, h := range []string{"{ROT13}pbeerpg", "{SHA3}abc", "{SHA256.ZIP}abc", "plaintext", "ab01234567890", "$7$foo$bar", "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"} {
		ok, err := Verify(h, "plaintext")
		if ok || !errors.Is(err, ErrUnknownScheme) {
			t.Errorf("Verify(%q) = %v, %v; want false, ErrUnknownScheme", h, ok, err)
		}
	}
}

func TestVerifyMalformedHashIsAnError(t *testing.T) {
	for _, h := range []string{
		"{SHA",                               // unterminated prefix
		"{SHA}not base64!!",                  // bad encoding
		"{SHA}AAAA",                          // wrong digest length
		"{SSHA}L55TUjtiq8FBorTWAZ0jy6g129A=", // salted but no salt
		"{BLF-CRYPT}$6$x$y",                  // wrong crypt for the prefix
		"{SHA512-CRYPT}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80",
		"$6$",        // no salt, no digest
		"$6$salt",    // no digest
		"$1$a$b$c$d", // too many parts
		"$5$rounds=abc$salt$digest",
		"$2a$05$short",
	} {
		ok, err := Verify(h, secret)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, %v; want false, ErrMalformedHash", h, ok, err)
		}
	}
}

func TestVerifyRefusesExcessiveCost(t *testing.T) {
	for _, h := range []string{
		"$6$rounds=999999999$saltstring$CWO3pnVxqUMtdDqk7gJ84eEXL8QmMHeR9YxuP4Paplo1mBQb5V0Ln8er866OPJvzQPpjkyb5T.TzFaWTZL7yx/",
		"$2a$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	} {
		ok, err := Verify(h, secret)
		if ok || !errors.Is(err, ErrTooCostly) {
			t.Errorf("Verify(%q) = %v, %v; want false, ErrTooCostly", h, ok, err)
		}
	}
	if _, err := Verify("{PLAIN}x", strings.Repeat("x", MaxPasswordLen+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Errorf("over-long password: err = %v, want ErrPasswordTooLong", err)
	}
}

func TestHashRoundTripsThroughVerify(t *testing.T) {
	for _, scheme := range []string{"", "bcrypt", "sha512-crypt", "sha256-crypt", "md5-crypt", "SHA512-CRYPT"} {
		t.Run(scheme, func(t *testing.T) {
			h, err := Hash(secret, scheme)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := Verify(h, secret); !ok || err != nil {
				t.Fatalf("Verify(Hash(%q)) = %v, %v", scheme, ok, err)
			}
			if ok, err := Verify(h, "wrong"); ok || err != nil {
				t.Fatalf("Verify(Hash(%q), wrong) = %v, %v", scheme, ok, err)
			}
			h2, _ := Hash(secret, scheme)
			if h == h2 {
				t.Fatalf("two hashes of one password are equal (%q): salt is not random", h)
			}
		})
	}
}

func TestHashFormats(t *testing.T) {
	cost, err := bcryptCost()
	if err != nil {
		t.Fatal(err)
	}
	prefixes := map[string]string{"bcrypt": fmt.Sprintf("$2a$%02d$", cost), "sha512-crypt": "$6$", "sha256-crypt": "$5$", "md5-crypt": "$1$"}
	for scheme, prefix := range prefixes {
		h, err := Hash(secret, scheme)
		if err != nil || !strings.HasPrefix(h, prefix) {
			t.Errorf("Hash(%q) = %q, %v; want prefix %q", scheme, h, err, prefix)
		}
	}
	if _, err := Hash(secret, "rot13"); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("Hash(rot13) err = %v, want ErrUnknownScheme", err)
	}
}

// TestBcryptCostSetting: POSTERN_BCRYPT_COST sets the cost of new bcrypt
// hashes; a value out of range or not a number is an error, never a
// silent default.
func TestBcryptCostSetting(t *testing.T) {
	for _, c := range []struct {
		v    string
		set  bool
		want int
	}{{"", false, DefaultBcryptCost}, {"", true, DefaultBcryptCost}, {"4", true, 4}, {" 12 ", true, 12}, {"16", true, 16}} {
		if got, err := parseBcryptCost(c.v, c.set); err != nil || got != c.want {
			t.Errorf("parseBcryptCost(%q, %v) = %d, %v; want %d", c.v, c.set, got, err, c.want)
		}
	}
	for _, v := range []string{"3", "17", "ten", "-1", "10x"} {
		if _, err := parseBcryptCost(v, true); err == nil || !strings.Contains(err.Error(), BcryptCostEnv) {
			t.Errorf("parseBcryptCost(%q) err = %v, want one naming %s", v, err, BcryptCostEnv)
		}
	}
	// The variable reaches Hash: the test binary run again with it set.
	if os.Getenv("PASSWD_TEST_CHILD") == "1" {
		h, err := Hash(secret, "bcrypt")
		fmt.Print(h, err)
		return
	}
	for v, want := range map[string]string{"5": "$2a$05$", "99": "want a bcrypt cost from 4 to 16"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestBcryptCostSetting$")
		cmd.Env = append(os.Environ(), "PASSWD_TEST_CHILD=1", BcryptCostEnv+"="+v)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s=%s: %v\n%s\nwant %q", BcryptCostEnv, v, err, out, want)
		}
	}
}

// FuzzVerify: garbage hashes and passwords must never panic, and an error
// must never come with a match.
func FuzzVerify(f *testing.F) {
	for _, v := range knownGood {
		f.Add(v.hash, v.password)
	}
	f.Add("{SSHA}", "")
	f.Add("$5$rounds=1000$$", "x")
	f.Add("{", "")
	f.Fuzz(func(t *testing.T, hash, password string) {
		ok, err := Verify(hash, password)
		if ok && err != nil {
			t.Fatalf("Verify(%q, %q) = true with error %v", hash, password, err)
		}
		if ok && hash == "" {
			t.Fatal("empty hash matched")
		}
	})
}
