package imap

import (
	"bufio"
	"net"
	"time"

	"postern/internal/netserve"
)

// SMAPHandler takes over a connection whose client switched to Courier's
// Simple Mail Access Protocol (mailbox/smap's Server implements it).
//
// Courier's imapd, when SMAP_CAPABILITY is set, lists SMAP1 in its
// CAPABILITY and treats a command tagged "\SMAP1" before login as the
// client's switch to SMAP (imaplogin.c); Courier's clients (Cone) send
// "\SMAP1 LOGIN ..." when they see SMAP1. With Options.SMAP set, this
// server does the same: it advertises SMAP1 (and KEYWORDS, as Courier
// does beside it) and hands such a connection, with the command still
// unread in br, to the SMAP server for the rest of its life.
type SMAPHandler interface {
	HandOff(c net.Conn, br *bufio.Reader, isTLS bool)
}

// smapTag is the tag with which a client asks for SMAP.
const smapTag = `\SMAP1 `

// wantsSMAP reports whether the next command is tagged "\SMAP1". It peeks
// one byte at a time, so a line that only starts like the tag is left to
// the IMAP parser without waiting for more input than it has.
func wantsSMAP(br *bufio.Reader) bool {
	for n := 1; n <= len(smapTag); n++ {
		p, err := br.Peek(n)
		if err != nil || p[n-1] != smapTag[n-1] {
			return false
		}
	}
	return true
}

// handOffSMAP gives the connection to the SMAP server; the session ends
// when SMAP's does.
func (sess *session) handOffSMAP() {
	sess.conn.EndWait()
	sess.log.Info("imap: client switched to SMAP")
	// The SMAP server lists and kicks the session from now on.
	sess.track.Update(func(i *netserve.SessionInfo) { i.Protocol = "" })
	sess.conn.SetReadDeadline(time.Time{})
	sess.srv.opt.SMAP.HandOff(sess.conn.NetConn(), sess.br, sess.tls)
}
