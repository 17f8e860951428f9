package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"postern/auth"

	"postern/mailbox/imap"
	"postern/mailbox/maildir"
	"postern/mailbox/maildir/wal"
	"postern/mailbox/managesieve"
	"postern/mailbox/pop3"
	"postern/mailbox/smap"
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
	proxied := prometheus.NewDesc("postern_imap_proxied_sessions_total", "IMAP logins relayed to the account's mailhost.", nil, nil)
	proxyFail := prometheus.NewDesc("postern_imap_proxy_failures_total", "IMAP logins whose mailhost could not be reached or refused the login.", nil, nil)
	connRefused := prometheus.NewDesc("postern_imap_connections_refused_total", "IMAP connections turned away over imapmaxdaemons or imapmaxperip.", nil, nil)
	loginRefused := prometheus.NewDesc("postern_imap_logins_refused_total", "IMAP logins refused over imapmaxuserip.", nil, nil)
	return &statsCollector{
		descs: []*prometheus.Desc{active, total, authFail, commands, proxied, proxyFail, connRefused, loginRefused},
		collect: func(ch chan<- prometheus.Metric) {
			st := srv.Stats()
			ch <- prometheus.MustNewConstMetric(active, prometheus.GaugeValue, float64(st.SessionsActive))
			ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(st.SessionsTotal))
			ch <- prometheus.MustNewConstMetric(authFail, prometheus.CounterValue, float64(st.AuthFailures))
			ch <- prometheus.MustNewConstMetric(proxied, prometheus.CounterValue, float64(st.ProxiedSessions))
			ch <- prometheus.MustNewConstMetric(proxyFail, prometheus.CounterValue, float64(st.ProxyFailures))
			ch <- prometheus.MustNewConstMetric(connRefused, prometheus.CounterValue, float64(st.ConnectionsRefused))
			ch <- prometheus.MustNewConstMetric(loginRefused, prometheus.CounterValue, float64(st.LoginsRefused))
			for name, n := range st.Commands {
				ch <- prometheus.MustNewConstMetric(commands, prometheus.CounterValue, float64(n), name)
			}
		},
	}
}

// statMetric is one metric read from a stats value of type S.
type statMetric[S any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(S) float64
}

// statsTable exports the metrics ms, all read from one stats() call per
// scrape.
func statsTable[S any](stats func() S, ms []statMetric[S]) prometheus.Collector {
	c := &statsCollector{}
	for _, m := range ms {
		c.descs = append(c.descs, m.desc)
	}
	c.collect = func(ch chan<- prometheus.Metric) {
		st := stats()
		for _, m := range ms {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
		}
	}
	return c
}

func pop3Collector(srv *pop3.Server) prometheus.Collector {
	counter := func(name, help string, v func(pop3.Stats) int64) statMetric[pop3.Stats] {
		return statMetric[pop3.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, func(s pop3.Stats) float64 { return float64(v(s)) }}
	}
	return statsTable(srv.Stats, []statMetric[pop3.Stats]{
		counter("postern_pop3_sessions_total", "POP3 connections accepted.", func(s pop3.Stats) int64 { return s.Connections }),
		{prometheus.NewDesc("postern_pop3_sessions_active", "POP3 sessions open now.", nil, nil), prometheus.GaugeValue, func(s pop3.Stats) float64 { return float64(s.ActiveSessions) }},
		counter("postern_pop3_logins_total", "Successful POP3 logins.", func(s pop3.Stats) int64 { return s.Logins }),
		counter("postern_pop3_auth_failures_total", "Failed POP3 logins.", func(s pop3.Stats) int64 { return s.LoginFailures }),
		counter("postern_pop3_messages_retrieved_total", "Messages sent by RETR.", func(s pop3.Stats) int64 { return s.MessagesRetrieved }),
		counter("postern_pop3_messages_deleted_total", "Messages removed at QUIT.", func(s pop3.Stats) int64 { return s.MessagesDeleted }),
		counter("postern_pop3_sent_bytes_total", "Message octets sent by RETR and TOP.", func(s pop3.Stats) int64 { return s.BytesSent }),
		counter("postern_pop3_proxied_sessions_total", "POP3 logins relayed to the account's mailhost.", func(s pop3.Stats) int64 { return s.ProxiedSessions }),
		counter("postern_pop3_proxy_failures_total", "POP3 logins whose mailhost could not be reached or refused the login.", func(s pop3.Stats) int64 { return s.ProxyFailures }),
		counter("postern_pop3_connections_refused_total", "POP3 connections turned away over pop3maxdaemons or pop3maxperip.", func(s pop3.Stats) int64 { return s.ConnectionsRefused }),
		counter("postern_pop3_logins_refused_total", "POP3 logins refused over pop3maxuserip.", func(s pop3.Stats) int64 { return s.LoginsRefused }),
	})
}

