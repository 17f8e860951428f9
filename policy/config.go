package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postern/policy/srs"
)

// DefaultDir is where the configuration lives unless --config or
// POSTERN_CONFIG says otherwise.
const DefaultDir = "/etc/postern"

// Listener names, one per service. The "listen" setting binds each to one
// or more addresses.
const (
	ListenSMTP        = "smtp"        // MX: mail from the world for our domains
	ListenSubmission  = "submission"  // 587: STARTTLS, then AUTH
	ListenSubmissions = "submissions" // 465: implicit TLS
	ListenIMAP        = "imap"
	ListenIMAPS       = "imaps"
	ListenPOP3        = "pop3"
	ListenPOP3S       = "pop3s"
	ListenSMAP        = "smap"
	// ListenManageSieve serves ManageSieve (RFC 5804, port 4190): users
	// upload and activate their Sieve scripts.
	ListenManageSieve = "managesieve"
	ListenLMTP        = "lmtp" // LMTP from another MTA: host:port or a socket path
	ListenWeb         = "web"
	ListenWebs        = "webs"    // the same over TLS (HTTPS), with the server's certificates
	ListenMetrics     = "metrics" // Prometheus /metrics
	// ListenACME answers the http-01 challenges of the "acmehosts"
	// certificates (port 80 in production); anything else gets 404.
	ListenACME = "acme"
)

// KnownListeners lists every listener name in the order services start.
var KnownListeners = []string{
	ListenSMTP, ListenSubmission, ListenSubmissions, ListenIMAP, ListenIMAPS,
	ListenPOP3, ListenPOP3S, ListenSMAP, ListenManageSieve, ListenLMTP, ListenWeb, ListenWebs, ListenMetrics, ListenACME,
}

// implicitTLS names the listeners that speak TLS from the first byte.
var implicitTLS = map[string]bool{ListenSubmissions: true, ListenIMAPS: true, ListenPOP3S: true, ListenWebs: true}

// Listener binds a service to an address.
type Listener struct {
	Name    string // one of KnownListeners
	Address string // host:port, or for lmtp also the absolute path of a Unix socket
	Proxy   bool   // expects a PROXY protocol header (from trustedproxies) on every connection
	Origin  Line   // where it was configured, for messages
}

// ImplicitTLS reports whether the listener speaks TLS from the first byte.
func (l Listener) ImplicitTLS() bool { return implicitTLS[l.Name] }

// Network is "unix" for a socket path, else "tcp".
func (l Listener) Network() string {
	if strings.HasPrefix(l.Address, "/") {
		return "unix"
	}
	return "tcp"
}

