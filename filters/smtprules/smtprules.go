// Package smtprules runs the admin's rules — written in Courier's maildrop
// filter language (postern/rules), in embedded mode — inside the SMTP
// session, as a check of the filter pipeline. The rules see the session as
// variables (SENDER, RECIPIENT, REMOTE_ADDR, REMOTE_HOST, HELO, AUTH_USER,
// TLS, SCORE, and every check's variables and verdicts) and answer the way
// Courier's embedded filters do: EXITCODE and the echo output.
//
//	EXITCODE 0 (default)   accept (no opinion)
//	EXITCODE 75            tempfail: 451 with the echo text
//	EXITCODE 99            accept: later checks of the stage are skipped
//	any other EXITCODE     reject: 550 with the echo text (a leading
//	                       "NNN X.Y.Z " in the text chooses the reply)
//
// and with variables: ADDHEADER (header lines to add to the message),
// FOLDER=Junk (file into that folder; quarantine), SCORE_ADD (added to the
// total score).
//
// Per-recipient decisions are made at RCPT, where the rules run once for
// each recipient (RECIPIENT set, no message): a recipient can be refused on
// its own, so different outcomes for one message lose nothing. At DATA the
// rules run once on the message, with RECIPIENTS listing every recipient;
// their decision applies to the whole message. A rule error (syntax,
// limits) is a tempfail: mail is never lost nor wrongly accepted because a
// rule broke.
package smtprules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"postern/filters"
	"postern/policy"
	"postern/rules"
)

// SettingName is the configuration file holding the rules.
const SettingName = "smtprules"

// maxMessage bounds how much of a message the rules see at DATA.
const maxMessage = 16 << 20

// Filter is the "rules" check.
type Filter struct {
	prog *rules.Program
	dir  string
}

// Load reads CONFIG/smtprules (a file, or a directory whose files are
// joined in order). It returns nil, nil when there is no rules file.
func Load(configDir string) (*Filter, error) {
	lines, err := policy.ReadSetting(configDir, SettingName)
	if errors.Is(err, policy.ErrNotSet) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The rules language needs the file as written (comments, indentation,
	// line numbers for errors), so read the files again rather than the
	// trimmed setting lines.
	var src bytes.Buffer
	var name string
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l.File] {
			continue
		}
		seen[l.File] = true
		data, err := os.ReadFile(l.File)
		if err != nil {
			return nil, err
		}
		if name == "" {
			name = l.File
		}
		src.Write(data)
		src.WriteByte('\n')
	}
	if name == "" {
		return nil, nil
	}
	prog, err := rules.Parse(name, src.Bytes())
	if err != nil {
		return nil, err
	}
	// The rules run embedded, which refuses a whole file holding a
	// delivery or a command: say so now, not with a 451 per message.
	if err := prog.EmbeddedRefusal(); err != nil {
		return nil, err
	}
	return &Filter{prog: prog, dir: configDir}, nil
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "rules" }

// CheckRcpt implements filters.RcptChecker.
func (f *Filter) CheckRcpt(ctx context.Context, s *filters.Session, rcpt string) filters.Result {
	vars := sessionVars(s)
	vars["RECIPIENT"] = rcpt
	vars["RECIPIENTS"] = strings.Join(append(append([]string(nil), s.Rcpts...), rcpt), " ")
	r := f.run(ctx, vars, rules.NewMessage(nil))
	// Header fields and the score belong to the message, which is judged
	// once after DATA: an ADDHEADER or SCORE_ADD the rules set whatever
	// the stage would count once per recipient and once more after DATA
	// (4 points became 16 for three recipients).
	r.HeaderFields, r.Score = nil, 0
	return r
}

