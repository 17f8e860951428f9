// Package autoconfig lets mail clients and sending servers learn how to use
// this server from a domain or an address alone. It serves, on the web
// listeners:
//
//   - Thunderbird's autoconfiguration file (the ISPDB "clientConfig" format,
//     version 1.1) at /.well-known/autoconfig/mail/config-v1.1.xml and, for
//     the host autoconfig.DOMAIN, /mail/config-v1.1.xml;
//   - Microsoft's POX Autodiscover answer (the Outlook "2006a" response
//     schema) to POST /autodiscover/autodiscover.xml;
//   - an Apple configuration profile (.mobileconfig) at
//     /mail/apple.mobileconfig;
//   - the MTA-STS policy of a domain (RFC 8461 section 3.2) at
//     /.well-known/mta-sts.txt for the host mta-sts.DOMAIN, from the
//     "mtastspolicy" setting.
//
// It also computes the DNS records a domain should publish (Records), which
// `postern dns records` prints. Answers are only given for domains the
// server accepts mail for; others get 404. The package owns the
// mtastspolicy setting's parser; the server builds a new Handler from each
// configuration it loads.
package autoconfig

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"postern/policy"
)

// Protocol is what a client speaks to a Service.
type Protocol string

const (
	IMAP Protocol = "imap"
	POP3 Protocol = "pop3"
	SMTP Protocol = "smtp" // message submission (RFC 6409), never port 25
)

// Service is one port a client may use.
type Service struct {
	Protocol Protocol
	Port     int
	// ImplicitTLS: TLS from the first byte (RFC 8314); otherwise the
	// client upgrades with STARTTLS, or, when the server has no
	// certificate (Settings.TLS false), speaks in clear.
	ImplicitTLS bool
	// Listener is the "listen" name it comes from (imaps, submission, ...).
	Listener string
	// Loopback: every address it listens on is a loopback one.
	Loopback bool
}

// Settings are what every answer is made from.
type Settings struct {
	// Hostname is the server's name (me): what clients connect to.
	Hostname string
	// Services are the client ports, implicit TLS ones first within a
	// protocol (RFC 8314 section 3 prefers them).
	Services []Service
	// TLS: the server has a certificate (tlscert or acmehosts), so
	// STARTTLS is offered on the plain ports.
	TLS bool
	// Hosted reports whether mail for a domain (lower case) is taken here.
	Hosted func(domain string) bool
	// MTASTS are the domains' MTA-STS policies (mtastspolicy).
	MTASTS *Policies
}

// listenerServices maps the "listen" names clients use to what they offer.
var listenerServices = []struct {
	name     string
	protocol Protocol
	tls      bool
}{
	{policy.ListenIMAPS, IMAP, true},
	{policy.ListenIMAP, IMAP, false},
	{policy.ListenPOP3S, POP3, true},
	{policy.ListenPOP3, POP3, false},
	{policy.ListenSubmissions, SMTP, true},
	{policy.ListenSubmission, SMTP, false},
}

// FromConfig builds Settings from a loaded configuration and its MTA-STS
// policies. bound, when not nil, gives a listener's bound addresses: a
// listener configured on port 0 is then announced with the port it got
// (tests, and setups that let the kernel choose).
func FromConfig(cfg *policy.Config, sts *Policies, bound func(name string) []net.Addr) Settings {
	s := Settings{
		Hostname: strings.TrimSuffix(strings.ToLower(cfg.Me), "."),
		TLS:      cfg.TLSCertificate != nil || cfg.ACME != nil,
		Hosted:   cfg.HasDomain,
		MTASTS:   sts,
	}
	if s.MTASTS == nil {
		s.MTASTS = &Policies{}
	}
	for _, ls := range listenerServices {
		if ls.tls && !s.TLS {
			continue // an implicit TLS port without a certificate serves nobody
		}
		seen := map[int]bool{}
		var ports []int
		loopback := map[int]bool{}
		for _, l := range cfg.ListenersNamed(ls.name) {
			host, portText, err := net.SplitHostPort(l.Address)
			if err != nil {
				continue // a socket path: not for clients on the network
			}
			port, _ := strconv.Atoi(portText)
			if port == 0 && bound != nil {
				for _, a := range bound(ls.name) {
					if ta, ok := a.(*net.TCPAddr); ok {
						port = ta.Port
						break
					}
				}
			}
			if port == 0 {
				continue
			}
			ip := net.ParseIP(host)
			isLoop := ip != nil && ip.IsLoopback() || host == "localhost"
			if !seen[port] {
				seen[port] = true
				ports = append(ports, port)
				loopback[port] = isLoop
			} else if !isLoop {
				loopback[port] = false
			}
		}
		sort.Ints(ports)
		for _, p := range ports {
			s.Services = append(s.Services, Service{Protocol: ls.protocol, Port: p, ImplicitTLS: ls.tls, Listener: ls.name, Loopback: loopback[p]})
		}
	}
	return s
}