// Config is the typed configuration built from a configuration directory.
// It is immutable once built: a reload builds a new one.
type Config struct {
	Dir string // the configuration directory, absolute

	Me string // this host's name: banners, Received, Message-IDs ("me")
	// DefaultDomain is appended to addresses without a domain given to
	// sendmail ("defaultdomain", Courier's name; Postfix's myorigin).
	// Empty: the gateway picks one (gateway.DefaultDomain).
	DefaultDomain string
	AcceptMailFor map[string]bool // domains whose mail we take, lower-case ("acceptmailfor", "hosteddomains")
	// DomainAliases maps an alias domain to the domain whose mailboxes it
	// shares ("hosteddomains" lines "ALIAS<TAB>DOMAIN"): user@ALIAS is
	// delivered as user@DOMAIN.
	DomainAliases map[string]string
	// Locals are Courier's local domains ("locals"): the domain is taken
	// off an address before its account is looked up, so user@LOCAL is the
	// account "user" (a system or PAM account, a userdb name without a
	// domain). Keys: "domain", ".domain" for its subdomains, "!host" for a
	// host a ".domain" entry would take that is not local. Without the
	// file, "me" is the one local domain, as in Courier.
	Locals map[string]bool
	// HELOName is the name Postern gives in EHLO to other servers
	// ("esmtphelo", Courier's name; Postfix's smtp_helo_name); "" is Me.
	// For a host whose outgoing address's reverse DNS names another host
	// than me.
	HELOName string
	// SoftBounce keeps mail that would be returned ("softbounce", Postfix's
	// soft_bounce): 5xx SMTP replies are sent as 4xx, and the queue
	// retries permanent failures and expired messages instead of
	// bouncing them. For migrations and tests; off by default.
	SoftBounce bool
	// RelayDomains are the domains of "esmtpacceptmailfor" (Courier's
	// name) that are not ours: their mail is taken from anyone and relayed
	// on (routes, else MX), as for a backup MX or a gateway in front of
	// an inner mail server. Keys ".example.org" stand for subdomains.
	RelayDomains map[string]bool
	// RelayRecipients are the valid addresses of relay domains
	// ("relayrecipients"; Postfix's relay_recipient_maps), lower case; an
	// entry "@domain" takes every address of it. A relay domain with no
	// entry takes every address.
	RelayRecipients map[string]bool
	relayListed     map[string]bool // domains with an entry in RelayRecipients
	// RelayVerify asks the next hop whether it takes an address of a relay
	// domain that relayrecipients does not list, before answering RCPT
	// ("relayverify"; Postfix's reject_unverified_recipient).
	RelayVerify bool
	Listeners   []Listener // ("listen")
	DataDir     string     // queue, state and by default the mailboxes ("datadir")
	// MailUser, when set, is who the server runs as once its listeners
	// are bound ("mailuser"); nil: it stays who started it.
	MailUser     *MailUser
	SizeLimit    int64 // largest message accepted, in bytes ("sizelimit")
	InsecureAuth bool  // allow passwords on unencrypted connections ("insecureauth")
	// SenderLogin says which envelope senders an authenticated client may
	// use ("senderlogin"): "any" (Courier's and Postfix's default, and the
	// default here when the setting is absent) or "own" (addresses that
	// reach the login's own account, and the null sender).
	SenderLogin   string
	IMAPCourierNS bool       // IMAP folders under "INBOX." as Courier shows them ("imapnamespace")
	LogLevel      slog.Level // ("loglevel")
	DebugPprof    bool       // serve /debug/pprof/ on the web listeners ("debugpprof")
	// SieveMaxScripts, SieveMaxScriptSize and SieveQuota bound each
	// account's Sieve scripts on the managesieve listener ("sievemaxscripts",
	// "sievemaxscriptsize", "sievequota"; 0 means no limit, the script
	// size defaults to 1 MiB).
	SieveMaxScripts    int64
	SieveMaxScriptSize int64
	SieveQuota         int64
	// IMAPLimits, POP3Limits and ManageSieveLimits bound the sessions of
	// those servers ("imapmaxdaemons", "imapmaxperip", "imapmaxuserip",
	// the same with "pop3" and "managesieve"); SMAP follows IMAP's, as in
	// Courier, whose imapd serves SMAP.
	IMAPLimits, POP3Limits, ManageSieveLimits ConnLimits
	// WebmailIdle ends a webmail session after this long without a
	// request ("webmailidle", 30m); WebmailMaxSession this long after its
	// login ("webmailmaxsession", 12h).
	WebmailIdle       time.Duration
	WebmailMaxSession time.Duration
	// WebmailFilters offers the webmail's mail filter and autoreply pages
	// ("webmailfilters", yes by default).
	WebmailFilters bool
	// EmptyTrash is "imapemptytrash" (Courier's IMAP_EMPTYTRASH): at an
	// IMAP or webmail login, messages in these folders whose status last
	// changed (ctime: when they were moved there) longer ago than the
	// rule's age are deleted. Trash:7 when absent, as Courier ships.
	EmptyTrash []TrashRule
	// IMAPSMAP offers Courier's SMAP inside IMAP connections: SMAP1 in
	// CAPABILITY and the switch on "\SMAP1"-tagged commands
	// ("smapcapability": SMAP1, as Courier's SMAP_CAPABILITY, or yes; off
	// when absent or no, as in Courier).
	IMAPSMAP bool
	// Mailhost proxying (Courier's IMAP_PROXY, POP3_PROXY and
	// PROXY_HOSTNAME; docs/proxy.md): with IMAPProxy ("imapproxy") or
	// POP3Proxy ("pop3proxy"), an account whose "mailhost" field names
	// another host than ProxyHostname ("proxyhostname", default Me) is
	// relayed there after its login, to port IMAPProxyPort
	// ("imapproxyport", 143) or POP3ProxyPort ("pop3proxyport", 110)
	// unless the mailhost names one. ProxyStartTLS ("proxytls starttls")
	// protects the connection to it, the certificate checked unless
	// ProxyTLSVerify is off ("proxytlsverify no") against ProxyTLSCAs
	// ("proxytlsca FILE"; nil: the system's authorities).
	IMAPProxy, POP3Proxy         bool
	ProxyHostname                string
	IMAPProxyPort, POP3ProxyPort int
	ProxyStartTLS                bool
	ProxyTLSVerify               bool
	ProxyTLSCAs                  *x509.CertPool
	// DeliveryJournal is the size of the server's delivery journal
	// (DATADIR/state/delivery.journal), 0 for none ("deliveryjournal").
	DeliveryJournal int64
	// JournalCheckpoint is how often the journal's deliveries are made
	// durable in their Maildirs ("journalcheckpoint").
	JournalCheckpoint time.Duration

	// TLSCertFile is the PEM file holding the certificate chain and private
	// key ("tlscert"), as Courier's esmtpd.pem/imapd.pem do. TLSCertificate
	// is it, loaded and checked.
	TLSCertFile    string
	TLSCertificate *tls.Certificate
	// TLSCertificates are every certificate of "tlscert" (one file per
	// line), the first being TLSCertificate: each client gets the one
	// whose names match the name it asks for (SNI), else the first.
	TLSCertificates []*tls.Certificate
	// ACME has the listeners' certificates issued and renewed by an ACME
	// CA ("acmehosts" and the acme* settings); nil when acmehosts is
	// absent.
	ACME *ACME
	// AuthFailures failed logins from one client network within AuthWindow
	// block it for AuthBlock; AuthExempt networks are never blocked, and
	// when no exempt line is written, loopback is ("authlimit"; 0
	// failures: off).
	AuthFailures  int
	AuthWindow    time.Duration
	AuthBlock     time.Duration
	AuthExempt    []netip.Prefix
	AuthExemptSet bool
	// TLSMinVersion is the oldest TLS version the listeners speak
	// ("tlsminversion": 1.0 to 1.3; default 1.2).
	TLSMinVersion uint16
	// TLSAskClientCert: the SMTP listeners ask TLS clients for a
	// certificate ("tlsclientcerts ask [CAFILE]", Postfix's
	// smtpd_tls_ask_ccert), which the policy services are told about; a
	// client without one, or with one that does not verify, is served
	// all the same. TLSClientCAs, from CAFILE, verify them; nil: none
	// counts as verified.
	TLSAskClientCert bool
	TLSClientCAs     *x509.CertPool

	UserdbSource string // the userdb source: file or directory ("userdb")
	UserdbDB     string // its compiled index ("userdb.db")

	MaxRecipients  int            // recipients per message ("maxrcpts")
	HopLimit       int            // Received header fields a message may carry in ("hoplimit")
	AliasUser      string         // the system user aliases' programs and files run as ("aliasuser")
	GreetDelay     time.Duration  // pause before the SMTP banner, catching early talkers ("smtpgreetdelay")
	Greeting       string         // the SMTP banner's text after "220 " ("esmtpgreeting"); "" = "ME ESMTP Postern"
	Resolvers      []string       // DNS servers host:port; empty = /etc/resolv.conf ("resolvers")
	TrustedProxies []netip.Prefix // may send PROXY headers ("trustedproxies")
	XCLIENTFrom    []netip.Prefix // may send XCLIENT ("xclient")
	RemotePort     int            // port of remote SMTP servers found by MX ("remoteport", 25)
	// SourceAddrs are the local addresses outbound connections come from,
	// one IPv4 and one IPv6 at most ("sourceaddress"; Postfix's
	// smtp_bind_address); none: the kernel's choice.
	SourceAddrs []netip.Addr
	// DANE authenticates MX hosts by their DNSSEC-signed TLSA records
	// ("dane", default yes; needs a validating resolver in "resolvers").
	DANE bool
	// MTASTS applies destination domains' MTA-STS policies ("mtasts",
	// default yes).
	MTASTS bool
	// TLSRPT sends SMTP TLS reports (RFC 8460) about outbound deliveries
	// to the domains that ask for them ("tlsrpt", default no); TLSRPTFrom
	// is their sender ("tlsrptfrom"; "" = postmaster of our domain).
	TLSRPT     bool
	TLSRPTFrom string
	// DMARCReports keeps what the dmarc check saw and sends DMARC
	// aggregate reports (RFC 7489 section 7.2) to the domains that ask
	// ("dmarcreports", default no: reports tell third parties who mails
	// us, which an admin should choose, as with OpenDMARC). DMARCReportFrom
	// is their sender and the report's email ("dmarcreportfrom"; "" =
	// postmaster of our domain); DMARCReportOrg the org_name
	// ("dmarcreportorg"; "" = our domain); DMARCReportInterval the period,
	// whole hours dividing a day ("dmarcreportinterval", 24h).
	DMARCReports        bool
	DMARCReportFrom     string
	DMARCReportOrg      string
	DMARCReportInterval time.Duration
	// DMARCFailureReports sends DMARC failure reports (RFC 7489 section
	// 7.3, RFC 6591) to the ruf= addresses of the domains whose mail
	// failed DMARC ("dmarcfailurereports", default no: a failure report
	// carries a message's header, which an admin should choose to send).
	// They come from DMARCReportFrom. DMARCFailurePerDomain and
	// DMARCFailureGlobal cap them per policy domain and in all, per hour
	// ("dmarcfailureperdomain", 10; "dmarcfailureglobal", 200).
	DMARCFailureReports   bool
	DMARCFailurePerDomain int
	DMARCFailureGlobal    int

	// The queue, with Courier's setting names and defaults.
	QueueTime     time.Duration // give up and bounce after this ("queuetime", 7d)
	WarnTime      time.Duration // send one delay notice after this ("warntime", 4h)
	RetryAlpha    time.Duration // gap between the quick retries ("retryalpha", 5m)
	RetryBeta     int           // how many quick retries in a row ("retrybeta", 3)
	RetryGamma    time.Duration // the first long gap, doubled each round ("retrygamma", 15m)
	RetryMaxDelta int           // how many times the long gap doubles ("retrymaxdelta", 3)
	MaxDels       int           // deliveries at once ("maxdels", Courier's MAXDELS; 20)
	MaxHost       int           // remote deliveries at once per destination domain ("maxhost", Courier's MAXHOST; 4)

	// SRS rewrites the envelope sender of forwarded mail ("srssecrets",
	// "srsdomain"); nil when srssecrets is absent.
	SRS *srs.Rewriter

	// AuthdaemonSocket is where the authentication service answers Courier
	// authdaemond's protocol ("authdaemonsocket", a path, relative to the
	// configuration directory). Empty: no such socket.
	AuthdaemonSocket string

	// BCC names archive addresses that get a copy of accepted mail
	// ("bcc": always, sender and recipient lines, see BCC); nil when the
	// setting is absent or empty, which costs the SMTP path one nil check.
	BCC *BCC
}

