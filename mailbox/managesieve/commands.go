package managesieve

import (
	"errors"
	"fmt"
	"strings"

	"postern/mailbox/sievestore"
)

// state is which session states a command is valid in (RFC 5804 section
// 2: commands before and after authentication).
type state int

const (
	anyState state = iota
	notAuthenticated
	authenticated
)

// commandSpec is one command: the states it is valid in, how many
// arguments it takes, and what runs it. run reports whether the session
// ends.
type commandSpec struct {
	states           state
	minArgs, maxArgs int
	usage            string
	run              func(s *session, args []arg) (stop bool)
}

// commands is the command table of RFC 5804 section 2.
var commands = map[string]commandSpec{
	"CAPABILITY":     {anyState, 0, 0, "CAPABILITY", (*session).cmdCapability},
	"LOGOUT":         {anyState, 0, 0, "LOGOUT", (*session).cmdLogout},
	"NOOP":           {anyState, 0, 1, "NOOP [tag]", (*session).cmdNoop},
	"STARTTLS":       {notAuthenticated, 0, 0, "STARTTLS", (*session).cmdStartTLS},
	"AUTHENTICATE":   {notAuthenticated, 1, 2, "AUTHENTICATE mechanism [initial-response]", (*session).cmdAuthenticate},
	"UNAUTHENTICATE": {authenticated, 0, 0, "UNAUTHENTICATE", (*session).cmdUnauthenticate},
	"HAVESPACE":      {authenticated, 2, 2, "HAVESPACE name size", (*session).cmdHaveSpace},
	"PUTSCRIPT":      {authenticated, 2, 2, "PUTSCRIPT name script", (*session).cmdPutScript},
	"CHECKSCRIPT":    {authenticated, 1, 1, "CHECKSCRIPT script", (*session).cmdCheckScript},
	"LISTSCRIPTS":    {authenticated, 0, 0, "LISTSCRIPTS", (*session).cmdListScripts},
	"SETACTIVE":      {authenticated, 1, 1, "SETACTIVE name", (*session).cmdSetActive},
	"GETSCRIPT":      {authenticated, 1, 1, "GETSCRIPT name", (*session).cmdGetScript},
	"DELETESCRIPT":   {authenticated, 1, 1, "DELETESCRIPT name", (*session).cmdDeleteScript},
	"RENAMESCRIPT":   {authenticated, 2, 2, "RENAMESCRIPT old-name new-name", (*session).cmdRenameScript},
}

// dispatch runs one command and reports whether the session ends.
func (s *session) dispatch(cmd command) (stop bool) {
	spec, ok := commands[cmd.name]
	if !ok {
		return s.badCommand("", "Unknown command "+truncate(cmd.name))
	}
	switch {
	case spec.states == authenticated && s.store == nil:
		return s.badCommand("", cmd.name+" is not allowed before AUTHENTICATE")
	case spec.states == notAuthenticated && s.store != nil:
		return s.badCommand("", cmd.name+" is not allowed once authenticated")
	case len(cmd.args) < spec.minArgs || len(cmd.args) > spec.maxArgs:
		return s.badCommand("", "Syntax: "+spec.usage)
	}
	return spec.run(s, cmd.args)
}

// truncate shortens client text quoted back in a response.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (s *session) cmdCapability([]arg) bool {
	s.capabilities("Capability completed")
	return false
}

// cmdLogout: RFC 5804 section 2.3 (with erratum 7825: the answer is OK).
func (s *session) cmdLogout([]arg) bool {
	s.respond("OK", "", "Logout completed")
	return true
}

// cmdNoop: RFC 5804 section 2.13; a tag argument comes back in a TAG
// response code, which clients use to resynchronize after STARTTLS.
func (s *session) cmdNoop(args []arg) bool {
	if len(args) == 1 {
		s.respond("OK", withString("TAG", args[0].value), "Done")
		return false
	}
	s.respond("OK", "", "Done")
	return false
}

// cmdHaveSpace: RFC 5804 section 2.5.
func (s *session) cmdHaveSpace(args []arg) bool {
	name := args[0].value
	size, ok := parseNumber(args[1].value)
	if !ok {
		return s.badCommand("", "HAVESPACE: the size must be a number of octets")
	}
	if err := s.store.HaveSpace(name, size); err != nil {
		s.storeFailed(err, name)
		return false
	}
	s.respond("OK", "", "Putscript would succeed")
	return false
}

// cmdPutScript: RFC 5804 section 2.6. The script is checked for room,
// then validated, then stored atomically: a script that fails either is
// not stored, and one that is stored replaces the old one whole.
func (s *session) cmdPutScript(args []arg) bool {
	name, src := args[0].value, []byte(args[1].value)
	if err := s.store.HaveSpace(name, int64(len(src))); err != nil {
		s.storeFailed(err, name)
		return false
	}
	warning, ok := s.validate(src)
	if !ok {
		return false
	}
	if err := s.store.Put(name, src); err != nil {
		s.storeFailed(err, name)
		return false
	}
	s.srv.stored.Add(1)
	s.log.Info("managesieve: script stored", "user", s.user, "script", name, "size", len(src))
	if warning != "" {
		s.respond("OK", "WARNINGS", warning)
		return false
	}
	s.respond("OK", "", "Putscript completed")
	return false
}

