package autoconfig

import (
	"bytes"
	"strings"
	"testing"
)

// Records and WriteRecords agree: each record's zone line is in the text
// after its comments, and a TXT record's Text is its unquoted value.
func TestRecordsMatchWriteRecords(t *testing.T) {
	s := Settings{Hostname: "mail.example.test", MTASTS: &Policies{}}
	in := RecordInputs{Domain: "example.test", DMARCRua: "dmarc@reports.example.net", TLSRPTRua: "postmaster@example.test"}
	recs, err := s.Records(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.WriteRecords(&buf, in); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	pos := 0
	types := map[string]int{}
	for _, r := range recs {
		for _, c := range r.Comment {
			i := strings.Index(text[pos:], "; "+c+"\n")
			if i < 0 {
				t.Fatalf("comment %q not in order in:\n%s", c, text)
			}
			pos += i
		}
		if r.Type == "" {
			continue
		}
		types[r.Type]++
		i := strings.Index(text[pos:], r.Line()+"\n")
		if i < 0 {
			t.Fatalf("record %q not in order in:\n%s", r.Line(), text)
		}
		pos += i
		if !strings.HasSuffix(r.Name, ".") {
			t.Errorf("%q is not absolute", r.Name)
		}
		if r.Type == "TXT" && r.Value != `"`+r.Text+`"` {
			t.Errorf("TXT %q: value %s", r.Text, r.Value)
		}
	}
	if types["MX"] != 1 || types["TXT"] != 4 || types["CNAME"] != 2 || types["SRV"] != 6 {
		t.Errorf("records by type: %v", types)
	}
	if !strings.Contains(text, `example.test._report._dmarc.reports.example.net. IN TXT "v=DMARC1"`) {
		t.Errorf("no report authorization record:\n%s", text)
	}
}
