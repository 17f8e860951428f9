package admin

import (
	"log/slog"
	"path/filepath"

	"postern/auth/authconfig"
	"postern/filters/arc"
	"postern/filters/bayes"
	"postern/filters/behaviour"
	"postern/filters/bofh"
	"postern/filters/dmarc"
	"postern/filters/dnsbl"
	"postern/filters/greylist"
	"postern/filters/ratelimit"
	"postern/filters/reputation"
	"postern/filters/smtprules"
	"postern/filters/spf"
	"postern/gateway/outbound"
	"postern/policy/access"
	"postern/policy/aliases"
)

// setting is one entry of the configuration directory the admin knows.
// Only these names can be shown or edited: the name in a URL only selects
// an entry of this table, and the path is always the configuration
// directory joined with the table's own name.
type setting struct {
	Name  string
	Title string
	Help  string
	Group string
	// Secret settings (passwords, keys) are listed but never read,
	// shown or written by the admin.
	Secret bool
	// check reads the setting from a configuration directory with the
	// reader its package gives the server, so that it is checked even
	// when the server would not read it now (a check "filters" does not
	// list). nil: policy.Load (or Options.CheckConfig) reads it.
	check func(dir string) error
	// after runs once a change has landed (aliases: the compiled index).
	after func(h *Handler) error
}

const (
	groupDomains  = "Domains and addresses"
	groupSpam     = "Spam policy"
	groupDelivery = "Routes and delivery"
	groupLimits   = "Sizes and limits"
	groupService  = "Protocols and TLS"
	groupAuth     = "Authentication"
)

