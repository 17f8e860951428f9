package filters

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fixed is a filter that answers the same at every stage it implements.
type fixed struct {
	name string
	res  Result
	hits *[]string
}

func (f fixed) Name() string { return f.name }
func (f fixed) CheckRcpt(ctx context.Context, s *Session, rcpt string) Result {
	*f.hits = append(*f.hits, f.name)
	return f.res
}
func (f fixed) CheckData(ctx context.Context, s *Session, m Message) Result {
	*f.hits = append(*f.hits, f.name)
	return f.res
}

type panicky struct{}

func (panicky) Name() string                                                  { return "panicky" }
func (panicky) CheckRcpt(ctx context.Context, s *Session, rcpt string) Result { panic("boom") }

type slow struct{}

func (slow) Name() string { return "slow" }
func (slow) CheckRcpt(ctx context.Context, s *Session, rcpt string) Result {
	<-ctx.Done() // a well-behaved filter honours its deadline
	return Result{Verdict: Tempfail, Reason: "timed out"}
}

func TestPipelineModesAndShortCircuit(t *testing.T) {
	var hits []string
	reject := Result{Verdict: Reject, Score: 5, Reason: "listed", Code: 554, Enhanced: "5.7.1", Message: "Listed by bl.example"}
	cases := []struct {
		mode     Mode
		verdict  Verdict
		score    float64
		reachedB bool
	}{
		{ModeReject, Reject, 5, false},
		{ModeQuarantine, Quarantine, 5, true},
		{ModeScore, NoOpinion, 5, true},
		{ModeIgnore, NoOpinion, 0, true},
	}
	for _, c := range cases {
		hits = nil
		p := NewPipeline([]Entry{
			{Filter: fixed{"a", reject, &hits}, Mode: c.mode},
			{Filter: fixed{"b", Result{Score: 1}, &hits}},
		}, PipelineOptions{})
		s := &Session{}
		d := p.Run(context.Background(), StageRcpt, s, "x@example.test", nil)
		if d.Verdict != c.verdict || s.Score != c.score+map[bool]float64{true: 1}[c.reachedB] {
			t.Errorf("mode %s: verdict %s score %.1f", c.mode, d.Verdict, s.Score)
		}
		if (len(hits) == 2) != c.reachedB {
			t.Errorf("mode %s: filters run %v", c.mode, hits)
		}
		if c.mode == ModeReject && (d.Code != 554 || d.Message != "Listed by bl.example" || d.Filter != "a") {
			t.Errorf("reject decision %+v", d)
		}
		if len(s.Results) == 0 || s.Results[0].Filter != "a" {
			t.Errorf("results not recorded: %+v", s.Results)
		}
	}
}

func TestPipelineScoreThresholdsAtData(t *testing.T) {
	var hits []string
	mk := func(score float64) *Pipeline {
		return NewPipeline([]Entry{{Filter: fixed{"spammy", Result{Score: score}, &hits}, Weight: 2}},
			PipelineOptions{Thresholds: Thresholds{Reject: 10, Quarantine: 5}})
	}
	for score, want := range map[float64]Verdict{1: NoOpinion, 3: Quarantine, 5: Reject} {
		s := &Session{}
		d := mk(score).Run(context.Background(), StageData, s, "", nil)
		if d.Verdict != want {
			t.Errorf("score %.0f x2: %s, want %s", score, d.Verdict, want)
		}
		if want == Reject && (d.Code != 550 || !strings.Contains(d.Message, "score")) {
			t.Errorf("score reject %+v", d)
		}
	}
	// Thresholds apply only at the end of DATA.
	s := &Session{}
	if d := mk(5).Run(context.Background(), StageRcpt, s, "r", nil); d.Verdict != NoOpinion {
		t.Errorf("threshold applied at RCPT: %+v", d)
	}
}

func TestPipelineSurvivesPanicsAndTimeouts(t *testing.T) {
	p := NewPipeline([]Entry{{Filter: panicky{}}}, PipelineOptions{})
	d := p.Run(context.Background(), StageRcpt, &Session{}, "r", nil)
	if d.Verdict != Tempfail || d.Code != 451 {
		t.Fatalf("panicking filter: %+v", d)
	}
	p = NewPipeline([]Entry{{Filter: slow{}}}, PipelineOptions{StageTimeout: 50 * time.Millisecond})
	start := time.Now()
	if d := p.Run(context.Background(), StageRcpt, &Session{}, "r", nil); d.Verdict != Tempfail || time.Since(start) > 2*time.Second {
		t.Fatalf("slow filter: %+v after %v", d, time.Since(start))
	}
}

