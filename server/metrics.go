package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"postern/mailbox/imap"
	"postern/mailbox/maildir"
	"postern/mailbox/maildir/wal"
	"postern/mailbox/pop3"
)

// statsCollector exports a protocol server's own counters to Prometheus at
// scrape time, so the servers need not know about Prometheus.
type statsCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func imapCollector(srv *imap.Server) prometheus.Collector {
	active := prometheus.NewDesc("postern_imap_sessions_active", "IMAP sessions open now.", nil, nil)
	total := prometheus.NewDesc("postern_imap_sessions_total", "IMAP sessions accepted.", nil, nil)
	authFail := prometheus.NewDesc("postern_imap_auth_failures_total", "Failed IMAP logins.", nil, nil)
	commands := prometheus.NewDesc("postern_imap_commands_total", "IMAP commands by name.", []string{"command"}, nil)
	return &statsCollector{
		descs: []*prometheus.Desc{active, total, authFail, commands},
		collect: func(ch chan<- prometheus.Metric) {
			st := srv.Stats()
			ch <- prometheus.MustNewConstMetric(active, prometheus.GaugeValue, float64(st.SessionsActive))
			ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(st.SessionsTotal))
			ch <- prometheus.MustNewConstMetric(authFail, prometheus.CounterValue, float64(st.AuthFailures))
			for name, n := range st.Commands {
				ch <- prometheus.MustNewConstMetric(commands, prometheus.CounterValue, float64(n), name)
			}
		},
	}
}

func pop3Collector(srv *pop3.Server) prometheus.Collector {
	type metric struct {
		desc  *prometheus.Desc
		kind  prometheus.ValueType
		value func(pop3.Stats) int64
	}
	ms := []metric{
		{prometheus.NewDesc("postern_pop3_sessions_total", "POP3 connections accepted.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.Connections }},
		{prometheus.NewDesc("postern_pop3_sessions_active", "POP3 sessions open now.", nil, nil), prometheus.GaugeValue, func(s pop3.Stats) int64 { return s.ActiveSessions }},
		{prometheus.NewDesc("postern_pop3_logins_total", "Successful POP3 logins.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.Logins }},
		{prometheus.NewDesc("postern_pop3_auth_failures_total", "Failed POP3 logins.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.LoginFailures }},
		{prometheus.NewDesc("postern_pop3_messages_retrieved_total", "Messages sent by RETR.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.MessagesRetrieved }},
		{prometheus.NewDesc("postern_pop3_messages_deleted_total", "Messages removed at QUIT.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.MessagesDeleted }},
		{prometheus.NewDesc("postern_pop3_sent_bytes_total", "Message octets sent by RETR and TOP.", nil, nil), prometheus.CounterValue, func(s pop3.Stats) int64 { return s.BytesSent }},
	}
	c := &statsCollector{}
	for _, m := range ms {
		c.descs = append(c.descs, m.desc)
	}
	c.collect = func(ch chan<- prometheus.Metric) {
		st := srv.Stats()
		for _, m := range ms {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(st)))
		}
	}
	return c
}

func journalCollector(j *maildir.Journal) prometheus.Collector {
	type metric struct {
		desc  *prometheus.Desc
		kind  prometheus.ValueType
		value func(wal.Stats) float64
	}
	ms := []metric{
		{prometheus.NewDesc("postern_journal_records_total", "Deliveries made durable by the delivery journal.", nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(s.Records) }},
		{prometheus.NewDesc("postern_journal_flushes_total", "Journal writes+flushes (records ÷ flushes = deliveries per flush).", nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(s.Flushes) }},
		{prometheus.NewDesc("postern_journal_refused_total", "Deliveries the journal did not take (full, too big, failed); they were flushed one by one.", nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(s.Refused) }},
		{prometheus.NewDesc("postern_journal_checkpoints_total", "Journal checkpoints (syncfs of the Maildirs, space freed).", nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(s.Checkpoints) }},
		{prometheus.NewDesc("postern_journal_replayed_total", "Records replayed at start after a crash.", nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(s.Replayed) }},
		{prometheus.NewDesc("postern_journal_used_bytes", "Journal space held by records not yet checkpointed.", nil, nil), prometheus.GaugeValue, func(s wal.Stats) float64 { return float64(s.Used) }},
		{prometheus.NewDesc("postern_journal_size_bytes", "The journal file's size.", nil, nil), prometheus.GaugeValue, func(s wal.Stats) float64 { return float64(s.Size) }},
		{prometheus.NewDesc("postern_journal_failed", "1 when the journal failed and deliveries are flushed one by one until a restart.", nil, nil), prometheus.GaugeValue, func(s wal.Stats) float64 {
			if s.Failed {
				return 1
			}
			return 0
		}},
	}
	c := &statsCollector{}
	for _, m := range ms {
		c.descs = append(c.descs, m.desc)
	}
	c.collect = func(ch chan<- prometheus.Metric) {
		st := j.Stats()
		for _, m := range ms {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
		}
	}
	return c
}
