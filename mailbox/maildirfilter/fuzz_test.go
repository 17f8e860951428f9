package maildirfilter

import (
	"reflect"
	"testing"
)

// FuzzParse reads arbitrary filter files: no panic, every rule it
// returns passes Check, and a file generated from them reads back as
// the same rules.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sqwebmailFile))
	f.Add([]byte("#MFMAILDROP=2\n##Op:startswith\n##Header:From\n##Value:boss\n##Folder:*go away\n##DoesNot\n##Name:x\n"))
	f.Add([]byte("#MFMAILDROP=1\n##Op:islargerthan\n##Value:100\n##Folder:!a@b.c d@e.f\n##Continue\n##Name:big\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, _, err := Parse(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			if err := r.Check(); err != nil {
				t.Fatalf("Parse returned a rule Check refuses: %+v: %v", r, err)
			}
		}
		out, err := Generate(rs, testRecipe)
		if err != nil {
			return // a pattern the delivery agent cannot use
		}
		back, problems, err := Parse(out)
		if err != nil || len(problems) != 0 || (len(rs) > 0 || len(back) > 0) && !reflect.DeepEqual(back, rs) {
			t.Fatalf("round trip:\n%+v\n%+v %v %v\n%s", rs, back, problems, err, out)
		}
	})
}

// FuzzRule builds a rule from arbitrary fields, as the webmail's form
// does: one that passes Check and Generate is the only rule the file
// reads back, unchanged — no field can add a rule, a "##" line or a
// statement of its own.
func FuzzRule(f *testing.F) {
	f.Add("lists", "contains", "Subject", "[list]", "INBOX.Lists", "", true, false, false, false)
	f.Add("away", "anymessage", "", "", "+vacation days=7", "Me <me@x.org>", false, false, false, true)
	f.Add("x\n##Name:y", "startswith", "From", "a\nto \"/tmp\"", "!a@b.c", "", false, true, true, false)
	f.Add("q", "contains", "Subject", `\"; system`, "*bye", "", true, false, false, false)
	f.Fuzz(func(t *testing.T, name, op, header, value, action, from string, plain, not, body, cont bool) {
		r := Rule{Name: name, Op: Op(op), Header: header, Value: value, Action: action, From: from,
			PlainString: plain, DoesNot: not, Body: body, Continue: cont}
		if r.Check() != nil {
			return
		}
		out, err := Generate([]Rule{r}, testRecipe)
		if err != nil {
			return
		}
		back, problems, err := Parse(out)
		if err != nil || len(problems) != 0 || len(back) != 1 {
			t.Fatalf("read back %+v %v %v from\n%s", back, problems, err, out)
		}
		if back[0].Op != r.Op || back[0].Name != r.Name || back[0].Value != r.Value || back[0].Action != r.Action || back[0].From != r.From {
			t.Fatalf("changed: %+v -> %+v\n%s", r, back[0], out)
		}
	})
}