// CheckData implements filters.DataChecker.
func (f *Filter) CheckData(ctx context.Context, s *filters.Session, msg filters.Message) filters.Result {
	vars := sessionVars(s)
	vars["RECIPIENTS"] = strings.Join(s.Rcpts, " ")
	if len(s.Rcpts) == 1 {
		vars["RECIPIENT"] = s.Rcpts[0]
	}
	m, err := rules.ReadMessage(io.NewSectionReader(msg, 0, msg.Size()), maxMessage)
	if err != nil {
		return tempfail("rules: reading the message: " + err.Error())
	}
	return f.run(ctx, vars, m)
}

// sessionVars are the variables the rules see.
func sessionVars(s *filters.Session) map[string]string {
	v := map[string]string{
		"SENDER":      s.From,
		"REMOTE_ADDR": s.ClientIP.String(),
		"REMOTE_HOST": s.ClientName,
		"HELO":        s.HELO,
		"AUTH_USER":   s.AuthUser,
		"TLS":         boolVar(s.TLS),
		"SCORE":       strconv.FormatFloat(s.Score, 'f', 1, 64),
	}
	for k, val := range s.Access {
		v[k] = val
	}
	for _, r := range s.Results {
		for k, val := range r.Vars {
			v[k] = val
		}
		name := strings.ToUpper(strings.NewReplacer(":", "_", ".", "_", "-", "_").Replace(r.Filter))
		v["FILTER_"+name] = r.Verdict.String()
		v["FILTER_"+name+"_SCORE"] = strconv.FormatFloat(r.Score, 'f', 1, 64)
	}
	return v
}

func boolVar(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

var replyPrefix = regexp.MustCompile(`^([245][0-9][0-9])(?: ([245]\.[0-9]{1,3}\.[0-9]{1,3}))? +`)

func (f *Filter) run(ctx context.Context, vars map[string]string, msg *rules.Message) filters.Result {
	var out bytes.Buffer
	res, err := f.prog.Run(ctx, msg, rules.Env{Vars: vars, Embedded: true, Dir: f.dir, Stdout: &out})
	text := strings.TrimSpace(strings.ReplaceAll(out.String(), "\n", " "))
	if err != nil {
		// A broken rule tempfails: never lose mail, never wave it through.
		return tempfail("rules error: " + err.Error())
	}
	r := filters.Result{Filter: "rules", Vars: map[string]string{}}
	if h := res.Vars["ADDHEADER"]; h != "" {
		for _, line := range strings.Split(h, "\n") {
			if line = strings.TrimSpace(line); strings.Contains(line, ":") && !strings.ContainsAny(line, "\r") {
				r.HeaderFields = append(r.HeaderFields, line)
			}
		}
	}
	if sc, err := strconv.ParseFloat(res.Vars["SCORE_ADD"], 64); err == nil {
		r.Score = sc
	}
	code := res.ExitCode
	switch {
	case code == 0:
		if strings.EqualFold(res.Vars["FOLDER"], "junk") {
			r.Verdict, r.Reason = filters.Quarantine, "rules: file into Junk"
		}
	case code == 99:
		r.Verdict, r.Reason = filters.Accept, "rules: accepted"
	case code == 75:
		r.Verdict, r.Code, r.Enhanced = filters.Tempfail, 451, "4.7.1"
	default:
		r.Verdict, r.Code, r.Enhanced = filters.Reject, 550, "5.7.1"
	}
	if r.Verdict == filters.Reject || r.Verdict == filters.Tempfail {
		if m := replyPrefix.FindStringSubmatch(text); m != nil {
			c, _ := strconv.Atoi(m[1])
			if c/100 == r.Code/100 {
				r.Code = c
				if m[2] != "" {
					r.Enhanced = m[2]
				}
				text = text[len(m[0]):]
			}
		}
		if text == "" {
			text = "Refused by local policy"
		}
		r.Message = text
		r.Reason = fmt.Sprintf("rules: EXITCODE %d: %s", code, text)
	}
	return r
}

func tempfail(reason string) filters.Result {
	return filters.Result{Filter: "rules", Verdict: filters.Tempfail, Code: 451, Enhanced: "4.3.0",
		Message: "Temporary local policy failure, try again later", Reason: reason}
}
