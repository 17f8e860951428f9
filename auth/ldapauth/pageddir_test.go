package ldapauth

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// pagedDirectory is a small LDAP server on a real loopback socket, for
// the listing's paging where no slapd is installed: it answers binds, and
// searches a page at a time by the paged results control (RFC 2696),
// whatever their filter (which it records). The slapd tests
// (TestEnumerate*) check the same against OpenLDAP itself.
type pagedDirectory struct {
	URI     string
	entries []*ldap.Entry

	// limit, when > 0, ends a search with sizeLimitExceeded once that
	// many entries were sent; noPaging ignores the control and sends
	// every entry at once.
	limit    int
	noPaging bool

	mu       sync.Mutex
	filters  []string
	pages    []int // the page size each search asked for
	searches int
}

func startPagedDirectory(t *testing.T, entries []*ldap.Entry) *pagedDirectory {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &pagedDirectory{URI: "ldap://" + l.Addr().String(), entries: entries}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); d.serve(c) }()
		}
	}()
	return d
}

// seen returns what the searches so far asked for, and starts afresh.
func (d *pagedDirectory) seen() (searches int, pages []int, filters []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	searches, pages, filters = d.searches, d.pages, d.filters
	d.searches, d.pages, d.filters = 0, nil, nil
	return
}

// set changes the limit and paging behaviour for the searches to come.
func (d *pagedDirectory) set(limit int, noPaging bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.limit, d.noPaging = limit, noPaging
}

func (d *pagedDirectory) serve(c net.Conn) {
	for {
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		op := p.Children[1]
		switch op.Tag {
		case ldap.ApplicationBindRequest:
			c.Write(message(id, result(ldap.ApplicationBindResponse, ldap.LDAPResultSuccess)).Bytes())
		case ldap.ApplicationUnbindRequest:
			return
		case ldap.ApplicationSearchRequest:
			if d.search(c, id, p) != nil {
				return
			}
		default:
			return
		}
	}
}

// search answers one page: the entries from the cookie's offset on.
func (d *pagedDirectory) search(c net.Conn, id int64, p *ber.Packet) error {
	filter, _ := ldap.DecompileFilter(p.Children[1].Children[6])
	var paging *ldap.ControlPaging
	if len(p.Children) > 2 {
		for _, cp := range p.Children[2].Children {
			if ctl, err := ldap.DecodeControl(cp); err == nil {
				if pc, ok := ctl.(*ldap.ControlPaging); ok {
					paging = pc
				}
			}
		}
	}
	d.mu.Lock()
	d.searches++
	d.filters = append(d.filters, filter)
	start, end := 0, len(d.entries)
	noPaging := d.noPaging
	if paging != nil && !noPaging {
		d.pages = append(d.pages, int(paging.PagingSize))
		if len(paging.Cookie) > 0 {
			start, _ = strconv.Atoi(string(paging.Cookie))
		}
		end = min(start+int(paging.PagingSize), len(d.entries))
	}
	limit := d.limit
	d.mu.Unlock()
	for i := start; i < end; i++ {
		if limit > 0 && i >= limit {
			_, err := c.Write(message(id, result(ldap.ApplicationSearchResultDone, ldap.LDAPResultSizeLimitExceeded)).Bytes())
			return err
		}
		if _, err := c.Write(message(id, entryPacket(d.entries[i])).Bytes()); err != nil {
			return err
		}
	}
	var controls []*ber.Packet
	if paging != nil && !noPaging {
		next := ldap.NewControlPaging(0)
		if end < len(d.entries) {
			next.SetCookie([]byte(strconv.Itoa(end)))
		}
		controls = append(controls, next.Encode())
	}
	_, err := c.Write(message(id, result(ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess), controls...).Bytes())
	return err
}

func message(id int64, op *ber.Packet, controls ...*ber.Packet) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "controls")
		for _, c := range controls {
			cs.AppendChild(c)
		}
		p.AppendChild(cs)
	}
	return p
}

func result(tag ber.Tag, code uint16) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "result")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	return op
}

func entryPacket(e *ldap.Entry) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, e.DN, "objectName"))
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attributes")
	for _, a := range e.Attributes {
		pa := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attribute")
		pa.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.Name, "type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range a.Values {
			vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "value"))
		}
		pa.AppendChild(vals)
		attrs.AppendChild(pa)
	}
	op.AppendChild(attrs)
	return op
}

// people makes n entries u00000 ... with a mail, ids and a home each.
func people(n int) []*ldap.Entry {
	var out []*ldap.Entry
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("u%05d", i)
		out = append(out, ldap.NewEntry("uid="+u+",ou=people,dc=example,dc=test", map[string][]string{
			"mail": {u + "@example.test"}, "uidNumber": {strconv.Itoa(2000 + i)}, "gidNumber": {"100"},
			"homeDirectory": {"/srv/" + u},
		}))
	}
	return out
}
