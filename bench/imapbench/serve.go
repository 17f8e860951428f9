package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"time"

	"postern/auth"
	"postern/mailbox/imap"
)

// oneUser is an auth.Module with one account whose Maildir is given.
type oneUser struct{ user, pass, maildir string }

func (o oneUser) Name() string { return "imapbench" }

func (o oneUser) account() *auth.Account {
	return &auth.Account{Name: o.user, Maildir: o.maildir, Module: o.Name()}
}

func (o oneUser) Lookup(ctx context.Context, name string) (*auth.Account, error) {
	if name != o.user {
		return nil, auth.ErrNoSuchUser
	}
	return o.account(), nil
}

func (o oneUser) Authenticate(ctx context.Context, service, name, password string) (*auth.Account, error) {
	if name != o.user {
		return nil, auth.ErrNoSuchUser
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(o.pass)) != 1 {
		return nil, auth.ErrBadPassword
	}
	return o.account(), nil
}

// serveMain runs Postern's IMAP server for one user over one Maildir until
// interrupted: the subject of the benchmark without a whole configuration.
func serveMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "the user's Maildir")
	addr := fs.String("addr", "127.0.0.1:1143", "listen address (plain IMAP, insecure auth allowed: use loopback)")
	user := fs.String("user", "bench", "login name")
	pass := fs.String("pass", "bench", "password")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060) for profiling")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pprofAddr != "" {
		go func() { fmt.Fprintln(stderr, http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if *dir == "" {
		return errors.New("serve: -dir required")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := imap.NewServer(imap.Options{
		Hostname:          "imapbench",
		Auth:              auth.NewService(oneUser{*user, *pass, *dir}),
		Logger:            slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		AllowInsecureAuth: true,
	})
	fmt.Fprintf(stderr, "imapbench: serving %s on %s\n", *dir, l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-done
	return nil
}
