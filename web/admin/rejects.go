package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"postern/filters/rejectlog"
	"postern/web/websession"
)

// The Rejects page: the rejection log (filters/rejectlog, postern
// rejects) in the browser, newest first, with the command's filters.
// Every request reads a bounded part of the log (rejectlog.NewestPage).
const (
	rejectsPageSize       = 100
	defaultRejectsMaxRead = 20000
	defaultRejectsTimeout = 5 * time.Second
	maxRejectsFilter      = 256 // bytes in one filter field
)

// rejectFilter is the page's filter form, as the query string carries it.
type rejectFilter struct {
	Client, From, Rcpt, Check, Text string
	Since, Until                    string // as typed: a duration back from now or a time (UTC)
	At                              string // the cursor of an "older" page
}

// parseRejectFilter reads the filter form into a page query. Every field
// is bounded; a bad one is an error naming it.
func parseRejectFilter(v url.Values, now time.Time) (rejectFilter, rejectlog.PageQuery, error) {
	f := rejectFilter{}
	var errs []error
	for _, fld := range []struct {
		key string
		dst *string
	}{{"client", &f.Client}, {"from", &f.From}, {"rcpt", &f.Rcpt}, {"check", &f.Check}, {"text", &f.Text}, {"since", &f.Since}, {"until", &f.Until}, {"at", &f.At}} {
		s := strings.TrimSpace(v.Get(fld.key))
		if len(s) > maxRejectsFilter {
			errs = append(errs, fmt.Errorf("%s: longer than %d bytes", fld.key, maxRejectsFilter))
			continue
		}
		*fld.dst = s
	}
	q := rejectlog.PageQuery{Query: rejectlog.Query{Client: f.Client, From: f.From, Rcpt: f.Rcpt, Filter: f.Check, Text: f.Text}, Size: rejectsPageSize}
	var err error
	if q.Since, err = rejectlog.ParseTimeBound(f.Since, now); err != nil {
		errs = append(errs, fmt.Errorf("since: %w", err))
	}
	if q.Until, err = rejectlog.ParseTimeBound(f.Until, now); err != nil {
		errs = append(errs, fmt.Errorf("until: %w", err))
	}
	if q.From, err = rejectlog.ParseCursor(f.At); err != nil {
		errs = append(errs, fmt.Errorf("at: %w", err))
	}
	return f, q, errors.Join(errs...)
}

// values is the filter as a query string, without the cursor.
func (f rejectFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"client": f.Client, "from": f.From, "rcpt": f.Rcpt, "check": f.Check, "text": f.Text, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

type rejectRow struct {
	rejectlog.Record
	At     string // the record's position, for its detail page
	When   string
	Sender string
	Code   string // the SMTP reply code
	Text   string // the rest of the reply
	Fired  []rejectlog.FilterResult
}

func newRejectRow(r rejectlog.Record, at rejectlog.Cursor) rejectRow {
	row := rejectRow{Record: r, At: at.String(), When: r.Time.UTC().Format("2006-01-02 15:04:05"), Sender: sender(r.From)}
	row.Code, row.Text, _ = strings.Cut(r.Reply, " ")
	for _, fr := range r.Results {
		if fr.Verdict != "none" && fr.Verdict != "accept" || fr.Score != 0 {
			row.Fired = append(row.Fired, fr)
		}
	}
	return row
}

// count is one line of the summary.
type count struct {
	Name          string
	Records       int // records the check took part in with a verdict or score (by stage: records)
	Decided       int
	Reject, Defer int
}

type rejectsData struct {
	Disabled bool
	Filter   rejectFilter
	Rows     []rejectRow
	Checks   []count
	Stages   []count
	Read     int
	MaxRead  int
	Stopped  string
	Newest   string // the link to the first page with this filter
	Older    string // the link to the next page; "" at the end
	Gone     bool   // the cursor rotated out of the log
}

// summarise counts the shown records by check and by stage.
func summarise(rows []rejectRow) (checks, stages []count) {
	byCheck, byStage := map[string]*count{}, map[string]*count{}
	get := func(m map[string]*count, name string) *count {
		if m[name] == nil {
			m[name] = &count{Name: name}
		}
		return m[name]
	}
	for _, r := range rows {
		st := get(byStage, r.Stage)
		st.Records++
		if strings.HasPrefix(r.Reply, "4") {
			st.Defer++
		} else {
			st.Reject++
		}
		seen := map[string]bool{}
		for _, fr := range r.Fired {
			if !seen[fr.Filter] {
				seen[fr.Filter] = true
				get(byCheck, fr.Filter).Records++
			}
		}
		if r.Decider != "" {
			c := get(byCheck, r.Decider)
			c.Decided++
			if !seen[r.Decider] {
				c.Records++
			}
		}
	}
	sorted := func(m map[string]*count) []count {
		var out []count
		for _, c := range m {
			out = append(out, *c)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Records != out[j].Records {
				return out[i].Records > out[j].Records
			}
			return out[i].Name < out[j].Name
		})
		return out
	}
	return sorted(byCheck), sorted(byStage)
}