// RetrySchedule spells out Courier's retry schedule as gaps between
// attempts: RetryBeta attempts RetryAlpha apart, then a gap of RetryGamma;
// again RetryBeta quick attempts, then 2*RetryGamma; and so on up to
// RetryGamma*2^RetryMaxDelta. The queue repeats the last gap after that.
func (c *Config) RetrySchedule() []time.Duration {
	var out []time.Duration
	for d := 0; d <= c.RetryMaxDelta; d++ {
		for i := 0; i < c.RetryBeta; i++ {
			out = append(out, c.RetryAlpha)
		}
		out = append(out, c.RetryGamma<<d)
	}
	return out
}

// Defaults for settings that are not present.
const (
	DefaultSizeLimit = 50 * 1024 * 1024
	DefaultDataDir   = "/var/lib/postern"
	// DefaultDeliveryJournal: deliveries of up to a quarter of it (8 MiB)
	// go through the journal.
	DefaultDeliveryJournal = 32 << 20
	// DefaultHopLimit: RFC 5321 6.3 asks for a threshold of at least 100
	// Received fields before a message is taken for a loop.
	DefaultHopLimit = 100
)

// CanonicalDomain returns the domain whose mailboxes domain (lower case)
// stands for: the target of a domain alias, else domain itself.
func (c *Config) CanonicalDomain(domain string) string {
	if t, ok := c.DomainAliases[domain]; ok {
		return t
	}
	return domain
}

// RelaysFor reports whether mail for domain (lower case) is taken from
// any client and relayed on: an "esmtpacceptmailfor" domain, or a
// subdomain of a ".domain" entry, that is not ours.
func (c *Config) RelaysFor(domain string) bool {
	if len(c.RelayDomains) == 0 || c.HasDomain(domain) {
		return false
	}
	if c.RelayDomains[domain] {
		return true
	}
	for d := domain; ; {
		_, parent, ok := strings.Cut(d, ".")
		if !ok {
			return false
		}
		if c.RelayDomains["."+parent] {
			return true
		}
		d = parent
	}
}

// RelayRecipientsListed reports whether relayrecipients names addresses of
// domain (lower case), which then decide alone.
func (c *Config) RelayRecipientsListed(domain string) bool { return c.relayListed[domain] }

// RelayRecipientOK reports whether local@domain (domain in lower case, a
// relay domain) may be relayed: any address when relayrecipients names
// none of the domain, else only the listed ones (or all, with "@domain").
func (c *Config) RelayRecipientOK(local, domain string) bool {
	if !c.relayListed[domain] {
		return true
	}
	return c.RelayRecipients["@"+domain] || c.RelayRecipients[strings.ToLower(local)+"@"+domain]
}

// HasDomain reports whether mail for domain is accepted here: a domain of
// acceptmailfor or hosteddomains, or a local domain (locals).
func (c *Config) HasDomain(domain string) bool {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	return c.AcceptMailFor[d] || c.IsLocal(d)
}

// IsLocal reports whether domain is a local domain (locals): listed, or
// under a ".domain" entry and not excluded by a "!host" one.
func (c *Config) IsLocal(domain string) bool {
	if len(c.Locals) == 0 {
		return false
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if c.Locals[d] {
		return true
	}
	if c.Locals["!"+d] {
		return false
	}
	for rest := d; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			return false
		}
		if c.Locals["."+parent] {
			return true
		}
		rest = parent
	}
}

// ListenersNamed returns the listeners configured for service name.
func (c *Config) ListenersNamed(name string) []Listener {
	var out []Listener
	for _, l := range c.Listeners {
		if l.Name == name {
			out = append(out, l)
		}
	}
	return out
}

// TLSConfig returns a server TLS configuration for the loaded
// certificates, or nil when none is configured.
func (c *Config) TLSConfig() *tls.Config {
	if c.TLSCertificate == nil {
		return nil
	}
	return &tls.Config{GetCertificate: c.Certificate, MinVersion: c.TLSMinVersion}
}

// Certificate picks the certificate for a TLS client: the first whose
// names cover the name it asked for (SNI) and that it can use, else the
// first one, as clients that send no SNI (or an address) expect.
func (c *Config) Certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(c.TLSCertificates) == 0 {
		return nil, errors.New("no certificate configured (tlscert), and no ACME certificate yet (acmehosts)")
	}
	if cert := c.MatchingCertificate(hello); cert != nil {
		return cert, nil
	}
	return c.TLSCertificates[0], nil
}

