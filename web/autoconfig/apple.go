package autoconfig

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// AppleContentType is the media type iOS and macOS install profiles from.
const AppleContentType = "application/x-apple-aspen-config"

// profileNamespace makes the profile's PayloadUUIDs: name-based (UUID
// version 5, RFC 9562 section 5.5) from the address, so that installing the
// profile again replaces the account instead of adding a second one.
var profileNamespace = uuid.MustParse("7c2f8a4e-5b1d-4f0e-9a63-2d8e1b4c6f10")

// AppleProfile returns an unsigned configuration profile (a property
// list) with one com.apple.mail.managed payload: the preferred IMAP
// service for incoming mail and the preferred submission service for
// outgoing, logging in as addr. Apple's UseSSL flag means TLS of either
// kind; Mail uses STARTTLS on a port that does not speak TLS at once.
func (s Settings) AppleProfile(addr string) []byte {
	imap, _ := s.First(IMAP)
	smtp, _ := s.First(SMTP)
	tlsFor := func(svc Service) bool { return svc.ImplicitTLS || s.TLS }
	accountUUID := uuid.NewSHA1(profileNamespace, []byte("account "+addr)).String()
	profileUUID := uuid.NewSHA1(profileNamespace, []byte("profile "+addr)).String()
	ident := reverseName(s.Hostname) + ".postern.email"

	var p plist
	p.begin()
	p.key("PayloadContent")
	p.raw("<array>\n<dict>\n")
	p.str("EmailAccountDescription", addr)
	p.str("EmailAccountName", addr)
	p.str("EmailAccountType", "EmailTypeIMAP")
	p.str("EmailAddress", addr)
	p.str("IncomingMailServerAuthentication", "EmailAuthPassword")
	p.str("IncomingMailServerHostName", s.Hostname)
	p.integer("IncomingMailServerPortNumber", imap.Port)
	p.boolean("IncomingMailServerUseSSL", tlsFor(imap))
	p.str("IncomingMailServerUsername", addr)
	p.str("OutgoingMailServerAuthentication", "EmailAuthPassword")
	p.str("OutgoingMailServerHostName", s.Hostname)
	p.integer("OutgoingMailServerPortNumber", smtp.Port)
	p.boolean("OutgoingMailServerUseSSL", tlsFor(smtp))
	p.str("OutgoingMailServerUsername", addr)
	p.boolean("OutgoingPasswordSameAsIncomingPassword", true)
	p.str("PayloadDescription", "Mail account "+addr)
	p.str("PayloadDisplayName", addr)
	p.str("PayloadIdentifier", ident+"."+accountUUID)
	p.str("PayloadType", "com.apple.mail.managed")
	p.str("PayloadUUID", accountUUID)
	p.integer("PayloadVersion", 1)
	p.raw("</dict>\n</array>\n")
	p.str("PayloadDescription", "Mail settings for "+addr+" on "+s.Hostname)
	p.str("PayloadDisplayName", "Mail: "+addr)
	p.str("PayloadIdentifier", ident)
	p.boolean("PayloadRemovalDisallowed", false)
	p.str("PayloadType", "Configuration")
	p.str("PayloadUUID", profileUUID)
	p.integer("PayloadVersion", 1)
	p.end()
	return p.Bytes()
}

// reverseName turns a host name into the reverse-DNS prefix Apple's
// payload identifiers use.
func reverseName(host string) string {
	labels := strings.Split(host, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".")
}

// plist writes an XML property list, escaping every string.
type plist struct{ bytes.Buffer }

func (p *plist) begin() {
	p.WriteString(xml.Header)
	p.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	p.WriteString("<plist version=\"1.0\">\n<dict>\n")
}

func (p *plist) end() { p.WriteString("</dict>\n</plist>\n") }

func (p *plist) raw(s string) { p.WriteString(s) }

func (p *plist) key(k string) {
	p.WriteString("<key>")
	xml.EscapeText(p, []byte(k))
	p.WriteString("</key>\n")
}

func (p *plist) str(k, v string) {
	p.key(k)
	p.WriteString("<string>")
	xml.EscapeText(p, []byte(v))
	p.WriteString("</string>\n")
}

func (p *plist) integer(k string, v int) {
	p.key(k)
	p.WriteString("<integer>" + strconv.Itoa(v) + "</integer>\n")
}

func (p *plist) boolean(k string, v bool) {
	p.key(k)
	if v {
		p.WriteString("<true/>\n")
	} else {
		p.WriteString("<false/>\n")
	}
}

// appleProfile answers GET /mail/apple.mobileconfig?emailaddress=ADDR.
func (h *Handler) appleProfile(w http.ResponseWriter, r *http.Request) {
	addr, domain, ok := h.hostedAddress(w, r, "")
	if !ok {
		return
	}
	if _, ok := h.set.First(IMAP); !ok {
		http.Error(w, "no IMAP service to configure", http.StatusNotFound)
		return
	}
	if _, ok := h.set.First(SMTP); !ok {
		http.Error(w, "no submission service to configure", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", AppleContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+domain+`.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(h.set.AppleProfile(addr))
}
