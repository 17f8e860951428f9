package report

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Feedback is the aggregate report document (RFC 7489 Appendix C).
type Feedback struct {
	XMLName         xml.Name        `xml:"feedback"`
	Version         string          `xml:"version"`
	Metadata        Metadata        `xml:"report_metadata"`
	PolicyPublished PolicyPublished `xml:"policy_published"`
	Records         []Record        `xml:"record"`
}

// Metadata is ReportMetadataType.
type Metadata struct {
	OrgName   string    `xml:"org_name"`
	Email     string    `xml:"email"`
	ReportID  string    `xml:"report_id"`
	DateRange DateRange `xml:"date_range"`
}

// DateRange is DateRangeType: Unix seconds.
type DateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

// PolicyPublished is PolicyPublishedType.
type PolicyPublished struct {
	Domain string `xml:"domain"`
	ADKIM  string `xml:"adkim"`
	ASPF   string `xml:"aspf"`
	P      string `xml:"p"`
	SP     string `xml:"sp"`
	Pct    int    `xml:"pct"`
	FO     string `xml:"fo"`
}

// Record is RecordType: one row and its identifiers and results.
type Record struct {
	Row         RowXML      `xml:"row"`
	Identifiers Identifiers `xml:"identifiers"`
	AuthResults AuthResults `xml:"auth_results"`
}

// RowXML is RowType.
type RowXML struct {
	SourceIP        string          `xml:"source_ip"`
	Count           int             `xml:"count"`
	PolicyEvaluated PolicyEvaluated `xml:"policy_evaluated"`
}

// PolicyEvaluated is PolicyEvaluatedType.
type PolicyEvaluated struct {
	Disposition string         `xml:"disposition"`
	DKIM        string         `xml:"dkim"`
	SPF         string         `xml:"spf"`
	Reasons     []OverrideInfo `xml:"reason"`
}

// OverrideInfo is PolicyOverrideReason.
type OverrideInfo struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

// Identifiers is IdentifierType.
type Identifiers struct {
	EnvelopeFrom string `xml:"envelope_from"`
	HeaderFrom   string `xml:"header_from"`
}

// AuthResults is AuthResultType.
type AuthResults struct {
	DKIM []DKIMAuth `xml:"dkim"`
	SPF  []SPFAuth  `xml:"spf"`
}

// DKIMAuth is DKIMAuthResultType.
type DKIMAuth struct {
	Domain   string `xml:"domain"`
	Selector string `xml:"selector,omitempty"`
	Result   string `xml:"result"`
}

// SPFAuth is SPFAuthResultType.
type SPFAuth struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope,omitempty"`
	Result string `xml:"result"`
}

// DomainReport is one policy domain's rows of a period.
type DomainReport struct {
	Domain     string
	Begin, End time.Time
	Published  Policy   // as the last row of the period saw it
	RUA        []string // the rua= of that record
	Records    []Record
	Messages   int
}

// Aggregator groups rows per policy domain, and in each per identical
// record (source IP, disposition, aligned results, override, identifiers
// and auth results), counting messages.
type Aggregator struct {
	begin, end time.Time
	byDomain   map[string]*DomainReport
	index      map[string]map[string]int // domain -> record key -> index in Records
}

// NewAggregator returns an empty Aggregator for the period [begin, end).
func NewAggregator(begin, end time.Time) *Aggregator {
	return &Aggregator{begin: begin, end: end, byDomain: map[string]*DomainReport{}, index: map[string]map[string]int{}}
}

// Add counts r.
func (a *Aggregator) Add(r Row) {
	dr := a.byDomain[r.PolicyDomain]
	if dr == nil {
		dr = &DomainReport{Domain: r.PolicyDomain, Begin: a.begin, End: a.end}
		a.byDomain[r.PolicyDomain] = dr
		a.index[r.PolicyDomain] = map[string]int{}
	}
	dr.Published, dr.RUA = r.Published, r.RUA
	dr.Messages++
	rec := recordOf(r)
	key := recordKey(rec)
	if i, ok := a.index[r.PolicyDomain][key]; ok {
		dr.Records[i].Row.Count++
		return
	}
	rec.Row.Count = 1
	a.index[r.PolicyDomain][key] = len(dr.Records)
	dr.Records = append(dr.Records, rec)
}