// Of returns the services of one protocol, best first.
func (s Settings) Of(p Protocol) []Service {
	var out []Service
	for _, svc := range s.Services {
		if svc.Protocol == p {
			out = append(out, svc)
		}
	}
	return out
}

// First returns the preferred service of a protocol.
func (s Settings) First(p Protocol) (Service, bool) {
	all := s.Of(p)
	if len(all) == 0 {
		return Service{}, false
	}
	return all[0], true
}

// Handler serves the endpoints named in the package comment.
type Handler struct {
	set Settings
	log *slog.Logger
}

// Paths are the patterns Handler answers; the server mounts each on its
// web listeners' mux. The /mail/ ones are more specific than the webmail's
// "/mail/" prefix, so ServeMux sends them here.
var Paths = []string{
	"/.well-known/autoconfig/mail/config-v1.1.xml",
	"/mail/config-v1.1.xml",
	"/autodiscover/autodiscover.xml",
	"/Autodiscover/Autodiscover.xml",
	"/mail/apple.mobileconfig",
	"/.well-known/mta-sts.txt",
}

// New returns a Handler answering from set.
func New(set Settings, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if set.MTASTS == nil {
		set.MTASTS = &Policies{}
	}
	if set.Hosted == nil {
		set.Hosted = func(string) bool { return false }
	}
	return &Handler{set: set, log: log}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml":
		h.thunderbird(w, r)
	case "/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml":
		h.autodiscover(w, r)
	case "/mail/apple.mobileconfig":
		h.appleProfile(w, r)
	case "/.well-known/mta-sts.txt":
		h.mtaSTS(w, r)
	default:
		http.NotFound(w, r)
	}
}

// requestHost is the request's host name without port or trailing dot,
// lower case.
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// maxAddressLen bounds an address taken from a request (RFC 5321 section
// 4.5.3.1: a path is at most 256 octets).
const maxAddressLen = 254

// splitAddress checks an address from a request and returns it with its
// domain in lower case. Only what a client could type as its address
// passes: one '@', no white space, quotes or control characters, so the
// address can be echoed into XML and plists (escaped all the same).
func splitAddress(addr string) (full, local, domain string, err error) {
	addr = strings.TrimSpace(addr)
	if addr == "" || len(addr) > maxAddressLen {
		return "", "", "", fmt.Errorf("address of %d octets", len(addr))
	}
	for _, c := range addr {
		if c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == ',' {
			return "", "", "", fmt.Errorf("character %q in address", c)
		}
	}
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || strings.Count(addr, "@") != 1 {
		return "", "", "", fmt.Errorf("not an address: %.80q", addr)
	}
	local, domain = addr[:i], strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
	if domain == "" || strings.HasPrefix(domain, ".") || strings.Contains(domain, "..") {
		return "", "", "", fmt.Errorf("bad domain in %.80q", addr)
	}
	return local + "@" + domain, local, domain, nil
}

// hostedAddress reads the emailaddress parameter (Thunderbird's and our
// profile link's name for it) and checks its domain is ours. fallbackHost
// is a host prefix ("autoconfig.") whose domain is used when no address is
// given. Only GET and HEAD are answered. It writes the error answer
// itself and returns ok false.
func (h *Handler) hostedAddress(w http.ResponseWriter, r *http.Request, fallbackHost string) (addr, domain string, ok bool) {
	if !allowGet(w, r) {
		return "", "", false
	}
	q := r.URL.Query().Get("emailaddress")
	if q == "" && fallbackHost != "" {
		d, found := strings.CutPrefix(requestHost(r), fallbackHost)
		if found && h.set.Hosted(d) {
			return "%EMAILADDRESS%", d, true
		}
		http.NotFound(w, r)
		return "", "", false
	}
	full, _, d, err := splitAddress(q)
	if err != nil {
		http.Error(w, "bad emailaddress", http.StatusBadRequest)
		return "", "", false
	}
	if !h.set.Hosted(d) {
		http.NotFound(w, r)
		return "", "", false
	}
	return full, d, true
}

// allowGet answers 405 to a method other than GET and HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