func smapCollector(srv *smap.Server) prometheus.Collector {
	counter := func(name, help string, v func(smap.Stats) int64) statMetric[smap.Stats] {
		return statMetric[smap.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, func(s smap.Stats) float64 { return float64(v(s)) }}
	}
	return statsTable(srv.Stats, []statMetric[smap.Stats]{
		counter("postern_smap_sessions_total", "SMAP sessions started (own listener and IMAP hand-offs).", func(s smap.Stats) int64 { return s.Connections }),
		counter("postern_smap_handoffs_total", "IMAP connections switched to SMAP by a \\SMAP1 command.", func(s smap.Stats) int64 { return s.HandOffs }),
		{prometheus.NewDesc("postern_smap_sessions_active", "SMAP sessions open now.", nil, nil), prometheus.GaugeValue, func(s smap.Stats) float64 { return float64(s.Active) }},
		counter("postern_smap_logins_total", "Successful SMAP logins.", func(s smap.Stats) int64 { return s.Logins }),
		counter("postern_smap_auth_failures_total", "Failed SMAP logins.", func(s smap.Stats) int64 { return s.LoginFailures }),
		counter("postern_smap_commands_total", "SMAP commands after login.", func(s smap.Stats) int64 { return s.Commands }),
		counter("postern_smap_sent_bytes_total", "Message octets sent by FETCH CONTENTS.", func(s smap.Stats) int64 { return s.BytesSent }),
		counter("postern_smap_messages_added_total", "Messages stored by ADD.", func(s smap.Stats) int64 { return s.MessagesAdded }),
		counter("postern_smap_proxied_sessions_total", "SMAP logins relayed to the account's mailhost.", func(s smap.Stats) int64 { return s.ProxiedSessions }),
		counter("postern_smap_proxy_failures_total", "SMAP logins whose mailhost could not be reached or refused the login.", func(s smap.Stats) int64 { return s.ProxyFailures }),
		counter("postern_smap_connections_refused_total", "Connections to the SMAP listener turned away over imapmaxdaemons or imapmaxperip.", func(s smap.Stats) int64 { return s.ConnectionsRefused }),
		counter("postern_smap_logins_refused_total", "SMAP logins refused over imapmaxuserip.", func(s smap.Stats) int64 { return s.LoginsRefused }),
	})
}

func manageSieveCollector(srv *managesieve.Server) prometheus.Collector {
	counter := func(name, help string, v func(managesieve.Stats) int64) statMetric[managesieve.Stats] {
		return statMetric[managesieve.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, func(s managesieve.Stats) float64 { return float64(v(s)) }}
	}
	return statsTable(srv.Stats, []statMetric[managesieve.Stats]{
		counter("postern_managesieve_sessions_total", "ManageSieve connections accepted.", func(s managesieve.Stats) int64 { return s.Connections }),
		{prometheus.NewDesc("postern_managesieve_sessions_active", "ManageSieve sessions open now.", nil, nil), prometheus.GaugeValue, func(s managesieve.Stats) float64 { return float64(s.ActiveSessions) }},
		counter("postern_managesieve_logins_total", "Successful ManageSieve logins.", func(s managesieve.Stats) int64 { return s.Logins }),
		counter("postern_managesieve_auth_failures_total", "Failed ManageSieve logins.", func(s managesieve.Stats) int64 { return s.LoginFailures }),
		counter("postern_managesieve_scripts_stored_total", "Scripts stored by PUTSCRIPT.", func(s managesieve.Stats) int64 { return s.ScriptsStored }),
		counter("postern_managesieve_scripts_rejected_total", "Scripts PUTSCRIPT or CHECKSCRIPT refused as invalid.", func(s managesieve.Stats) int64 { return s.ScriptsRejected }),
		counter("postern_managesieve_scripts_deleted_total", "Scripts removed by DELETESCRIPT.", func(s managesieve.Stats) int64 { return s.ScriptsDeleted }),
		counter("postern_managesieve_connections_refused_total", "ManageSieve connections turned away over managesievemaxdaemons or managesievemaxperip.", func(s managesieve.Stats) int64 { return s.ConnectionsRefused }),
		counter("postern_managesieve_logins_refused_total", "ManageSieve logins refused over managesievemaxuserip.", func(s managesieve.Stats) int64 { return s.LoginsRefused }),
	})
}