// Reports returns the domains' reports, sorted by domain; records are in
// the order of their first message.
func (a *Aggregator) Reports() []*DomainReport {
	out := make([]*DomainReport, 0, len(a.byDomain))
	for _, dr := range a.byDomain {
		out = append(out, dr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// Aggregate is an Aggregator over rows.
func Aggregate(rows []Row, begin, end time.Time) []*DomainReport {
	a := NewAggregator(begin, end)
	for _, r := range rows {
		a.Add(r)
	}
	return a.Reports()
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

func recordOf(r Row) Record {
	rec := Record{
		Row: RowXML{SourceIP: r.SourceIP, PolicyEvaluated: PolicyEvaluated{
			Disposition: r.Disposition, DKIM: passFail(r.DKIMAligned), SPF: passFail(r.SPFAligned),
		}},
		Identifiers: Identifiers{EnvelopeFrom: r.EnvelopeFrom, HeaderFrom: r.HeaderFrom},
	}
	if r.Override != "" {
		rec.Row.PolicyEvaluated.Reasons = []OverrideInfo{{Type: r.Override, Comment: r.Comment}}
	}
	for _, d := range r.DKIM {
		parts := strings.SplitN(d, "/", 3)
		if len(parts) != 3 || parts[1] == "-" || parts[1] == "" {
			continue // a signature without a domain cannot be listed (domain is required)
		}
		a := DKIMAuth{Domain: parts[1], Result: dkimResult(parts[0])}
		if parts[2] != "-" {
			a.Selector = parts[2]
		}
		rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, a)
	}
	// SPFAuthResultType needs a domain: the HELO name for the null sender.
	rec.AuthResults.SPF = []SPFAuth{{Domain: r.SPFDomain, Scope: r.SPFScope, Result: spfResult(r.SPFResult)}}
	return rec
}

// dkimResult maps our DKIM status names onto DKIMResultType.
func dkimResult(s string) string {
	switch s {
	case "none", "pass", "fail", "policy", "neutral", "temperror", "permerror":
		return s
	}
	return "neutral"
}

// spfResult maps our SPF result names onto SPFResultType.
func spfResult(s string) string {
	switch s {
	case "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror":
		return s
	}
	return "none"
}

func recordKey(r Record) string {
	var b strings.Builder
	pe := r.Row.PolicyEvaluated
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s|", r.Row.SourceIP, pe.Disposition, pe.DKIM, pe.SPF, r.Identifiers.EnvelopeFrom, r.Identifiers.HeaderFrom)
	for _, o := range pe.Reasons {
		fmt.Fprintf(&b, "o:%s:%s|", o.Type, o.Comment)
	}
	for _, d := range r.AuthResults.DKIM {
		fmt.Fprintf(&b, "d:%s:%s:%s|", d.Domain, d.Selector, d.Result)
	}
	for _, s := range r.AuthResults.SPF {
		fmt.Fprintf(&b, "s:%s:%s:%s|", s.Domain, s.Scope, s.Result)
	}
	return b.String()
}

// Reporter is who the reports come from.
type Reporter struct {
	OrgName string // org_name
	Email   string // email: the reporting address
	Domain  string // this receiver's domain: file name and Subject
}

// Feedback builds dr's document with report ID id.
func (rp Reporter) Feedback(dr *DomainReport, id string) Feedback {
	p := dr.Published
	sp := p.SP
	if sp == "" {
		sp = p.P // Appendix C: sp is required; absent, p= applies to subdomains
	}
	fo := p.FO
	if fo == "" {
		fo = "0" // the default of section 6.3
	}
	return Feedback{
		Version: "1.0",
		Metadata: Metadata{OrgName: rp.OrgName, Email: rp.Email, ReportID: id,
			DateRange: DateRange{Begin: dr.Begin.Unix(), End: dr.End.Unix() - 1}},
		PolicyPublished: PolicyPublished{Domain: dr.Domain, ADKIM: p.ADKIM, ASPF: p.ASPF, P: p.P, SP: sp, Pct: p.Pct, FO: fo},
		Records:         dr.Records,
	}
}

// XML renders f with the XML declaration, indented.
func (f Feedback) XML() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("dmarc report: xml: %w", err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// Gzip compresses b.
func Gzip(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Filename is section 7.2.1.1's attachment name:
// receiver "!" policy-domain "!" begin "!" end ".xml.gz".
func (rp Reporter) Filename(dr *DomainReport) string {
	return fmt.Sprintf("%s!%s!%d!%d.xml.gz", rp.Domain, dr.Domain, dr.Begin.Unix(), dr.End.Unix()-1)
}