func TestAuthenticationResults(t *testing.T) {
	got := AuthenticationResults("mx.example.test", []Result{
		{AuthResults: []string{"spf=pass smtp.mailfrom=example.org"}},
		{},
		{AuthResults: []string{"dkim=pass header.d=example.org", "dmarc=pass header.from=example.org"}},
	})
	want := "Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=example.org;\r\n\tdkim=pass header.d=example.org;\r\n\tdmarc=pass header.from=example.org"
	if got != want {
		t.Fatalf("got %q", got)
	}
	if AuthenticationResults("x", nil) != "" {
		t.Fatal("empty results should give no header")
	}
}

// upper is a filter that rewrites the message it is given to upper case
// and adds a recipient, recording what it saw.
type upper struct {
	name string
	saw  *[]string
}

func (u upper) Name() string { return u.name }
func (u upper) CheckData(ctx context.Context, s *Session, m Message) Result {
	b := make([]byte, m.Size())
	m.ReadAt(b, 0)
	*u.saw = append(*u.saw, string(b))
	from := u.name + "@example.org"
	return Result{Rewritten: []byte(strings.ToUpper(string(b)) + u.name + "\r\n"),
		Envelope: &EnvelopeChange{From: &from, AddRcpts: []string{u.name + "@example.test"}}}
}

// A filter sees the message as the filters before it rewrote it; the
// decision carries the last rewrite and every envelope change in order;
// a filter in ignore mode changes nothing; a refusal carries no changes.
func TestPipelineRewrites(t *testing.T) {
	var saw []string
	p := NewPipeline([]Entry{
		{Filter: upper{"one", &saw}},
		{Filter: upper{"watched", &saw}, Mode: ModeIgnore},
		{Filter: upper{"two", &saw}},
	}, PipelineOptions{})
	d := p.Run(context.Background(), StageData, &Session{}, "", strings.NewReader("body\r\n"))
	if want := []string{"body\r\n", "BODY\r\none\r\n", "BODY\r\none\r\n"}; strings.Join(saw, "|") != strings.Join(want, "|") {
		t.Errorf("filters saw %q, want %q", saw, want)
	}
	if string(d.Rewritten) != "BODY\r\nONE\r\ntwo\r\n" {
		t.Errorf("rewritten %q", d.Rewritten)
	}
	if e := d.Envelope; e == nil || *e.From != "two@example.org" || strings.Join(e.AddRcpts, ",") != "one@example.test,two@example.test" {
		t.Errorf("envelope %+v", d.Envelope)
	}

	var hits []string
	p = NewPipeline([]Entry{
		{Filter: upper{"one", &saw}},
		{Filter: fixed{"bl", Result{Verdict: Reject}, &hits}},
	}, PipelineOptions{})
	if d := p.Run(context.Background(), StageData, &Session{}, "", strings.NewReader("x\r\n")); d.Verdict != Reject || d.Rewritten != nil || d.Envelope != nil {
		t.Errorf("refused: %+v", d)
	}
}

