package netserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// ErrOtherProtocol is Handshake's error for a handshake that negotiated a
// protocol by ALPN (RFC 7301). None of Postern's mail protocols is
// offered by an ALPN name, so such a handshake is another service's: the
// ACME CA's tls-alpn-01 check (RFC 8737), which ends with the handshake.
// The connection is to be closed with nothing more sent.
var ErrOtherProtocol = errors.New("TLS handshake for another protocol")

// Handshake runs the server side of tc's TLS handshake within timeout (or
// until ctx ends), and refuses one that negotiated an ALPN protocol
// (ErrOtherProtocol). On success the connection has no deadline.
func Handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) error {
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" {
		return fmt.Errorf("%w (%s)", ErrOtherProtocol, p)
	}
	tc.SetDeadline(time.Time{})
	return nil
}
