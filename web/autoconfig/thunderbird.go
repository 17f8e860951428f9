package autoconfig

import (
	"encoding/xml"
	"net/http"
)

// ClientConfig is Thunderbird's autoconfiguration document, clientConfig
// version 1.1 (the ISPDB format,
// https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
type ClientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider EmailProvider `xml:"emailProvider"`
}

// EmailProvider is the domain's entry.
type EmailProvider struct {
	ID               string         `xml:"id,attr"`
	Domain           string         `xml:"domain"`
	DisplayName      string         `xml:"displayName"`
	DisplayShortName string         `xml:"displayShortName"`
	Incoming         []ClientServer `xml:"incomingServer"`
	Outgoing         []ClientServer `xml:"outgoingServer"`
}

// ClientServer is one incomingServer or outgoingServer.
type ClientServer struct {
	Type           string `xml:"type,attr"` // imap, pop3, smtp
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"` // SSL (implicit TLS), STARTTLS, plain
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

// socketType names a service's TLS mode as Thunderbird does.
func (s Settings) socketType(svc Service) string {
	switch {
	case svc.ImplicitTLS:
		return "SSL"
	case s.TLS:
		return "STARTTLS"
	}
	return "plain"
}

// ThunderbirdConfig is the clientConfig for domain. The username is
// Thunderbird's placeholder for the address the user typed: our logins
// are full addresses.
func (s Settings) ThunderbirdConfig(domain string) ClientConfig {
	cc := ClientConfig{Version: "1.1", Provider: EmailProvider{ID: domain, Domain: domain, DisplayName: domain, DisplayShortName: domain}}
	server := func(svc Service) ClientServer {
		return ClientServer{Type: string(svc.Protocol), Hostname: s.Hostname, Port: svc.Port, SocketType: s.socketType(svc),
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}
	}
	for _, p := range []Protocol{IMAP, POP3} {
		for _, svc := range s.Of(p) {
			cc.Provider.Incoming = append(cc.Provider.Incoming, server(svc))
		}
	}
	for _, svc := range s.Of(SMTP) {
		cc.Provider.Outgoing = append(cc.Provider.Outgoing, server(svc))
	}
	return cc
}

// thunderbird answers GET .../config-v1.1.xml. Thunderbird asks
// https://autoconfig.DOMAIN/mail/config-v1.1.xml?emailaddress=ADDR and
// https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ADDR;
// the address's domain (else the host's, after "autoconfig.") decides.
func (h *Handler) thunderbird(w http.ResponseWriter, r *http.Request) {
	_, domain, ok := h.hostedAddress(w, r, "autoconfig.")
	if !ok {
		return
	}
	writeXML(w, "application/xml", h.set.ThunderbirdConfig(domain))
}

// writeXML sends v as an XML document.
func writeXML(w http.ResponseWriter, contentType string, v any) {
	body, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType+"; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(xml.Header))
	w.Write(body)
	w.Write([]byte("\n"))
}
