// Package gosmtptest runs github.com/emersion/go-smtp servers in tests:
// the peers outbound delivery talks to, and go-smtp itself as a yardstick.
package gosmtptest

import (
	"errors"
	"net"
	"testing"

	"github.com/emersion/go-smtp"
)

// Serve serves srv on l until the test ends. The cleanup closes l as well
// as srv: go-smtp's Server.Close only closes the listeners Serve has
// already registered, so a test that ended before its Serve goroutine ran
// would otherwise wait for that goroutine forever. An error from Serve
// other than the close fails the test.
func Serve(tb testing.TB, srv *smtp.Server, l net.Listener) {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tb.Cleanup(func() {
		srv.Close()
		l.Close()
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			tb.Errorf("go-smtp server on %s: %v", l.Addr(), err)
		}
	})
}
