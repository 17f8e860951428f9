package admin

import (
	"context"
	"slices"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"

	"postern/filters/dns"
	"postern/web/autoconfig"
)

// checkState is how a record to publish fares in DNS.
type checkState string

const (
	stateMatches    checkState = "matches"
	stateDiffers    checkState = "differs"
	stateMissing    checkState = "missing"
	stateError      checkState = "lookup error"
	stateNotChecked checkState = "not checked"
)

// recordCheck is one record of a domain's page and, after a check, what
// DNS has for it.
type recordCheck struct {
	autoconfig.Record
	State checkState // "" before a check
	Found []string   // what DNS has at the name (of the type)
	Err   string
}

// Class is the state as one CSS class word ("lookup error" has a space).
func (c recordCheck) Class() string { return strings.ReplaceAll(string(c.State), " ", "-") }

// checkRecords looks each record up, at most checkParallel at once and
// checkLookupLimit in all, until ctx ends; records not reached are "not
// checked".
func checkRecords(ctx context.Context, r *dns.Resolver, recs []recordCheck) {
	sem := make(chan struct{}, checkParallel)
	var wg sync.WaitGroup
	for i := range recs {
		if i >= checkLookupLimit {
			recs[i].State, recs[i].Err = stateNotChecked, "more records than one check looks up"
			continue
		}
		wg.Add(1)
		go func(c *recordCheck) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				checkRecord(ctx, r, c)
			case <-ctx.Done():
				c.State, c.Err = stateNotChecked, "the check's time ran out"
			}
		}(&recs[i])
	}
	wg.Wait()
}

func checkRecord(ctx context.Context, r *dns.Resolver, c *recordCheck) {
	if ctx.Err() != nil {
		c.State, c.Err = stateNotChecked, "the check's time ran out"
		return
	}
	if c.Type == "TXT" {
		txts, err := r.LookupTXT(ctx, c.Name)
		if lookupFailed(c, err) {
			return
		}
		c.State, c.Found = matchTXT(c.Text, txts)
		return
	}
	want, err := mdns.NewRR(c.Line())
	if err != nil || want == nil {
		c.State, c.Err = stateError, "record not understood"
		return
	}
	ans, err := r.Query(ctx, c.Name, want.Header().Rrtype)
	if lookupFailed(c, err) {
		return
	}
	c.State = stateDiffers
	for _, rr := range ans.Records {
		c.Found = append(c.Found, rdata(rr))
		if sameData(want, rr) {
			c.State = stateMatches
		}
	}
}

// lookupFailed sets the state for a failed lookup: a definite "none" is
// missing, anything else (timeout, SERVFAIL) an error.
func lookupFailed(c *recordCheck, err error) bool {
	switch {
	case err == nil:
		return false
	case dns.IsNotFound(err):
		c.State = stateMissing
	default:
		c.State, c.Err = stateError, err.Error()
	}
	return true
}

// rdata is a record's data in zone-file form, without name, TTL, class
// and type.
func rdata(rr mdns.RR) string {
	return strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String()))
}

// sameData compares the data of two records of a type: names in them
// case-insensitively (RFC 4343), the rest exactly.
func sameData(want, have mdns.RR) bool {
	h := mdns.Copy(have)
	*h.Header() = *want.Header()
	return mdns.IsDuplicate(want, h)
}

// matchTXT finds the published TXT record that does the job of want
// among have: the one with the same version tag (v=spf1, v=DMARC1, ...).
// SPF terms and tag-list tags (RFC 6376 section 3.2, RFC 7489 section
// 6.4) may come in any order with any spacing; a DKIM key record matches
// when its p= is the same key.
func matchTXT(want string, have []string) (checkState, []string) {
	version := txtVersion(want)
	var candidates []string
	for _, t := range have {
		if version == "v=dkim1" || txtVersion(t) == version {
			candidates = append(candidates, t)
		}
	}
	if len(candidates) == 0 {
		return stateMissing, have
	}
	for _, t := range candidates {
		if sameTXT(version, want, t) {
			return stateMatches, candidates
		}
	}
	return stateDiffers, candidates
}

// txtVersion is the first term or tag of a TXT record, lower case and
// without spaces: "v=spf1", "v=dmarc1".
func txtVersion(t string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(t), ";")
	if f := strings.Fields(first); len(f) > 0 {
		first = f[0]
	}
	return strings.ToLower(strings.Join(strings.Fields(first), ""))
}

func sameTXT(version, want, have string) bool {
	switch version {
	case "v=spf1":
		w, h := strings.Fields(strings.ToLower(want)), strings.Fields(strings.ToLower(have))
		slices.Sort(w)
		slices.Sort(h)
		return slices.Equal(w, h)
	case "v=dkim1":
		wp, h := tagList(want)["p"], tagList(have)
		return wp != "" && h["p"] == wp
	}
	w, h := tagList(want), tagList(have)
	if len(w) != len(h) {
		return false
	}
	for k, v := range w {
		hv, ok := h[k]
		if !ok || (k == "v" && !strings.EqualFold(v, hv)) || (k != "v" && v != hv) {
			return false
		}
	}
	return true
}

// tagList parses "tag=value; tag=value" (RFC 6376 section 3.2) leniently:
// tag names in lower case, whitespace removed from values (it is folding
// whitespace there), entries without '=' skipped.
func tagList(t string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(t, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := out[k]; !dup {
			out[k] = strings.Join(strings.Fields(v), "")
		}
	}
	return out
}
