//go:build pam && cgo

package pamauth

import (
	"errors"
	"fmt"

	"github.com/msteinert/pam/v2"

	"postern/auth"
)

// Available says whether this binary was built with PAM.
const Available = true

// check runs PAM's auth and account stacks of service for name, answering
// every password prompt with password.
func (m *Module) check(service, name, password string) error {
	conv := pam.ConversationFunc(func(s pam.Style, msg string) (string, error) {
		switch s {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			return password, nil
		case pam.ErrorMsg, pam.TextInfo:
			return "", nil
		}
		return "", errors.New("authpam: unexpected PAM conversation")
	})
	var t *pam.Transaction
	var err error
	if m.cfg.ConfDir != "" {
		t, err = pam.StartConfDir(service, name, conv, m.cfg.ConfDir)
	} else {
		t, err = pam.Start(service, name, conv)
	}
	if err != nil {
		return fmt.Errorf("authpam: %w: %w", auth.ErrTemporary, err)
	}
	defer t.End()
	if err := t.Authenticate(pam.Silent | pam.DisallowNullAuthtok); err != nil {
		return m.verdict("auth", err)
	}
	if err := t.AcctMgmt(pam.Silent); err != nil {
		return m.verdict("account", err)
	}
	return nil
}

// verdict turns a PAM error into the service's: a refusal for wrong
// passwords and refused accounts, a temporary failure when PAM could not
// decide.
func (m *Module) verdict(stack string, err error) error {
	switch {
	case errors.Is(err, pam.ErrAuth), errors.Is(err, pam.ErrPermDenied), errors.Is(err, pam.ErrMaxtries),
		errors.Is(err, pam.ErrAcctExpired), errors.Is(err, pam.ErrNewAuthtokReqd), errors.Is(err, pam.ErrCredInsufficient):
		return fmt.Errorf("authpam: %s: %v: %w", stack, err, auth.ErrBadPassword)
	case errors.Is(err, pam.ErrUserUnknown):
		return auth.ErrNoSuchUser
	}
	m.log.Warn("PAM could not decide", "stack", stack, "err", err)
	return fmt.Errorf("authpam: %s: %w: %w", stack, auth.ErrTemporary, err)
}