// cmdCheckScript: RFC 5804 section 2.12, the validation of PUTSCRIPT
// without storing.
func (s *session) cmdCheckScript(args []arg) bool {
	warning, ok := s.validate([]byte(args[0].value))
	switch {
	case !ok:
	case warning != "":
		s.respond("OK", "WARNINGS", warning)
	default:
		s.respond("OK", "", "Script is valid")
	}
	return false
}

// warner is an error of Options.Validate that is only a warning.
type warner interface{ Warning() bool }

// validate runs Options.Validate. It answers NO itself for an invalid
// script and returns ok false; a warning is returned for the OK.
func (s *session) validate(src []byte) (warning string, ok bool) {
	validate := s.srv.opt.Validate
	if validate == nil {
		return "", true
	}
	err := validate(src)
	if err == nil {
		return "", true
	}
	var w warner
	if errors.As(err, &w) && w.Warning() {
		return err.Error(), true
	}
	s.srv.rejected.Add(1)
	s.log.Info("managesieve: script refused", "user", s.user, "err", err)
	s.respond("NO", "", err.Error())
	return "", false
}

// cmdListScripts: RFC 5804 section 2.7, one line a script, the active one
// marked ACTIVE.
func (s *session) cmdListScripts([]arg) bool {
	scripts, err := s.store.List()
	if err != nil {
		s.storeFailed(err, "")
		return false
	}
	for _, sc := range scripts {
		writeString(s.w, sc.Name)
		if sc.Active {
			s.w.WriteString(" ACTIVE")
		}
		s.w.WriteString("\r\n")
	}
	s.respond("OK", "", "Listscripts completed")
	return false
}

// cmdSetActive: RFC 5804 section 2.8; the empty name deactivates.
func (s *session) cmdSetActive(args []arg) bool {
	name := args[0].value
	if err := s.store.SetActive(name); err != nil {
		s.storeFailed(err, name)
		return false
	}
	s.log.Info("managesieve: active script", "user", s.user, "script", name)
	if name == "" {
		s.respond("OK", "", "No script is active now")
		return false
	}
	s.respond("OK", "", "Setactive completed")
	return false
}

// cmdGetScript: RFC 5804 section 2.9; the script is sent as a literal.
func (s *session) cmdGetScript(args []arg) bool {
	src, err := s.store.Get(args[0].value)
	if err != nil {
		s.storeFailed(err, args[0].value)
		return false
	}
	fmt.Fprintf(s.w, "{%d}\r\n", len(src))
	s.w.Write(src)
	s.w.WriteString("\r\n")
	s.respond("OK", "", "Getscript completed")
	return false
}

// cmdDeleteScript: RFC 5804 section 2.10; the active script may not be
// deleted.
func (s *session) cmdDeleteScript(args []arg) bool {
	name := args[0].value
	if err := s.store.Delete(name); err != nil {
		s.storeFailed(err, name)
		return false
	}
	s.srv.deleted.Add(1)
	s.log.Info("managesieve: script deleted", "user", s.user, "script", name)
	s.respond("OK", "", "Deletescript completed")
	return false
}

// cmdRenameScript: RFC 5804 section 2.11.
func (s *session) cmdRenameScript(args []arg) bool {
	oldName, newName := args[0].value, args[1].value
	if err := s.store.Rename(oldName, newName); err != nil {
		s.storeFailed(err, oldName)
		return false
	}
	s.log.Info("managesieve: script renamed", "user", s.user, "from", oldName, "to", newName)
	s.respond("OK", "", "Renamescript completed")
	return false
}

// storeFailed answers a sievestore error with the response code RFC 5804
// section 1.3 gives it. Errors that are not the client's are logged and
// answered NO (TRYLATER), without the server's paths.
func (s *session) storeFailed(err error, name string) {
	var code string
	switch {
	case errors.Is(err, sievestore.ErrBadName):
		s.respond("NO", "", capitalize(err.Error()))
		return
	case errors.Is(err, sievestore.ErrNotFound):
		code = "NONEXISTENT"
	case errors.Is(err, sievestore.ErrExists):
		code = "ALREADYEXISTS"
	case errors.Is(err, sievestore.ErrActive):
		s.respond("NO", "ACTIVE", "You may not delete an active script")
		return
	case errors.Is(err, sievestore.ErrTooManyScripts):
		code = "QUOTA/MAXSCRIPTS"
	case errors.Is(err, sievestore.ErrScriptTooLarge):
		code = "QUOTA/MAXSIZE"
	case errors.Is(err, sievestore.ErrQuota):
		code = "QUOTA"
	default:
		s.log.Error("managesieve: script storage", "user", s.user, "script", name, "err", err)
		s.respond("NO", "TRYLATER", "Your scripts cannot be reached now, try again later")
		return
	}
	s.respond("NO", code, capitalize(err.Error()))
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