// MatchingCertificate returns the first tlscert certificate whose names
// cover the name the client asked for (SNI) and that it can use; nil when
// none does or it asked for none.
func (c *Config) MatchingCertificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	if hello != nil && hello.ServerName != "" {
		for _, cert := range c.TLSCertificates {
			if hello.SupportsCertificate(cert) == nil {
				return cert
			}
		}
	}
	return nil
}

// Load reads and checks the configuration in dir. Every problem found is
// reported (joined), each with its file and line, so an admin fixes them in
// one pass.
func Load(dir string) (*Config, error) { return LoadWith(dir, nil) }

// LoadWith is Load with some settings read from other files: the lines of
// setting NAME come from the file replace[NAME] (errors name that file),
// as if it were the setting. The web admin checks an edited setting this
// way, against the rest of the configuration, before it replaces the
// setting's file.
func LoadWith(dir string, replace map[string]string) (*Config, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("policy: config dir %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, &Error{File: abs, Reason: err.Error()}
	}
	if !st.IsDir() {
		return nil, &Error{File: abs, Reason: "not a directory"}
	}
	l := loader{dir: abs, replace: replace}
	c := &Config{
		Dir:          abs,
		UserdbSource: filepath.Join(abs, "userdb"),
		UserdbDB:     filepath.Join(abs, "userdb.db"),
	}
	c.Me = l.single("me", "")
	if c.Me == "" {
		c.Me, _ = os.Hostname()
	}
	c.DefaultDomain = strings.ToLower(strings.TrimSuffix(l.single("defaultdomain", ""), "."))
	c.AcceptMailFor = l.domains("acceptmailfor")
	c.DomainAliases = l.hostedDomains("hosteddomains", c.AcceptMailFor)
	c.Locals = l.locals(c.Me)
	c.SoftBounce = l.boolean("softbounce", false)
	if h := strings.ToLower(strings.TrimSuffix(l.single("esmtphelo", ""), ".")); h != "" {
		if err := checkDomain(h); err != nil {
			l.fail(l.lines("esmtphelo")[0].Errorf("esmtphelo: %v", err))
		} else {
			c.HELOName = h
		}
	}
	c.RelayDomains = l.relayDomains("esmtpacceptmailfor")
	c.RelayRecipients, c.relayListed = l.relayRecipients("relayrecipients")
	c.RelayVerify = l.boolean("relayverify", false)
	c.Listeners = l.listeners("listen")
	c.DataDir = l.path("datadir", DefaultDataDir)
	c.MailUser = l.mailUser()
	c.AuthdaemonSocket = l.path("authdaemonsocket", "")
	if lines := l.lines("authdaemonsocket"); len(lines) > 0 && len(c.AuthdaemonSocket) > 100 {
		// sockaddr_un holds 108 bytes, the terminating NUL included.
		l.fail(lines[0].Errorf("authdaemonsocket: a socket path may be at most 100 bytes long"))
	}
	c.SizeLimit = l.size("sizelimit", DefaultSizeLimit)
	c.InsecureAuth = l.boolean("insecureauth", false)
	c.SenderLogin = l.choice("senderlogin", "any", "any", "own")
	c.IMAPCourierNS = l.choice("imapnamespace", "default", "default", "courier") == "courier"
	c.IMAPSMAP = l.choice("smapcapability", "no", "smap1", "yes", "no") != "no"
	l.mailhostProxy(c)
	c.LogLevel = l.logLevel("loglevel")
	c.DebugPprof = l.boolean("debugpprof", false)
	c.SieveMaxScripts = l.number("sievemaxscripts", 0, 0, 1<<20)
	c.SieveMaxScriptSize = l.size("sievemaxscriptsize", 1<<20)
	c.SieveQuota = l.size("sievequota", 0)
	c.IMAPLimits = l.connLimits("imap", ConnLimits{MaxDaemons: 1000, MaxPerIP: 100, MaxUserIP: 20})
	c.POP3Limits = l.connLimits("pop3", ConnLimits{MaxDaemons: 1000, MaxPerIP: 100, MaxUserIP: 10})
	c.ManageSieveLimits = l.connLimits("managesieve", ConnLimits{MaxDaemons: 200, MaxPerIP: 20, MaxUserIP: 5})
	c.WebmailIdle = l.duration("webmailidle", 30*time.Minute)
	c.WebmailMaxSession = l.duration("webmailmaxsession", 12*time.Hour)
	c.WebmailFilters = l.boolean("webmailfilters", true)
	c.EmptyTrash = l.emptyTrash("imapemptytrash")
	for _, s := range []struct {
		name string
		d    time.Duration
	}{{"webmailidle", c.WebmailIdle}, {"webmailmaxsession", c.WebmailMaxSession}} {
		if s.d < time.Minute {
			if lines := l.lines(s.name); len(lines) > 0 {
				l.fail(lines[0].Errorf("%s: at least 1m, got %q", s.name, lines[0].Text))
			}
		}
	}
	c.DeliveryJournal = l.size("deliveryjournal", DefaultDeliveryJournal)
	c.JournalCheckpoint = l.duration("journalcheckpoint", 200*time.Millisecond)
	if c.DeliveryJournal > 0 && c.DeliveryJournal < 1<<20 {
		l.fail(&Error{File: filepath.Join(abs, "deliveryjournal"), Reason: "deliveryjournal: at least 1M, or 0 for none"})
	}
	c.MaxRecipients = int(l.number("maxrcpts", 100, 1, 100000))
	c.HopLimit = int(l.number("hoplimit", DefaultHopLimit, 10, 1000))
	c.AliasUser = l.single("aliasuser", "nobody")
	if bcc, err := ParseBCC(l.lines("bcc")); err != nil {
		l.fail(err)
	} else {
		c.BCC = bcc
	}
	c.GreetDelay = l.duration("smtpgreetdelay", 0)
	c.Greeting = l.greeting()
	for _, ln := range l.lines("resolvers") {
		addr := ln.Text
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, "53")
		}
		if host, _, _ := net.SplitHostPort(addr); net.ParseIP(host) == nil {
			l.fail(ln.Errorf("resolvers: want an IP address (optionally with :port), got %q", ln.Text))
			continue
		}
		c.Resolvers = append(c.Resolvers, addr)
	}
	c.TrustedProxies = l.networks("trustedproxies")
	c.XCLIENTFrom = l.networks("xclient")
	c.RemotePort = int(l.number("remoteport", 25, 1, 65535))
	c.SourceAddrs = l.sourceAddrs("sourceaddress")
	l.authLimit(c)
	c.DANE = l.boolean("dane", true)
	c.MTASTS = l.boolean("mtasts", true)
	c.TLSRPT = l.boolean("tlsrpt", false)
	c.TLSRPTFrom = strings.TrimSpace(l.single("tlsrptfrom", ""))
	if c.TLSRPTFrom != "" && (!strings.Contains(c.TLSRPTFrom, "@") || strings.ContainsAny(c.TLSRPTFrom, " <>\t")) {
		if lines := l.lines("tlsrptfrom"); len(lines) > 0 {
			l.fail(lines[0].Errorf("tlsrptfrom: want an address such as tls-reports@example.org"))
		}
	}
	c.DMARCReports = l.boolean("dmarcreports", false)
	c.DMARCReportFrom = strings.TrimSpace(l.single("dmarcreportfrom", ""))
	if c.DMARCReportFrom != "" && (!strings.Contains(c.DMARCReportFrom, "@") || strings.ContainsAny(c.DMARCReportFrom, " <>\t")) {
		if lines := l.lines("dmarcreportfrom"); len(lines) > 0 {
			l.fail(lines[0].Errorf("dmarcreportfrom: want an address such as dmarc-reports@example.org"))
		}
	}
	c.DMARCReportOrg = strings.TrimSpace(l.single("dmarcreportorg", ""))
	c.DMARCReportInterval = l.duration("dmarcreportinterval", 24*time.Hour)
	if d := c.DMARCReportInterval; d < time.Hour || d > 24*time.Hour || d%time.Hour != 0 || (24*time.Hour)%d != 0 {
		if lines := l.lines("dmarcreportinterval"); len(lines) > 0 {
			l.fail(lines[0].Errorf("dmarcreportinterval: want whole hours that divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h)"))
		}
	}
	c.DMARCFailureReports = l.boolean("dmarcfailurereports", false)
	c.DMARCFailurePerDomain = int(l.number("dmarcfailureperdomain", 10, 1, 100000))
	c.DMARCFailureGlobal = int(l.number("dmarcfailureglobal", 200, 1, 1000000))
	c.QueueTime = l.duration("queuetime", 7*24*time.Hour)
	c.WarnTime = l.duration("warntime", 4*time.Hour)
	c.RetryAlpha = l.duration("retryalpha", 5*time.Minute)
	c.RetryBeta = int(l.number("retrybeta", 3, 1, 100))
	c.RetryGamma = l.duration("retrygamma", 15*time.Minute)
	c.RetryMaxDelta = int(l.number("retrymaxdelta", 3, 0, 10))
	c.MaxDels = int(l.number("maxdels", 20, 1, 1000))
	c.MaxHost = int(l.number("maxhost", 4, 1, 1000))
	c.SRS = l.srs(c)
	for i, ln := range l.lines("tlscert") {
		p := ln.Text
		if !filepath.IsAbs(p) {
			p = filepath.Join(abs, p) // relative to the configuration directory
		}
		if i == 0 {
			c.TLSCertFile = p
		}
		cert, err := tls.LoadX509KeyPair(p, p)
		if err != nil {
			l.fail(ln.Errorf("certificate %s: %v", p, err))
			continue
		}
		c.TLSCertificates = append(c.TLSCertificates, &cert)
	}
	if len(c.TLSCertificates) > 0 {
		c.TLSCertificate = c.TLSCertificates[0]
	}
	switch v := l.single("tlsminversion", "1.2"); v {
	case "1.0":
		c.TLSMinVersion = tls.VersionTLS10
	case "1.1":
		c.TLSMinVersion = tls.VersionTLS11
	case "1.2":
		c.TLSMinVersion = tls.VersionTLS12
	case "1.3":
		c.TLSMinVersion = tls.VersionTLS13
	default:
		l.fail(&Error{File: filepath.Join(abs, "tlsminversion"), Reason: fmt.Sprintf("tlsminversion %q: want 1.0, 1.1, 1.2 or 1.3", v)})
	}
	c.ACME = l.acme(c.DataDir, c.Listeners)
	l.clientCerts(c, abs)
	for _, ln := range c.Listeners {
		if ln.ImplicitTLS() && c.TLSCertificate == nil && c.TLSCertFile == "" && c.ACME == nil {
			l.fail(ln.Origin.Errorf("listener %q needs a certificate: set tlscert or acmehosts", ln.Name))
		}
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return c, nil
}

