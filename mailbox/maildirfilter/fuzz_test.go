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