func guardCollector(g *auth.Guard) prometheus.Collector {
	return statsTable(g.Stats, []statMetric[auth.GuardStats]{
		{prometheus.NewDesc("postern_auth_blocks_total", "Client networks blocked after too many failed logins (authlimit).", nil, nil), prometheus.CounterValue, func(s auth.GuardStats) float64 { return float64(s.Blocks) }},
		{prometheus.NewDesc("postern_auth_blocked_logins_total", "Logins refused because the client was blocked.", nil, nil), prometheus.CounterValue, func(s auth.GuardStats) float64 { return float64(s.Refused) }},
		{prometheus.NewDesc("postern_auth_guard_clients", "Client networks counted in memory (used while the state store cannot be reached).", nil, nil), prometheus.GaugeValue, func(s auth.GuardStats) float64 { return float64(s.Tracked) }},
	})
}

// authCacheCollector reports the authcache's hits and misses per module
// (those the cache wraps; a reload that changes the modules starts them
// again from zero).
type authCacheCollector struct{ svc *auth.Service }

var (
	authCacheHits   = prometheus.NewDesc("postern_auth_cache_hits_total", "Lookups and logins answered from the authcache.", []string{"module"}, nil)
	authCacheMisses = prometheus.NewDesc("postern_auth_cache_misses_total", "Lookups and logins the authcache passed to the module.", []string{"module"}, nil)
)

func (c authCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- authCacheHits
	ch <- authCacheMisses
}

func (c authCacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.svc.Modules() {
		if ac, ok := m.(*auth.Cache); ok {
			hits, misses := ac.Stats()
			ch <- prometheus.MustNewConstMetric(authCacheHits, prometheus.CounterValue, float64(hits), m.Name())
			ch <- prometheus.MustNewConstMetric(authCacheMisses, prometheus.CounterValue, float64(misses), m.Name())
		}
	}
}

func journalCollector(j *maildir.Journal) prometheus.Collector {
	counter := func(name, help string, v func(wal.Stats) int64) statMetric[wal.Stats] {
		return statMetric[wal.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, func(s wal.Stats) float64 { return float64(v(s)) }}
	}
	gauge := func(name, help string, v func(wal.Stats) float64) statMetric[wal.Stats] {
		return statMetric[wal.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, v}
	}
	counterF := func(name, help string, v func(wal.Stats) float64) statMetric[wal.Stats] {
		return statMetric[wal.Stats]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, v}
	}
	return statsTable(j.Stats, []statMetric[wal.Stats]{
		counter("postern_journal_records_total", "Deliveries made durable by the delivery journal.", func(s wal.Stats) int64 { return s.Records }),
		counter("postern_journal_flushes_total", "Journal writes+flushes (records ÷ flushes = deliveries per flush).", func(s wal.Stats) int64 { return s.Flushes }),
		counter("postern_journal_refused_total", "Deliveries the journal did not take (full, too big, failed); they were flushed one by one.", func(s wal.Stats) int64 { return s.Refused }),
		counter("postern_journal_checkpoints_total", "Journal checkpoints (syncfs of the Maildirs, space freed).", func(s wal.Stats) int64 { return s.Checkpoints }),
		counterF("postern_journal_flush_seconds_total", "Time spent writing and flushing journal records (÷ flushes = the disk's flush latency).", func(s wal.Stats) float64 { return s.FlushTime.Seconds() }),
		counterF("postern_journal_checkpoint_seconds_total", "Time spent in checkpoints (the sync of the Maildirs written to).", func(s wal.Stats) float64 { return s.CheckpointTime.Seconds() }),
		counter("postern_journal_replayed_total", "Records replayed at start after a crash.", func(s wal.Stats) int64 { return s.Replayed }),
		gauge("postern_journal_used_bytes", "Journal space held by records not yet checkpointed.", func(s wal.Stats) float64 { return float64(s.Used) }),
		gauge("postern_journal_size_bytes", "The journal file's size.", func(s wal.Stats) float64 { return float64(s.Size) }),
		gauge("postern_journal_failed", "1 when the journal failed and deliveries are flushed one by one until a restart.", func(s wal.Stats) float64 {
			if s.Failed {
				return 1
			}
			return 0
		}),
	})
}