// loader accumulates errors while reading settings, so Load can report all
// of them at once.
type loader struct {
	dir     string
	replace map[string]string // setting name → the file read instead (LoadWith)
	errs    []error
}

func (l *loader) fail(err error) { l.errs = append(l.errs, err) }

func (l *loader) lines(name string) []Line {
	lines, err := l.read(name)
	if errors.Is(err, ErrNotSet) {
		return nil
	}
	if err != nil {
		l.fail(err)
		return nil
	}
	return lines
}

// read is ReadSetting, or the replacement file of LoadWith.
func (l *loader) read(name string) ([]Line, error) {
	if p, ok := l.replace[name]; ok {
		return readLines(p)
	}
	return ReadSetting(l.dir, name)
}

// single reads a one-line setting.
// clientCerts reads "tlsclientcerts": "no" (the default) or "ask
// [CAFILE]", CAFILE a PEM file of certificate authorities, relative to
// the configuration directory.
func (l *loader) clientCerts(c *Config, dir string) {
	f := strings.Fields(l.single("tlsclientcerts", "no"))
	file := filepath.Join(dir, "tlsclientcerts")
	switch {
	case len(f) == 1 && f[0] == "no":
		return
	case len(f) < 1 || len(f) > 2 || f[0] != "ask":
		l.fail(&Error{File: file, Reason: "tlsclientcerts: want no, ask, or ask CAFILE"})
		return
	}
	c.TLSAskClientCert = true
	if len(f) == 1 {
		return
	}
	p := f[1]
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	pem, err := os.ReadFile(p)
	if err != nil {
		l.fail(&Error{File: file, Reason: fmt.Sprintf("tlsclientcerts: %v", err)})
		return
	}
	c.TLSClientCAs = x509.NewCertPool()
	if !c.TLSClientCAs.AppendCertsFromPEM(pem) {
		l.fail(&Error{File: file, Reason: fmt.Sprintf("tlsclientcerts: no certificate in %s", p)})
	}
}

