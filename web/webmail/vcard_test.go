package webmail

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// importVCard posts the import form as a browser does.
func (b *browser) importVCard(name string, data []byte, withToken bool) response {
	b.e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if withToken {
		mw.WriteField("csrf", b.csrf)
	}
	w, _ := mw.CreateFormFile("vcf", name)
	w.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", b.e.srv.URL+"/mail/abook/import", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", b.e.srv.URL)
	return b.do(req)
}

func listItems(t *testing.T, r response, class string) []string {
	t.Helper()
	var out []string
	for _, ul := range find(r.doc(t), "ul", class) {
		for _, li := range find(ul, "li", "") {
			out = append(out, text(li))
		}
	}
	return out
}

const richBook = `bob: "Bob Smith" <bob@example.org>
team: "Bob Smith" <bob@example.org>,
    "Carol \"CJ\" Jones; Esq., née Müller" <carol@example.org>,
    <dave@example.org>
plain: <plain@example.org>
two: "Eve Long Name That Goes On And On Beyond Seventy Five Octets Of One Line, Ünïcödé, and then on for another line and more" <eve@example.org>,
    "Eve Long Name That Goes On And On Beyond Seventy Five Octets Of One Line, Ünïcödé, and then on for another line and more" <eve.work@example.com>
`

// TestVCardExportImport exports a book with a person, a list of named and
// unnamed members, an entry without a name and names with every
// character vCard escapes, and imports it into another user's empty book:
// the same entries come back.
func TestVCardExportImport(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, richBook)
	a := e.login(alice)
	r := a.get("/mail/abook/export")
	if r.status != 200 {
		t.Fatalf("export: %d %s", r.status, r.body)
	}
	for k, want := range map[string]string{"Content-Type": "text/vcard; charset=utf-8", "X-Content-Type-Options": "nosniff"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
	if d := r.header.Get("Content-Disposition"); !strings.HasPrefix(d, "attachment") || !strings.Contains(d, "addressbook.vcf") {
		t.Errorf("Content-Disposition %q", d)
	}
	if !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("no sandbox")
	}
	if n := strings.Count(r.body, "BEGIN:VCARD\r\n"); n != 4 {
		t.Fatalf("%d cards: %s", n, r.body)
	}
	for _, l := range strings.Split(r.body, "\r\n") {
		if len(l) > 75 {
			t.Errorf("line not folded (%d octets): %q", len(l), l)
		}
	}
	unfolded := strings.ReplaceAll(r.body, "\r\n ", "")
	if !strings.Contains(unfolded, "KIND:group") || !strings.Contains(unfolded, "MEMBER;X-POSTERN-NAME=\"Carol ^'CJ^' Jones; Esq., née Müller\":mailto:carol@example.org") {
		t.Errorf("the list is not a group with named members:\n%s", r.body)
	}

	b := e.login(bob)
	imp := b.importVCard("alice.vcf", []byte(r.body), true)
	if imp.status != 200 {
		t.Fatalf("import: %d %s", imp.status, imp.body)
	}
	if added := listItems(t, imp, "added"); len(added) != 4 {
		t.Fatalf("added %v", added)
	}
	if s := listItems(t, imp, "skipped"); len(s) != 0 {
		t.Fatalf("skipped %v", s)
	}
	got := parseAddressBook([]byte(e.readBook(bob))).entries()
	want := parseAddressBook([]byte(richBook)).entries()
	if len(got) != len(want) {
		t.Fatalf("imported %d entries, want %d:\n%s", len(got), len(want), e.readBook(bob))
	}
	for i := range want {
		if got[i].Nick != want[i].Nick || !slices.Equal(got[i].Addrs, want[i].Addrs) {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Importing the same file again adds nothing.
	imp = b.importVCard("alice.vcf", []byte(r.body), true)
	if s := text(find(imp.doc(t), "p", "summary")[0]); !strings.Contains(s, "0 added, 4 already in the address book, 0 not imported") {
		t.Errorf("second import: %q", s)
	}
}

// vcardsFromPhones are cards as other programs write them.
const vcardsFromPhones = "BEGIN:VCARD\r\nVERSION:3.0\r\nNICKNAME:bob\r\nFN:Bob Smith\r\nEMAIL;TYPE=INTERNET:bob@example.org\r\nEND:VCARD\r\n" +
	// the same nickname, another person: skipped
	"BEGIN:VCARD\nVERSION:4.0\nNICKNAME:Bob\nFN:Bob Other\nEMAIL:bob@other.example\nEND:VCARD\n" +
	// no nickname: one made of the address, numbered when taken
	"BEGIN:VCARD\nVERSION:4.0\nFN:Carol Jones\nEMAIL;PREF=1:carol@example.org\nEMAIL:carol@\n home.example\nEND:VCARD\n" +
	"BEGIN:VCARD\nVERSION:4.0\nN:Jones;Carol;;;\nEMAIL:carol@other.example\nEND:VCARD\n" +
	// vCard 2.1: quoted-printable, Latin-1, bare types, a soft line break
	"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:M=FCller;J=FCr=\r\ngen\r\nEMAIL;INTERNET;PREF:juergen@example.de\r\nEND:VCARD\r\n" +
	// no address
	"BEGIN:VCARD\nVERSION:4.0\nFN:Nobody\nTEL:+1 555 0100\nEND:VCARD\n" +
	// a bad address beside a good one
	"BEGIN:VCARD\nVERSION:4.0\nFN:Frank\nNICKNAME:frank,franky\nEMAIL:not an address\nEMAIL:frank@example.org\nEND:VCARD\n" +
	// a group: mailto members in, references to other cards out
	"BEGIN:VCARD\nVERSION:4.0\nKIND:group\nFN:Club\nNICKNAME:club\nMEMBER:mailto:gina@example.org\nMEMBER:urn:uuid:03a0e51f-d1aa-4385-8a53-e29025acd8af\nEND:VCARD\n" +
	"stray text\n" +
	"BEGIN:VCARD\nVERSION:4.0\nFN:Cut short\nEMAIL:cut@example.org\n"

func TestVCardImportMerge(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, "bob: \"Bob Smith\" <bob@example.org>\ncarol: <carol@elsewhere.example>\nbroken line without colon\n")
	b := e.login(alice)
	r := b.importVCard("phone.vcf", []byte(vcardsFromPhones), true)
	if r.status != 200 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	added := listItems(t, r, "added")
	wantAdded := []string{"Carol Jones (carol2)", "Carol Jones (carol3)", "Jürgen Müller (juergen)", "Frank (frank)", "Club (club)"}
	if !slices.Equal(added, wantAdded) {
		t.Errorf("added %q, want %q", added, wantAdded)
	}
	skipped := strings.Join(listItems(t, r, "skipped"), "\n")
	for _, want := range []string{
		"the nickname bob is taken by another entry",
		"(Nobody): It has no e-mail address that can be used",
		"line 51: not inside a vCard",
		"(Cut short): It has no END:VCARD",
	} {
		if !strings.Contains(skipped, want) {
			t.Errorf("report lacks %q:\n%s", want, skipped)
		}
	}
	notes := strings.Join(listItems(t, r, "notes"), "\n")
	if !strings.Contains(notes, `"not an address": not an address`) || !strings.Contains(notes, "a member that is another card") {
		t.Errorf("notes:\n%s", notes)
	}
	if s := text(find(r.doc(t), "p", "summary")[0]); !strings.Contains(s, "5 added, 1 already in the address book, 4 not imported") {
		t.Errorf("summary %q", s)
	}
	book := e.readBook(alice)
	for _, want := range []string{
		"bob: \"Bob Smith\" <bob@example.org>\ncarol: <carol@elsewhere.example>\nbroken line without colon\n", // kept as it was
		`carol2: "Carol Jones" <carol@example.org>,` + "\n" + `    "Carol Jones" <carol@home.example>`,
		`carol3: "Carol Jones" <carol@other.example>`,
		`juergen: "Jürgen Müller" <juergen@example.de>`,
		`frank: "Frank" <frank@example.org>`,
		`club: "Club" <gina@example.org>`,
	} {
		if !strings.Contains(book, want) {
			t.Errorf("book lacks %q:\n%s", want, book)
		}
	}
}