// A quarantine that asks for a hold (a milter's) marks the decision with
// its reason, even behind an earlier quarantine that does not; a filter
// only scored or watched cannot hold; a plain quarantine does not.
func TestPipelineHold(t *testing.T) {
	var hits []string
	plain := Result{Verdict: Quarantine, Reason: "dmarc p=quarantine"}
	held := Result{Verdict: Quarantine, Hold: true, Reason: "milter quarantined it"}
	run := func(entries ...Entry) Decision {
		return NewPipeline(entries, PipelineOptions{}).Run(context.Background(), StageData, &Session{}, "", strings.NewReader("x"))
	}
	d := run(Entry{Filter: fixed{"dmarc", plain, &hits}}, Entry{Filter: fixed{"milter", held, &hits}})
	if d.Verdict != Quarantine || d.Filter != "dmarc" || !d.Hold || d.HoldReason != "milter quarantined it" {
		t.Errorf("behind a plain quarantine: %+v", d)
	}
	if d := run(Entry{Filter: fixed{"dmarc", plain, &hits}}); d.Verdict != Quarantine || d.Hold {
		t.Errorf("a plain quarantine: %+v", d)
	}
	for _, m := range []Mode{ModeScore, ModeIgnore} {
		if d := run(Entry{Filter: fixed{"milter", held, &hits}, Mode: m}); d.Verdict != NoOpinion || d.Hold {
			t.Errorf("mode %s: %+v", m, d)
		}
	}
	// A hold flag on a verdict that is not a quarantine means nothing.
	if d := run(Entry{Filter: fixed{"odd", Result{Verdict: Accept, Hold: true}, &hits}}); d.Hold {
		t.Errorf("an accept with Hold: %+v", d)
	}
}

// mailOnly answers at MAIL only.
type mailOnly struct {
	name string
	res  Result
}

func (f mailOnly) Name() string                                     { return f.name }
func (f mailOnly) CheckMail(ctx context.Context, s *Session) Result { return f.res }