// mailhostProxy reads the proxying settings (docs/proxy.md).
func (l *loader) mailhostProxy(c *Config) {
	c.IMAPProxy = l.boolean("imapproxy", false)
	c.POP3Proxy = l.boolean("pop3proxy", false)
	c.ProxyHostname = strings.TrimSpace(l.single("proxyhostname", c.Me))
	if strings.ContainsAny(c.ProxyHostname, " \t,") {
		l.fail(l.lines("proxyhostname")[0].Errorf("proxyhostname: one host name, got %q", c.ProxyHostname))
	}
	c.IMAPProxyPort = int(l.number("imapproxyport", 143, 1, 65535))
	c.POP3ProxyPort = int(l.number("pop3proxyport", 110, 1, 65535))
	c.ProxyStartTLS = l.choice("proxytls", "no", "no", "starttls") == "starttls"
	c.ProxyTLSVerify = l.boolean("proxytlsverify", true)
	p := l.path("proxytlsca", "")
	if p == "" {
		return
	}
	pem, err := os.ReadFile(p)
	if err != nil {
		l.fail(l.lines("proxytlsca")[0].Errorf("proxytlsca: %v", err))
		return
	}
	c.ProxyTLSCAs = x509.NewCertPool()
	if !c.ProxyTLSCAs.AppendCertsFromPEM(pem) {
		l.fail(l.lines("proxytlsca")[0].Errorf("proxytlsca: no certificate in %s", p))
	}
}

func (l *loader) single(name, def string) string {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	if len(lines) > 1 {
		l.fail(lines[1].Errorf("%s takes one line, found another", name))
	}
	return lines[0].Text
}

// greeting reads "esmtpgreeting" (Courier's name): the banner's text, one
// line of printable ASCII, which RFC 5321 4.3.1 wants to start with this
// host's name.
func (l *loader) greeting() string {
	lines := l.lines("esmtpgreeting")
	g := l.single("esmtpgreeting", "")
	if g == "" {
		return ""
	}
	for i := 0; i < len(g); i++ {
		if g[i] < ' ' || g[i] > '~' {
			l.fail(lines[0].Errorf("esmtpgreeting: printable ASCII only"))
			return ""
		}
	}
	if len(g) > 400 {
		l.fail(lines[0].Errorf("esmtpgreeting: longer than 400 characters"))
		return ""
	}
	return g
}

func (l *loader) path(name, def string) string {
	p := l.single(name, def)
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p) // relative to the configuration directory
	}
	return p
}

func (l *loader) boolean(name string, def bool) bool {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	switch strings.ToLower(lines[0].Text) {
	case "1", "yes", "true", "on":
		return true
	case "0", "no", "false", "off":
		return false
	}
	l.fail(lines[0].Errorf("%s: want yes or no, got %q", name, lines[0].Text))
	return def
}

func (l *loader) choice(name, def string, allowed ...string) string {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	v := strings.ToLower(lines[0].Text)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	l.fail(lines[0].Errorf("%s: want one of %s, got %q", name, strings.Join(allowed, ", "), lines[0].Text))
	return def
}

func (l *loader) logLevel(name string) slog.Level {
	lines := l.lines(name)
	if len(lines) == 0 {
		return slog.LevelInfo
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(lines[0].Text)); err != nil {
		l.fail(lines[0].Errorf("%s: want debug, info, warn or error, got %q", name, lines[0].Text))
		return slog.LevelInfo
	}
	return lv
}

// number reads an integer within [min, max].
func (l *loader) number(name string, def, min, max int64) int64 {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	n, err := strconv.ParseInt(lines[0].Text, 10, 64)
	if err != nil || n < min || n > max {
		l.fail(lines[0].Errorf("%s: want a whole number from %d to %d, got %q", name, min, max, lines[0].Text))
		return def
	}
	return n
}

// ConnLimits bound a mail access server's sessions; 0 is no limit.
type ConnLimits struct {
	MaxDaemons int // sessions at once (Courier's MAXDAEMONS)
	MaxPerIP   int // sessions at once from one client address (MAXPERIP)
	// MaxUserIP bounds the logged-in sessions of one user from one
	// client address (Dovecot's mail_max_userip_connections).
	MaxUserIP int
}

// connLimits reads PROTOmaxdaemons, PROTOmaxperip and PROTOmaxuserip.
func (l *loader) connLimits(proto string, def ConnLimits) ConnLimits {
	const most = 1 << 20 // more sessions than file descriptors a process gets
	return ConnLimits{
		MaxDaemons: int(l.number(proto+"maxdaemons", int64(def.MaxDaemons), 0, most)),
		MaxPerIP:   int(l.number(proto+"maxperip", int64(def.MaxPerIP), 0, most)),
		MaxUserIP:  int(l.number(proto+"maxuserip", int64(def.MaxUserIP), 0, most)),
	}
}

// duration reads a time span: a number with s, m, h, d or w (Courier's
// spelling, e.g. "7d", "4h", "15m"), or Go's form ("1h30m"); a bare number
// is seconds.
func (l *loader) duration(name string, def time.Duration) time.Duration {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	d, err := ParseDuration(lines[0].Text)
	if err != nil {
		l.fail(lines[0].Errorf("%s: %v", name, err))
		return def
	}
	return d
}

// DataDirOf reads only the datadir setting of the configuration in dir
// (default DefaultDataDir), for programs that may not read the rest: a
// user's sendmail needs nothing else to find the server's socket.
func DataDirOf(dir string) (string, error) {
	lines, err := ReadSetting(dir, "datadir")
	if errors.Is(err, ErrNotSet) {
		return DefaultDataDir, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading datadir in %s: %w (the configuration directory must be searchable and datadir readable by local users for sendmail to work as them)", dir, err)
	}
	if len(lines) == 0 {
		return DefaultDataDir, nil
	}
	p := lines[0].Text
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return p, nil
}

// ParseDuration reads "30", "30s", "15m", "4h", "7d", "2w" or "1h30m".
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil && n >= 0 && n < 1<<33 {
		return time.Duration(n) * time.Second, nil
	}
	if len(t) > 1 {
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[t[len(t)-1]]
		if n, err := strconv.ParseInt(t[:len(t)-1], 10, 64); unit != 0 && err == nil && n >= 0 && n < 1<<20 {
			return time.Duration(n) * unit, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("not a duration: %q (want e.g. 30s, 15m, 4h, 7d)", s)
	}
	return d, nil
}