// rejectsContext bounds one request's reading in time.
func (h *Handler) rejectsContext(r *http.Request) (context.Context, context.CancelFunc) {
	d := h.opt.RejectsTimeout
	if d <= 0 {
		d = defaultRejectsTimeout
	}
	return context.WithTimeout(r.Context(), d)
}

func (h *Handler) rejectsMaxRead() int {
	if h.opt.RejectsMaxRead > 0 {
		return h.opt.RejectsMaxRead
	}
	return defaultRejectsMaxRead
}

func (h *Handler) rejectList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	v := view{Title: "Rejects", Section: "rejects"}
	d := rejectsData{Disabled: h.opt.RejectLog == "", MaxRead: h.rejectsMaxRead()}
	f, q, err := parseRejectFilter(r.URL.Query(), time.Now())
	d.Filter = f
	d.Newest = Prefix + "rejects"
	if enc := f.values().Encode(); enc != "" {
		d.Newest += "?" + enc
	}
	status := http.StatusOK
	switch {
	case d.Disabled:
	case err != nil:
		status, v.Errors = http.StatusBadRequest, errorLines(err)
	default:
		q.MaxRead = d.MaxRead
		ctx, cancel := h.rejectsContext(r)
		defer cancel()
		page, err := rejectlog.NewestPage(ctx, h.opt.RejectLog, q)
		switch {
		case errors.Is(err, rejectlog.ErrCursorGone):
			status, d.Gone = http.StatusNotFound, true
		case err != nil:
			h.log.Error("webadmin: reading the rejection log", "err", err)
			status, v.Errors = http.StatusInternalServerError, errorLines(err)
		default:
			for i, rec := range page.Records {
				d.Rows = append(d.Rows, newRejectRow(rec, page.At[i]))
			}
			d.Read, d.Stopped = page.Read, page.Stopped
			if !page.Next.IsZero() {
				older := f.values()
				older.Set("at", page.Next.String())
				d.Older = Prefix + "rejects?" + older.Encode()
			}
		}
	}
	d.Checks, d.Stages = summarise(d.Rows)
	v.Data = d
	h.render(w, s, status, "rejects", v)
}

type rejectShowData struct {
	Row  rejectRow
	JSON string // the whole record, every field, as the log keeps it
}

func (h *Handler) rejectShow(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	v := view{Title: "Refusal", Section: "rejects"}
	at, err := rejectlog.ParseCursor(r.URL.Query().Get("at"))
	if err != nil || at.IsZero() || h.opt.RejectLog == "" {
		v.Error = "No such record."
		h.render(w, s, http.StatusNotFound, "reject-show", v)
		return
	}
	ctx, cancel := h.rejectsContext(r)
	defer cancel()
	page, err := rejectlog.NewestPage(ctx, h.opt.RejectLog, rejectlog.PageQuery{From: at, Size: 1, MaxRead: 1})
	if err != nil || len(page.Records) != 1 {
		v.Error = "No such record: the log may have rotated past it."
		h.render(w, s, http.StatusNotFound, "reject-show", v)
		return
	}
	js, _ := json.MarshalIndent(page.Records[0], "", "  ")
	v.Data = rejectShowData{Row: newRejectRow(page.Records[0], at), JSON: string(js)}
	h.render(w, s, http.StatusOK, "reject-show", v)
}