// Conditional deferrals as Postfix's smtpd_check.c applies access(5)'s
// DEFER_IF_PERMIT and DEFER_IF_REJECT: later checks of the stage still
// run; a later reject wins over DEFER_IF_PERMIT, an explicit or implicit
// permit is deferred; DEFER_IF_REJECT defers a later reject (the score's
// too) and nothing else; the first of each kind counts.
func TestPipelineConditionalDeferrals(t *testing.T) {
	var hits []string
	ifPermit := Result{Reason: "greylisted", DeferIfPermit: &Reply{Code: 450, Enhanced: "4.2.0", Text: "Greylisted"}}
	ifPermit2 := Result{Reason: "second", DeferIfPermit: &Reply{Code: 450, Enhanced: "4.7.1", Text: "second"}}
	ifReject := Result{Reason: "dns trouble", DeferIfReject: &Reply{Code: 450, Enhanced: "4.7.1", Text: "try later"}}
	reject := Result{Verdict: Reject, Code: 554, Enhanced: "5.7.1", Message: "Listed", Reason: "listed"}
	tempfail := Result{Verdict: Tempfail, Code: 451, Enhanced: "4.3.0", Message: "Busy", Reason: "busy"}
	accept := Result{Verdict: Accept, Reason: "whitelisted"}
	quarantine := Result{Verdict: Quarantine, Reason: "suspicious"}
	cases := []struct {
		name    string
		results []Result
		mode    Mode // of the first entry
		want    string
	}{
		{"if-permit, nothing after", []Result{ifPermit}, ModeReject, "tempfail 450 4.2.0 Greylisted by a"},
		{"if-permit, then reject", []Result{ifPermit, reject}, ModeReject, "reject 554 5.7.1 Listed by b"},
		{"if-permit, then tempfail", []Result{ifPermit, tempfail}, ModeReject, "tempfail 451 4.3.0 Busy by b"},
		{"if-permit, then accept", []Result{ifPermit, accept}, ModeReject, "tempfail 450 4.2.0 Greylisted by a"},
		{"if-permit, then quarantine", []Result{ifPermit, quarantine}, ModeReject, "tempfail 450 4.2.0 Greylisted by a"},
		{"first if-permit counts", []Result{ifPermit, ifPermit2}, ModeReject, "tempfail 450 4.2.0 Greylisted by a"},
		{"accept, then nothing runs", []Result{accept, ifPermit}, ModeReject, "none 0   by "},
		{"if-reject, nothing after", []Result{ifReject}, ModeReject, "none 0   by "},
		{"if-reject, then reject", []Result{ifReject, reject}, ModeReject, "tempfail 450 4.7.1 try later by a"},
		{"if-reject, then tempfail", []Result{ifReject, tempfail}, ModeReject, "tempfail 451 4.3.0 Busy by b"},
		{"reject before if-reject", []Result{reject, ifReject}, ModeReject, "reject 554 5.7.1 Listed by a"},
		{"if-reject and if-permit, then reject", []Result{ifReject, ifPermit, reject}, ModeReject, "tempfail 450 4.7.1 try later by a"},
		{"if-permit watched only", []Result{ifPermit}, ModeIgnore, "none 0   by "},
		{"if-permit scored only", []Result{ifPermit}, ModeScore, "none 0   by "},
		{"if-permit in quarantine mode", []Result{ifPermit}, ModeQuarantine, "tempfail 450 4.2.0 Greylisted by a"},
	}
	for _, c := range cases {
		var entries []Entry
		for i, r := range c.results {
			e := Entry{Filter: fixed{string(rune('a' + i)), r, &hits}}
			if i == 0 {
				e.Mode = c.mode
			}
			entries = append(entries, e)
		}
		d := NewPipeline(entries, PipelineOptions{}).Run(context.Background(), StageRcpt, &Session{}, "x@example.test", nil)
		if got := fmt.Sprintf("%s %d %s %s by %s", d.Verdict, d.Code, d.Enhanced, d.Message, d.Filter); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	// At the end of DATA the score's reject is deferred by DEFER_IF_REJECT,
	// and wins over DEFER_IF_PERMIT.
	spam := Result{Score: 20}
	p := NewPipeline([]Entry{{Filter: fixed{"a", ifReject, &hits}}, {Filter: fixed{"b", spam, &hits}}}, PipelineOptions{Thresholds: Thresholds{Reject: 10}})
	if d := p.Run(context.Background(), StageData, &Session{}, "", strings.NewReader("x")); d.Verdict != Tempfail || d.Message != "try later" || !strings.Contains(d.Reason, "deferred instead of score's reject") {
		t.Errorf("score reject after DEFER_IF_REJECT: %+v", d)
	}
	p = NewPipeline([]Entry{{Filter: fixed{"a", ifPermit, &hits}}, {Filter: fixed{"b", spam, &hits}}}, PipelineOptions{Thresholds: Thresholds{Reject: 10}})
	if d := p.Run(context.Background(), StageData, &Session{}, "", strings.NewReader("x")); d.Verdict != Reject || d.Filter != "score" {
		t.Errorf("score reject after DEFER_IF_PERMIT: %+v", d)
	}
}

// A DEFER_IF_PERMIT at MAIL lets MAIL through and defers each RCPT
// unless a check refuses the recipient; the next transaction starts
// afresh.
func TestPipelineDeferIfPermitAtMailDefersRecipients(t *testing.T) {
	var hits []string
	ifPermit := Result{Reason: "sender greylisted", DeferIfPermit: &Reply{Code: 450, Enhanced: "4.7.1", Text: "Greylisted"}}
	rcptCheck := fixed{"rcpt", Result{}, &hits}
	p := NewPipeline([]Entry{{Filter: mailOnly{"mail", ifPermit}}, {Filter: rcptCheck}}, PipelineOptions{})
	s := &Session{}
	if d := p.Run(context.Background(), StageMail, s, "", nil); d.Verdict != NoOpinion {
		t.Fatalf("MAIL: %+v", d)
	}
	if d := p.Run(context.Background(), StageRcpt, s, "a@example.test", nil); d.Verdict != Tempfail || d.Message != "Greylisted" || d.Filter != "mail" {
		t.Fatalf("RCPT: %+v", d)
	}
	// A recipient a check refuses gets the refusal.
	p2 := NewPipeline([]Entry{{Filter: fixed{"rcpt", Result{Verdict: Reject, Message: "No"}, &hits}}}, PipelineOptions{})
	if d := p2.Run(context.Background(), StageRcpt, s, "b@example.test", nil); d.Verdict != Reject {
		t.Fatalf("refused RCPT: %+v", d)
	}
	// The end of DATA is not deferred by it (Postfix resets it there).
	if d := p.Run(context.Background(), StageData, s, "", strings.NewReader("x")); d.Verdict != NoOpinion {
		t.Fatalf("DATA: %+v", d)
	}
	// A new MAIL forgets it.
	p3 := NewPipeline([]Entry{{Filter: mailOnly{"mail", Result{}}}, {Filter: rcptCheck}}, PipelineOptions{})
	p3.Run(context.Background(), StageMail, s, "", nil)
	if d := p3.Run(context.Background(), StageRcpt, s, "a@example.test", nil); d.Verdict != NoOpinion {
		t.Fatalf("RCPT of the next transaction: %+v", d)
	}
}

// Envelope changes given at RCPT (a policy server's REDIRECT, BCC) come
// with the decision, in order, the last redirect winning; a refused
// recipient's are dropped.
func TestPipelineEnvelopeChangesAtRcpt(t *testing.T) {
	var hits []string
	bcc := Result{Envelope: &EnvelopeChange{Bcc: []string{"archive@example.test"}}}
	redir1 := Result{Envelope: &EnvelopeChange{Redirect: "one@example.test"}}
	redir2 := Result{Envelope: &EnvelopeChange{Redirect: "two@example.test"}}
	p := NewPipeline([]Entry{{Filter: fixed{"a", bcc, &hits}}, {Filter: fixed{"b", redir1, &hits}}, {Filter: fixed{"c", redir2, &hits}}}, PipelineOptions{})
	d := p.Run(context.Background(), StageRcpt, &Session{}, "x@example.test", nil)
	if e := d.Envelope; e == nil || e.Redirect != "two@example.test" || strings.Join(e.Bcc, ",") != "archive@example.test" {
		t.Fatalf("envelope %+v", d.Envelope)
	}
	p = NewPipeline([]Entry{{Filter: fixed{"a", bcc, &hits}}, {Filter: fixed{"b", Result{Verdict: Reject}, &hits}}}, PipelineOptions{})
	if d := p.Run(context.Background(), StageRcpt, &Session{}, "x@example.test", nil); d.Envelope != nil {
		t.Fatalf("a refused recipient's envelope change kept: %+v", d.Envelope)
	}
	ifPermit := Result{DeferIfPermit: &Reply{Text: "later"}}
	p = NewPipeline([]Entry{{Filter: fixed{"a", bcc, &hits}}, {Filter: fixed{"b", ifPermit, &hits}}}, PipelineOptions{})
	if d := p.Run(context.Background(), StageRcpt, &Session{}, "x@example.test", nil); d.Verdict != Tempfail || d.Envelope != nil {
		t.Fatalf("a deferred recipient's envelope change kept: %+v", d)
	}
	p = NewPipeline([]Entry{{Filter: fixed{"a", bcc, &hits}, Mode: ModeIgnore}}, PipelineOptions{})
	if d := p.Run(context.Background(), StageRcpt, &Session{}, "x@example.test", nil); d.Envelope != nil {
		t.Fatalf("a watched check's envelope change kept: %+v", d.Envelope)
	}
}

// learner scores at DATA and remembers the outcomes it is told.
type learner struct {
	name  string
	score float64
	told  *[]Outcome
}

func (l learner) Name() string { return l.name }
func (l learner) CheckData(ctx context.Context, s *Session, m Message) Result {
	return Result{Score: l.score}
}
func (l learner) Outcome(ctx context.Context, s *Session, o Outcome) { *l.told = append(*l.told, o) }

// Tell reaches every OutcomeObserver, in every mode, with the total less
// that filter's own weighted score; other filters are not bothered.
func TestPipelineTellsOutcomeWithoutOwnScore(t *testing.T) {
	var a, b []Outcome
	p := NewPipeline([]Entry{
		{Filter: fixed{name: "other", res: Result{Score: 3}, hits: new([]string)}},
		{Filter: learner{name: "rep", score: -2, told: &a}, Weight: 2},
		{Filter: learner{name: "watched", score: 5, told: &b}, Mode: ModeIgnore},
	}, PipelineOptions{})
	s := &Session{}
	p.Run(context.Background(), StageData, s, "", strings.NewReader(""))
	if s.Score != 3-4 {
		t.Fatalf("total %v; want -1", s.Score)
	}
	p.Tell(context.Background(), s, Outcome{Stage: StageData, Verdict: Accept, Score: 99})
	if len(a) != 1 || a[0].Score != 3 || a[0].Verdict != Accept || a[0].Stage != StageData {
		t.Fatalf("rep was told %+v; want the total without its own -4, i.e. 3", a)
	}
	if len(b) != 1 || b[0].Score != -1 {
		t.Fatalf("ignored filter was told %+v; want the whole total -1 (its score counts for nothing)", b)
	}
}