// networks reads IP networks, one per line: CIDR or a single address.
// authLimit reads "authlimit": lines "failures N/WINDOW [block DURATION]",
// "exempt NETWORK...", or "off". Default: 20 failures an hour block for an
// hour.
func (l *loader) authLimit(c *Config) {
	c.AuthFailures, c.AuthWindow, c.AuthBlock = 20, time.Hour, time.Hour
	for _, ln := range l.lines("authlimit") {
		f := strings.Fields(ln.Text)
		switch {
		case len(f) == 1 && f[0] == "off":
			c.AuthFailures = 0
		case f[0] == "failures" && (len(f) == 2 || len(f) == 4 && f[2] == "block"):
			n, w, ok := strings.Cut(f[1], "/")
			count, err := strconv.Atoi(n)
			window, werr := ParseDuration(w)
			if !ok || err != nil || count < 1 || werr != nil || window <= 0 {
				l.fail(ln.Errorf("authlimit: want \"failures N/WINDOW [block DURATION]\", e.g. failures 20/1h block 1h"))
				continue
			}
			c.AuthFailures, c.AuthWindow = count, window
			if len(f) == 4 {
				b, err := ParseDuration(f[3])
				if err != nil || b <= 0 {
					l.fail(ln.Errorf("authlimit: bad block duration %q", f[3]))
					continue
				}
				c.AuthBlock = b
			}
		case f[0] == "exempt" && len(f) > 1:
			c.AuthExemptSet = true
			for _, n := range f[1:] {
				p, err := ParsePrefix(n)
				if err != nil {
					l.fail(ln.Errorf("authlimit: %v", err))
					continue
				}
				c.AuthExempt = append(c.AuthExempt, p)
			}
		default:
			l.fail(ln.Errorf("authlimit: want \"failures N/WINDOW [block DURATION]\", \"exempt NETWORK...\" or \"off\""))
		}
	}
}

// sourceAddrs reads addresses to bind outbound connections to: at most
// one per family, each one this host may bind (checked when used).
func (l *loader) sourceAddrs(name string) []netip.Addr {
	var out []netip.Addr
	for _, ln := range l.lines(name) {
		a, err := netip.ParseAddr(ln.Text)
		if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			l.fail(ln.Errorf("%s: want an IPv4 or IPv6 address of this host, got %q", name, ln.Text))
			continue
		}
		a = a.Unmap()
		for _, b := range out {
			if b.Is4() == a.Is4() {
				l.fail(ln.Errorf("%s: one address per family (%s is already given)", name, b))
			}
		}
		out = append(out, a)
	}
	return out
}

func (l *loader) networks(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, ln := range l.lines(name) {
		p, err := ParsePrefix(ln.Text)
		if err != nil {
			l.fail(ln.Errorf("%s: %v", name, err))
			continue
		}
		out = append(out, p)
	}
	return out
}

// ParsePrefix reads "10.0.0.0/8", "2001:db8::/32" or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// size reads a byte count: a number with an optional K, M or G suffix.
func (l *loader) size(name string, def int64) int64 {
	lines := l.lines(name)
	if len(lines) == 0 {
		return def
	}
	n, err := ParseSize(lines[0].Text)
	if err != nil {
		l.fail(lines[0].Errorf("%s: %v", name, err))
		return def
	}
	return n
}

// ParseSize reads "10485760", "10M", "512k" or "1G" (binary multiples).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult, t = 1<<10, t[:len(t)-1]
		case 'm', 'M':
			mult, t = 1<<20, t[:len(t)-1]
		case 'g', 'G':
			mult, t = 1<<30, t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
}

// hostedDomains reads Courier's hosteddomains: a domain per line, hosted
// here like those of acceptmailfor (added to accept), or "ALIAS<TAB>DOMAIN"
// (whitespace), an alias domain for a hosted one. It returns the aliases.
func (l *loader) hostedDomains(name string, accept map[string]bool) map[string]string {
	aliases := map[string]string{}
	type pending struct {
		ln            Line
		alias, target string
	}
	var todo []pending
	for _, ln := range l.lines(name) {
		f := strings.Fields(strings.ToLower(ln.Text))
		for i := range f {
			f[i] = strings.TrimSuffix(f[i], ".")
		}
		bad := false
		for _, d := range f {
			if err := checkDomain(d); err != nil {
				l.fail(ln.Errorf("%s: %v", name, err))
				bad = true
			}
		}
		switch {
		case bad:
		case len(f) == 1:
			accept[f[0]] = true
		case len(f) == 2 && f[0] != f[1]:
			todo = append(todo, pending{ln, f[0], f[1]})
		default:
			l.fail(ln.Errorf("%s: want DOMAIN, or ALIAS and DOMAIN separated by a tab, got %q", name, ln.Text))
		}
	}
	// Targets are checked once every hosted domain is known; an alias of
	// an alias is refused rather than followed.
	isAlias := map[string]bool{}
	for _, p := range todo {
		isAlias[p.alias] = true
	}
	for _, p := range todo {
		switch {
		case isAlias[p.target]:
			l.fail(p.ln.Errorf("%s: %s is an alias of %s, itself an alias: name the final domain", name, p.alias, p.target))
		case !accept[p.target]:
			l.fail(p.ln.Errorf("%s: %s is an alias of %s, which is neither in acceptmailfor nor hosted here", name, p.alias, p.target))
		case accept[p.alias]:
			l.fail(p.ln.Errorf("%s: %s is both a domain of its own and an alias", name, p.alias))
		default:
			aliases[p.alias] = p.target
		}
	}
	for alias := range aliases {
		accept[alias] = true
	}
	return aliases
}

// relayRecipients reads relayrecipients: an address or "@domain" per
// line.
func (l *loader) relayRecipients(name string) (addrs, domains map[string]bool) {
	addrs, domains = map[string]bool{}, map[string]bool{}
	for _, ln := range l.lines(name) {
		a := strings.ToLower(ln.Text)
		at := strings.LastIndexByte(a, '@')
		if at < 0 || strings.ContainsAny(a, " \t") {
			l.fail(ln.Errorf("%s: want user@domain or @domain, got %q", name, ln.Text))
			continue
		}
		d := strings.TrimSuffix(a[at+1:], ".")
		if err := checkDomain(d); err != nil {
			l.fail(ln.Errorf("%s: %v", name, err))
			continue
		}
		addrs[a[:at]+"@"+d] = true
		domains[d] = true
	}
	return addrs, domains
}