func TestVCardImportRefusals(t *testing.T) {
	e := newEnv(t)
	e.writeBook(alice, "bob: <bob@example.org>\n")
	b := e.login(alice)
	card := []byte("BEGIN:VCARD\nVERSION:4.0\nFN:X\nEMAIL:x@example.org\nEND:VCARD\n")
	if r := b.importVCard("x.vcf", card, false); r.status != http.StatusForbidden {
		t.Errorf("without token: %d", r.status)
	}
	big := bytes.Repeat([]byte("NOTE:padding padding padding padding padding\n"), maxVCardFile/40)
	big = append(append([]byte("BEGIN:VCARD\nVERSION:4.0\nEMAIL:big@example.org\n"), big...), "END:VCARD\n"...)
	if r := b.importVCard("big.vcf", big, true); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("file over the bound: %d", r.status)
	}
	if r := b.importVCard("empty.vcf", nil, true); r.status != http.StatusBadRequest {
		t.Errorf("empty file: %d", r.status)
	}
	if got := e.readBook(alice); got != "bob: <bob@example.org>\n" {
		t.Fatalf("book changed by refused imports: %q", got)
	}
	// A full book takes nothing more, and says so.
	var full strings.Builder
	for i := range maxBookEntries {
		full.WriteString("n" + itoa(i) + ": <n@example.org>\n")
	}
	e.writeBook(alice, full.String())
	r := b.importVCard("x.vcf", card, true)
	if s := strings.Join(listItems(t, r, "skipped"), "\n"); !strings.Contains(s, "the address book is full") {
		t.Errorf("full book: %s", s)
	}
	if e.readBook(alice) != full.String() {
		t.Error("full book changed")
	}
}

func TestVCardText(t *testing.T) {
	p, err := parseVCardLine(`item1.EMAIL;TYPE="work,pref";X-POSTERN-NAME="a ^'b^' ^^ c; d: e":x@y`)
	if err != nil {
		t.Fatal(err)
	}
	if p.name != "EMAIL" || p.value != "x@y" || p.param("X-POSTERN-NAME") != `a "b" ^ c; d: e` || !slices.Equal(p.params["TYPE"], []string{"work,pref"}) {
		t.Fatalf("%+v", p)
	}
	got, _ := vcardText(vcardProp{value: `a\,b\;c\\d\ne,f`}, true)
	if !slices.Equal(got, []string{"a,b;c\\d\ne", "f"}) {
		t.Fatalf("%q", got)
	}
	for _, bad := range []string{"no colon", `X;P="open:v`, ":v", "b@d:v"} {
		if _, err := parseVCardLine(bad); err == nil {
			t.Errorf("%q read", bad)
		}
	}
}