// settings are the settings serve and reload read (policy.Load, the
// checks of filters/, smtpaccess, routes, the authentication modules),
// in the order the settings page lists them. docs/config.md and each
// check's page say what the lines mean.
var settings = []setting{
	{Name: "aliases", Title: "Aliases", Group: groupDomains, Help: "Courier's aliases format: NAME: ADDRESS, ADDRESS... (docs/aliases.md). Checked and compiled as postern makealiases does.",
		check: func(dir string) error { _, err := aliases.Load(dir); return err }, after: compileAliases},
	{Name: "acceptmailfor", Title: "Accepted domains", Group: groupDomains, Help: "The domains whose mail this server takes, one per line (docs/config.md)."},
	{Name: "hosteddomains", Title: "Hosted domains", Group: groupDomains, Help: "Courier's hosteddomains: DOMAIN, or ALIAS<TAB>DOMAIN for a domain that shares another's accounts (docs/config.md)."},
	{Name: "locals", Title: "Local domains", Group: groupDomains, Help: "Domains whose addresses are system accounts: DOMAIN, .DOMAIN or !HOST per line (docs/config.md)."},
	{Name: "esmtpacceptmailfor", Title: "Relay domains", Group: groupDomains, Help: "Domains that are not ours whose mail is taken and relayed on: DOMAIN or .DOMAIN per line (docs/config.md)."},
	{Name: "relayrecipients", Title: "Relay recipients", Group: groupDomains, Help: "The valid addresses of the relay domains: ADDRESS or @DOMAIN per line (docs/config.md)."},
	{Name: "relayverify", Title: "Verify relay recipients", Group: groupDomains, Help: "yes asks the next hop about an unlisted relay address before answering RCPT; default no (docs/config.md)."},
	{Name: "me", Title: "Host name", Group: groupDomains, Help: "This host's name, for the banner, Received: and Message-IDs (docs/config.md)."},
	{Name: "defaultdomain", Title: "Default domain", Group: groupDomains, Help: "The domain sendmail appends to bare addresses (docs/config.md)."},
	{Name: "srsdomain", Title: "SRS domain", Group: groupDomains, Help: "The domain of rewritten senders of forwarded mail; one of ours (docs/config.md)."},
	{Name: "bcc", Title: "Archive copies", Group: groupDomains, Help: "Archive copies of mail: lines of the bcc setting (docs/bcc.md)."},
	{Name: "aliasuser", Title: "Alias delivery user", Group: groupDomains, Help: "The account that runs programs and writes files named in aliases; default nobody (docs/aliases.md)."},

	{Name: "filters", Title: "Checks", Group: groupSpam, Help: "The checks run on every session, in order: NAME [MODE] [weight=N] per line (docs/filters.md). Checked by the server's reload."},
	{Name: "spamscore", Title: "Spam score thresholds", Group: groupSpam, Help: "reject N and quarantine N: the total score at which mail is refused or filed as junk; default 10 and 5 (docs/filters.md). Checked by the server's reload."},
	{Name: smtprules.SettingName, Title: "SMTP rules", Group: groupSpam, Help: "The admin's rules in the maildrop language, run after every check (docs/smtprules.md).",
		check: func(dir string) error { _, err := smtprules.Load(dir); return err }},
	{Name: dnsbl.SettingName, Title: "DNS blocklists", Group: groupSpam, Help: "The DNS blocklists and allowlists asked about each client (docs/dnsbl.md).",
		check: func(dir string) error { _, err := dnsbl.Load(dir); return err }},
	{Name: greylist.SettingName, Title: "Greylisting", Group: groupSpam, Help: "Greylisting's delays, lifetimes and exemptions (docs/greylist.md).",
		check: func(dir string) error { _, _, err := greylist.LoadConfig(dir); return err }},
	{Name: ratelimit.SettingName, Title: "Rate limits", Group: groupSpam, Help: "Limits per client, sender and recipient over a window (docs/ratelimit.md).",
		check: func(dir string) error { _, _, err := ratelimit.LoadConfig(dir); return err }},
	{Name: bayes.SettingName, Title: "Bayes classifier", Group: groupSpam, Help: "minlearns, maxtokens and the spam and ham score bands (docs/bayes.md).",
		check: func(dir string) error { _, err := bayes.LoadConfig(dir); return err }},
	{Name: reputation.SettingName, Title: "Reputation", Group: groupSpam, Help: "The reputation check's half-life, prefixes, weights and thresholds (docs/reputation.md).",
		check: func(dir string) error {
			_, _, err := reputation.LoadConfig(dir, reputation.DefaultConfig())
			return err
		}},
	{Name: "spf", Title: "SPF", Group: groupSpam, Help: "What each SPF result does: RESULT ACTION per line (docs/spf.md).",
		check: func(dir string) error { _, err := spf.LoadActions(dir); return err }},
	{Name: dmarc.SettingName, Title: "DMARC", Group: groupSpam, Help: "The DMARC check's settings (docs/dmarc.md).",
		check: func(dir string) error { _, err := dmarc.LoadOptions(dir); return err }},
	{Name: arc.SettingName, Title: "ARC", Group: groupSpam, Help: "Trusted ARC sealers, scores, timeout, and whether forwards are sealed (docs/arc.md).",
		check: func(dir string) error { _, err := arc.LoadConfig(dir); return err }},
	{Name: behaviour.SettingName, Title: "Client behaviour", Group: groupSpam, Help: "The early-talker, HELO and reverse DNS checks (docs/behaviour.md).",
		check: func(dir string) error { _, err := behaviour.LoadOptions(dir); return err }},
	{Name: bofh.SettingName, Title: "BOFH", Group: groupSpam, Help: "Courier's bofh file: blocked senders, bad MX, spam traps, freemail (docs/bofh.md).",
		check: func(dir string) error { _, err := bofh.Load(dir); return err }},
	{Name: "milters", Title: "Milters", Group: groupSpam, Help: "Content scanners over the milter protocol: NAME ADDRESS [OPTION=VALUE...] (docs/milter.md). Checked by the server's reload."},
	{Name: "policyservices", Title: "Policy services", Group: groupSpam, Help: "Postfix policy servers: NAME ADDRESS [OPTION=VALUE...] (docs/filters.md). Checked by the server's reload."},
	{Name: access.SettingName, Title: "SMTP access", Group: groupSpam, Help: "Courier's smtpaccess: ADDRESS<TAB>allow[,VAR=value...] or deny (docs/smtpaccess.md).",
		check: func(dir string) error { _, err := access.Load(dir); return err }},
	{Name: "trustedproxies", Title: "Trusted proxies", Group: groupSpam, Help: "Networks whose PROXY protocol headers are believed (docs/proxy.md)."},
	{Name: "xclient", Title: "XCLIENT clients", Group: groupSpam, Help: "Networks allowed to use XCLIENT (docs/proxy.md)."},

	{Name: outbound.RoutesSetting, Title: "Routes", Group: groupDelivery, Help: "Where mail for a domain goes: DOMAIN HOST[:PORT][/OPTIONS] (docs/routes.md). The logins are in smarthostauth, not shown here.",
		check: func(dir string) error { _, err := outbound.LoadRoutes(dir); return err }},
	{Name: outbound.SenderRoutesSetting, Title: "Sender routes", Group: groupDelivery, Help: "Relays chosen by the sender's address or domain (docs/routes.md).",
		check: func(dir string) error { _, err := outbound.LoadSenderRoutes(dir); return err }},
	{Name: "queuetime", Title: "Queue lifetime", Group: groupDelivery, Help: "How long undeliverable mail is retried before it bounces; default 7d (docs/queue.md)."},
	{Name: "warntime", Title: "Delay warning", Group: groupDelivery, Help: "When a delay notice goes to the sender; default 4h (docs/queue.md)."},
	{Name: "retryalpha", Title: "Retry: first delay", Group: groupDelivery, Help: "Courier's retryalpha; default 5m (docs/queue.md)."},
	{Name: "retrybeta", Title: "Retry: attempts per round", Group: groupDelivery, Help: "Courier's retrybeta; default 3 (docs/queue.md)."},
	{Name: "retrygamma", Title: "Retry: round delay", Group: groupDelivery, Help: "Courier's retrygamma; default 15m (docs/queue.md)."},
	{Name: "retrymaxdelta", Title: "Retry: doublings", Group: groupDelivery, Help: "Courier's retrymaxdelta; default 3 (docs/queue.md)."},
	{Name: "softbounce", Title: "Soft bounce", Group: groupDelivery, Help: "yes turns permanent refusals into temporary ones while testing; default no (docs/config.md)."},
	{Name: "remoteport", Title: "Remote SMTP port", Group: groupDelivery, Help: "The port outbound mail is sent to; default 25 (docs/outbound.md)."},
	{Name: "sourceaddress", Title: "Source addresses", Group: groupDelivery, Help: "The local addresses outbound connections come from (docs/outbound.md)."},
	{Name: "resolvers", Title: "DNS resolvers", Group: groupDelivery, Help: "DNS servers to ask instead of the system's: ADDRESS[:PORT] per line (docs/dns.md)."},
	{Name: "dane", Title: "DANE", Group: groupDelivery, Help: "yes (default) or no: use TLSA records for outbound TLS (docs/outbound.md)."},
	{Name: "mtasts", Title: "MTA-STS", Group: groupDelivery, Help: "yes (default) or no: honour MTA-STS policies (docs/outbound.md)."},
	{Name: "mtastspolicy", Title: "MTA-STS policies served", Group: groupDelivery, Help: "The policy served at mta-sts.DOMAIN for each of our domains: DOMAIN mode=enforce|testing|none max_age=SECONDS [mx=PATTERN...] (docs/autoconfig.md). Checked by the server's reload."},

	{Name: "sizelimit", Title: "Largest message", Group: groupLimits, Help: "Largest message accepted, in bytes with an optional K, M, G suffix; default 50M (docs/config.md)."},
	{Name: "maxrcpts", Title: "Recipients per message", Group: groupLimits, Help: "Most recipients a message may have; default 100 (docs/config.md)."},
	{Name: "hoplimit", Title: "Hop limit", Group: groupLimits, Help: "Received: headers after which a message is taken for a loop (docs/config.md)."},
	{Name: "authlimit", Title: "Failed-login limit", Group: groupLimits, Help: "failures N/WINDOW [block DURATION], exempt NETWORK..., or off (docs/config.md)."},
	{Name: "maxdels", Title: "Parallel deliveries", Group: groupLimits, Help: "Outbound deliveries at once; default 20 (docs/queue.md)."},
	{Name: "maxhost", Title: "Deliveries per host", Group: groupLimits, Help: "Outbound deliveries at once to one host; default 4 (docs/queue.md)."},
	{Name: "smtpgreetdelay", Title: "Greeting delay", Group: groupLimits, Help: "How long the banner waits, to catch early talkers; default 0 (docs/config.md)."},

	{Name: "esmtpgreeting", Title: "SMTP banner", Group: groupService, Help: "The text of the SMTP greeting (docs/config.md)."},
	{Name: "esmtphelo", Title: "HELO name", Group: groupService, Help: "The name sent in EHLO to other servers; default me (docs/config.md)."},
	{Name: "insecureauth", Title: "Plain-text AUTH", Group: groupService, Help: "yes allows AUTH without TLS; default no (docs/config.md)."},
	{Name: "senderlogin", Title: "Sender must be the login", Group: groupService, Help: "any (default) or own (docs/config.md)."},
	{Name: "tlscert", Title: "TLS certificates", Group: groupService, Help: "Paths of PEM files (certificate and key), one per line; the files themselves are never shown here (docs/config.md)."},
	{Name: "tlsminversion", Title: "Oldest TLS version", Group: groupService, Help: "1.0, 1.1, 1.2 (default) or 1.3; restart to change (docs/config.md)."},
	{Name: "tlsclientcerts", Title: "TLS client certificates", Group: groupService, Help: "no (default) or ask [CAFILE] (docs/config.md)."},
	{Name: "acmehosts", Title: "ACME host names", Group: groupService, Help: "Host names whose certificates the server gets from an ACME CA (docs/acme.md)."},
	{Name: "acmeemail", Title: "ACME contact", Group: groupService, Help: "The ACME account's contact address (docs/acme.md)."},
	{Name: "loglevel", Title: "Log level", Group: groupService, Help: "debug, info, warn or error (docs/config.md)."},
	{Name: "webmailidle", Title: "Webmail idle time", Group: groupService, Help: "Webmail sessions end after this long unused; default 30m (docs/webmail.md)."},
	{Name: "webmailmaxsession", Title: "Webmail session length", Group: groupService, Help: "Webmail sessions end after this long; default 12h (docs/webmail.md)."},
	{Name: "sievemaxscripts", Title: "Sieve scripts per account", Group: groupLimits, Help: "How many Sieve scripts ManageSieve lets an account keep; default 0, no limit (docs/managesieve.md)."},
	{Name: "sievemaxscriptsize", Title: "Sieve script size", Group: groupLimits, Help: "The largest Sieve script ManageSieve takes; default 1M (docs/managesieve.md)."},
	{Name: "sievequota", Title: "Sieve storage per account", Group: groupLimits, Help: "All of an account's Sieve scripts together; default 0, no limit (docs/managesieve.md)."},
	{Name: "imapmaxdaemons", Title: "IMAP connections", Group: groupLimits, Help: "IMAP sessions at once (SMAP too), as Courier's MAXDAEMONS; default 1000, 0 for no limit (docs/imap.md)."},
	{Name: "imapmaxperip", Title: "IMAP connections per address", Group: groupLimits, Help: "IMAP sessions at once from one client address (SMAP too), as Courier's MAXPERIP; default 100, 0 for no limit (docs/imap.md)."},
	{Name: "imapmaxuserip", Title: "IMAP logins per user and address", Group: groupLimits, Help: "IMAP sessions of one user from one address (SMAP too), as Dovecot's mail_max_userip_connections; default 20, 0 for no limit (docs/imap.md)."},
	{Name: "pop3maxdaemons", Title: "POP3 connections", Group: groupLimits, Help: "POP3 sessions at once, as Courier's MAXDAEMONS; default 1000, 0 for no limit (docs/pop3.md)."},
	{Name: "pop3maxperip", Title: "POP3 connections per address", Group: groupLimits, Help: "POP3 sessions at once from one client address, as Courier's MAXPERIP; default 100, 0 for no limit (docs/pop3.md)."},
	{Name: "pop3maxuserip", Title: "POP3 logins per user and address", Group: groupLimits, Help: "POP3 sessions of one user from one address, as Dovecot's mail_max_userip_connections; default 10, 0 for no limit (docs/pop3.md)."},
	{Name: "managesievemaxdaemons", Title: "ManageSieve connections", Group: groupLimits, Help: "ManageSieve sessions at once, as Courier's MAXDAEMONS; default 200, 0 for no limit (docs/managesieve.md)."},
	{Name: "managesievemaxperip", Title: "ManageSieve connections per address", Group: groupLimits, Help: "ManageSieve sessions at once from one client address, as Courier's MAXPERIP; default 20, 0 for no limit (docs/managesieve.md)."},
	{Name: "managesievemaxuserip", Title: "ManageSieve logins per user and address", Group: groupLimits, Help: "ManageSieve sessions of one user from one address, as Dovecot's mail_max_userip_connections; default 5, 0 for no limit (docs/managesieve.md)."},
	{Name: "imapemptytrash", Title: "Emptying Trash", Group: groupService, Help: "Courier's IMAP_EMPTYTRASH: FOLDER:DAYS,... purged at login; default Trash:7, none for never (docs/imap.md)."},

	{Name: authconfig.ModuleListSetting, Title: "Authentication modules", Group: groupAuth, Help: "The modules asked in order: userdb, pam, mysql, pgsql, ldap (docs/authdaemon.md).",
		check: func(dir string) error { _, err := authconfig.Read(dir); return err }},
	{Name: authconfig.CacheSetting, Title: "Authentication cache", Group: groupAuth, Help: "How long answers of the database modules are kept (docs/authdaemon.md)."},

	// Secrets: listed so that an admin knows where they are, never served.
	// A secret's check still runs with the others (problems are named,
	// never quoted).
	{Name: outbound.SmarthostAuthSetting, Title: "Relay logins", Group: groupAuth, Secret: true, Help: "Passwords for the relays of routes (docs/routes.md).",
		check: func(dir string) error { _, err := outbound.LoadAuth(dir, slog.New(slog.DiscardHandler)); return err }},
	{Name: "srssecrets", Title: "SRS secrets", Group: groupAuth, Secret: true, Help: "The keys that sign rewritten senders (docs/config.md)."},
	{Name: SettingName, Title: "Web admin logins", Group: groupAuth, Secret: true, Help: "Password hashes of the web admins: postern webadmin passwd (docs/webadmin.md)."},
	{Name: "userdb", Title: "Accounts", Group: groupAuth, Secret: true, Help: "The account database's source: edit accounts on the Accounts page (docs/userdb.md)."},
	{Name: "authmysqlrc", Title: "MySQL module", Group: groupAuth, Secret: true, Help: "Holds the database password (docs/authsql.md)."},
	{Name: "authpgsqlrc", Title: "PostgreSQL module", Group: groupAuth, Secret: true, Help: "Holds the database password (docs/authsql.md)."},
	{Name: "authldaprc", Title: "LDAP module", Group: groupAuth, Secret: true, Help: "Holds the bind password (docs/authldap.md)."},
	{Name: "dkim", Title: "DKIM keys", Group: groupAuth, Secret: true, Help: "Private signing keys: postern dkim (docs/dkim.md)."},
	{Name: "acmeeab", Title: "ACME account binding", Group: groupAuth, Secret: true, Help: "The CA's external account key (docs/acme.md)."},
	{Name: "acmednsupdate", Title: "ACME DNS updates", Group: groupAuth, Secret: true, Help: "Holds the TSIG key for dns-01 (docs/acme.md)."},
	{Name: "statestore", Title: "State store", Group: groupAuth, Secret: true, Help: "May hold the Redis password (docs/state.md)."},
}

func compileAliases(h *Handler) error {
	a, err := aliases.Load(h.opt.ConfigDir)
	if err != nil {
		return err
	}
	source := filepath.Join(h.opt.ConfigDir, aliases.SettingName)
	return a.WriteDB(filepath.Join(h.opt.ConfigDir, aliases.DefaultDBName), "", source)
}
