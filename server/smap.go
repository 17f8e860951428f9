package server

import (
	"context"
	"fmt"
	"strings"

	"postern/filters/dkim"
	"postern/gateway"
	"postern/mailbox/mime"
)

// smapSender sends the messages of SMAP's ADD with RCPTTO (Courier's "send
// it too", which Courier does with sendmail) through the local submission
// path sendmail uses: the same Router, local delivery, queue and DKIM
// signing; the sender checked against the login as senderlogin says.
type smapSender struct{ s *Server }

func (a smapSender) Send(ctx context.Context, login, from string, rcpts []string, notify string, msg []byte) error {
	cfg := a.s.Config()
	if from == "" && strings.Contains(login, "@") {
		from = login // Courier's default sender: the login
	}
	if from != "" && cfg.SenderLogin == "own" {
		owned, ref := a.s.mta.Router.SenderOwnedBy(ctx, from, login)
		if ref != nil {
			return ref
		}
		if !owned {
			return fmt.Errorf("<%s>: Sender address rejected: not owned by user %s", from, login)
		}
	}
	var signer *dkim.Signer
	if fl := a.s.filters.Load(); fl != nil {
		signer = fl.Signer
	}
	sb := &gateway.Submitter{Router: a.s.mta.Router, Local: a.s.mta.Local, Queue: a.s.mta.Queue, Me: cfg.Me, Log: a.s.log.With("service", "smap"), Signer: signer}
	_, ref, err := sb.Submit(ctx, gateway.Submission{Login: login, UID: -1, From: from, Rcpts: rcpts, Notify: notify, Msg: mime.CRLF(msg), Via: "smap"})
	if ref != nil {
		return ref
	}
	return err
}