// locals reads Courier's "locals": a domain per line, ".domain" for its
// subdomains, "!host" for a host such an entry is not to take. Without
// the file, me is the local domain; an empty file makes none.
func (l *loader) locals(me string) map[string]bool {
	out := map[string]bool{}
	lines, err := l.read("locals")
	if errors.Is(err, ErrNotSet) {
		if d := strings.ToLower(strings.TrimSuffix(me, ".")); checkDomain(d) == nil && strings.Contains(d, ".") {
			out[d] = true
		}
		return out
	}
	if err != nil {
		l.fail(err)
		return nil
	}
	for _, ln := range lines {
		d := strings.ToLower(strings.TrimSuffix(ln.Text, "."))
		bare := strings.TrimPrefix(strings.TrimPrefix(d, "!"), ".")
		if strings.HasPrefix(d, "!.") {
			bare = d // "!.x" is neither form
		}
		if err := checkDomain(bare); err != nil {
			l.fail(ln.Errorf("locals: %v", err))
			continue
		}
		if strings.HasPrefix(d, ".") && !strings.Contains(d[1:], ".") {
			l.fail(ln.Errorf("locals: %q would make every domain under a top-level domain local", ln.Text))
			continue
		}
		out[d] = true
	}
	return out
}

// relayDomains reads esmtpacceptmailfor: a domain per line, or
// ".domain" for its subdomains.
func (l *loader) relayDomains(name string) map[string]bool {
	out := map[string]bool{}
	for _, ln := range l.lines(name) {
		d := strings.ToLower(strings.TrimSuffix(ln.Text, "."))
		sub := strings.HasPrefix(d, ".")
		if err := checkDomain(strings.TrimPrefix(d, ".")); err != nil {
			l.fail(ln.Errorf("%s: %v", name, err))
			continue
		}
		if sub && !strings.Contains(d[1:], ".") {
			l.fail(ln.Errorf("%s: %q would relay for every domain under a top-level domain", name, ln.Text))
			continue
		}
		out[d] = true
	}
	return out
}

func (l *loader) domains(name string) map[string]bool {
	out := map[string]bool{}
	for _, ln := range l.lines(name) {
		d := strings.ToLower(strings.TrimSuffix(ln.Text, "."))
		if err := checkDomain(d); err != nil {
			l.fail(ln.Errorf("%s: %v", name, err))
			continue
		}
		out[d] = true
	}
	return out
}

// checkDomain accepts an RFC 1035 host name (letters, digits, hyphens, dots;
// labels of at most 63 octets) or an internationalised one in UTF-8.
func checkDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("bad domain %q", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad domain %q: empty or overlong label", d)
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r > 0x7f
			if !ok {
				return fmt.Errorf("bad domain %q: character %q", d, r)
			}
		}
	}
	return nil
}

func (l *loader) listeners(name string) []Listener {
	known := map[string]bool{}
	for _, k := range KnownListeners {
		known[k] = true
	}
	var out []Listener
	seen := map[string]Line{}
	for _, ln := range l.lines(name) {
		f := strings.Fields(ln.Text)
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "proxy") {
			l.fail(ln.Errorf("want NAME ADDRESS [proxy], e.g. \"smtp 127.0.0.1:2525\""))
			continue
		}
		if !known[f[0]] {
			l.fail(ln.Errorf("unknown listener %q (known: %s)", f[0], strings.Join(KnownListeners, " ")))
			continue
		}
		if f[0] == ListenLMTP && strings.HasPrefix(f[1], "/") {
			// A Unix socket, as Postfix's lmtp:unix:/path expects.
			if len(f) == 3 {
				l.fail(ln.Errorf("proxy: not for a socket"))
				continue
			}
			if prev, dup := seen[f[1]]; dup {
				l.fail(ln.Errorf("address %s already used at %s:%d", f[1], prev.File, prev.Num))
				continue
			}
			seen[f[1]] = ln
			out = append(out, Listener{Name: f[0], Address: f[1], Origin: ln})
			continue
		}
		host, port, err := net.SplitHostPort(f[1])
		if err != nil {
			l.fail(ln.Errorf("address %q: %v", f[1], err))
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			l.fail(ln.Errorf("address %q: bad port", f[1]))
			continue
		}
		if host != "" && net.ParseIP(host) == nil && checkDomain(strings.ToLower(host)) != nil {
			l.fail(ln.Errorf("address %q: bad host", f[1]))
			continue
		}
		if prev, dup := seen[f[1]]; dup && f[1] != "" && !strings.HasSuffix(f[1], ":0") {
			l.fail(ln.Errorf("address %s already used at %s:%d", f[1], prev.File, prev.Num))
			continue
		}
		seen[f[1]] = ln
		out = append(out, Listener{Name: f[0], Address: f[1], Proxy: len(f) == 3, Origin: ln})
	}
	return out
}

// ForwardSender is the envelope sender for a copy of a message from
// "from" that this server forwards to another domain (an alias or a
// .courier file pointing outside): its SRS address when SRS is on and from
// is at a domain that is not ours (ours pass SPF from here anyway), else
// from unchanged. The null sender stays null.
func (c *Config) ForwardSender(from string) string {
	if c.SRS == nil || from == "" {
		return from
	}
	at := strings.LastIndexByte(from, '@')
	if at < 0 || c.HasDomain(from[at+1:]) {
		return from
	}
	if fwd, err := c.SRS.Forward(from); err == nil {
		return fwd
	}
	return from
}

// srs reads "srssecrets" (a secret per line, the first signing) and
// "srsdomain" (default: the first domain of acceptmailfor), which must be a
// domain of ours so that bounces to its SRS addresses come back here.
func (l *loader) srs(c *Config) *srs.Rewriter {
	lines := l.lines("srssecrets")
	if len(lines) == 0 {
		if d := l.single("srsdomain", ""); d != "" {
			l.fail(&Error{File: filepath.Join(l.dir, "srsdomain"), Reason: "srsdomain is set but srssecrets is missing or empty"})
		}
		return nil
	}
	var secrets [][]byte
	for _, ln := range lines {
		if len(ln.Text) < 16 {
			l.fail(ln.Errorf("srssecrets: a secret must be at least 16 characters"))
			return nil
		}
		secrets = append(secrets, []byte(ln.Text))
	}
	domain := strings.ToLower(strings.TrimSuffix(l.single("srsdomain", ""), "."))
	if domain == "" {
		if first := l.lines("acceptmailfor"); len(first) > 0 {
			domain = strings.ToLower(strings.TrimSuffix(first[0].Text, "."))
		}
	}
	if domain == "" || !c.HasDomain(domain) {
		l.fail(&Error{File: filepath.Join(l.dir, "srsdomain"), Reason: fmt.Sprintf("srsdomain %q must be a domain of acceptmailfor or hosteddomains (bounces to its SRS addresses must come here)", domain)})
		return nil
	}
	r, err := srs.New(domain, secrets)
	if err != nil {
		l.fail(&Error{File: filepath.Join(l.dir, "srssecrets"), Reason: err.Error()})
		return nil
	}
	return r
}
