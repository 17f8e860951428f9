package autoconfig

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Autodiscover namespaces (Microsoft's "POX" Autodiscover for Outlook,
// [MS-OXDSCLI]): the client's request schema, the envelope of the answer,
// and the Outlook response schema that carries IMAP/POP3/SMTP settings.
const (
	autodiscoverRequestNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	autodiscoverEnvelopeNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	AutodiscoverOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

// Bounds on an Autodiscover request: its size (the body is a few hundred
// bytes in practice) and how deep its elements may nest.
const (
	MaxAutodiscoverBody  = 64 << 10
	maxAutodiscoverDepth = 16
)

var (
	errNoEmail = errors.New("autodiscover: no Request/EMailAddress")
	// ErrTooLarge: the request is larger than MaxAutodiscoverBody.
	ErrTooLarge = fmt.Errorf("autodiscover: request larger than %d octets", MaxAutodiscoverBody)
)

// ParseAutodiscoverRequest reads the EMailAddress of an Autodiscover
// request:
//
//	<Autodiscover xmlns="...requestschema/2006">
//	  <Request><EMailAddress>user@example.com</EMailAddress>
//	  <AcceptableResponseSchema>...</AcceptableResponseSchema></Request>
//	</Autodiscover>
//
// It reads tokens itself rather than unmarshalling so that hostile input
// has bounds: at most MaxAutodiscoverBody octets, elements nested at most
// maxAutodiscoverDepth deep, and no DOCTYPE at all (encoding/xml never
// expands external entities, and refusing the declaration keeps internal
// ones out as well). Element names are matched without their namespace, as
// clients differ in what they declare.
func ParseAutodiscoverRequest(r io.Reader) (string, error) {
	lr := &io.LimitedReader{R: r, N: MaxAutodiscoverBody + 1}
	d := xml.NewDecoder(lr)
	d.Strict = true
	var (
		path  []string
		email strings.Builder
		found bool
	)
	for {
		tok, err := d.Token()
		if lr.N <= 0 {
			return "", ErrTooLarge
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("autodiscover: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return "", errors.New("autodiscover: DOCTYPE or other declaration refused")
		case xml.StartElement:
			if len(path) >= maxAutodiscoverDepth {
				return "", fmt.Errorf("autodiscover: elements nested more than %d deep", maxAutodiscoverDepth)
			}
			if len(path) == 0 && t.Name.Local != "Autodiscover" {
				return "", fmt.Errorf("autodiscover: root element %.40q, not Autodiscover", t.Name.Local)
			}
			path = append(path, t.Name.Local)
		case xml.EndElement:
			if isEmailPath(path) {
				found = true
			}
			path = path[:len(path)-1]
		case xml.CharData:
			if isEmailPath(path) && !found {
				if email.Len()+len(t) > maxAddressLen {
					return "", errors.New("autodiscover: EMailAddress too long")
				}
				email.Write(t)
			}
		}
	}
	if !found {
		return "", errNoEmail
	}
	full, _, _, err := splitAddress(email.String())
	if err != nil {
		return "", fmt.Errorf("autodiscover: EMailAddress: %w", err)
	}
	return full, nil
}

func isEmailPath(path []string) bool {
	return len(path) == 3 && path[1] == "Request" && path[2] == "EMailAddress"
}

// AutodiscoverResponse is the answer: the envelope and the Outlook
// response with one Protocol block per service.
type AutodiscoverResponse struct {
	XMLName  xml.Name            `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response AutodiscoverOutlook `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
}

// AutodiscoverOutlook is the Response element.
type AutodiscoverOutlook struct {
	Account AutodiscoverAccount `xml:"Account"`
}

// AutodiscoverAccount is the Account element.
type AutodiscoverAccount struct {
	AccountType string                 `xml:"AccountType"` // email
	Action      string                 `xml:"Action"`      // settings
	Protocols   []AutodiscoverProtocol `xml:"Protocol"`
}

// AutodiscoverProtocol is one server's settings.
type AutodiscoverProtocol struct {
	Type           string `xml:"Type"` // IMAP, POP3, SMTP
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	LoginName      string `xml:"LoginName"`
	DomainRequired string `xml:"DomainRequired"`
	SPA            string `xml:"SPA"` // off: no NTLM
	SSL            string `xml:"SSL"` // on: some TLS
	// Encryption says which: SSL for implicit TLS, TLS for STARTTLS, None.
	Encryption   string `xml:"Encryption"`
	AuthRequired string `xml:"AuthRequired"`
	// UsePOPAuth (SMTP only): the same login as for reading mail.
	UsePOPAuth string `xml:"UsePOPAuth,omitempty"`
}

// Autodiscover is the answer for addr: the preferred IMAP, POP3 and
// submission service, each once (Outlook takes the first block of a Type).
func (s Settings) Autodiscover(addr string) AutodiscoverResponse {
	acct := AutodiscoverAccount{AccountType: "email", Action: "settings"}
	for _, p := range []Protocol{IMAP, POP3, SMTP} {
		svc, ok := s.First(p)
		if !ok {
			continue
		}
		ap := AutodiscoverProtocol{Type: strings.ToUpper(string(p)), Server: s.Hostname, Port: svc.Port, LoginName: addr,
			DomainRequired: "off", SPA: "off", SSL: "on", Encryption: "SSL", AuthRequired: "on"}
		switch {
		case svc.ImplicitTLS:
		case s.TLS:
			ap.Encryption = "TLS"
		default:
			ap.SSL, ap.Encryption = "off", "None"
		}
		if p == SMTP {
			ap.UsePOPAuth = "on"
		}
		acct.Protocols = append(acct.Protocols, ap)
	}
	return AutodiscoverResponse{Response: AutodiscoverOutlook{Account: acct}}
}

// autodiscover answers POST /autodiscover/autodiscover.xml.
func (h *Handler) autodiscover(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > MaxAutodiscoverBody {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	addr, err := ParseAutodiscoverRequest(http.MaxBytesReader(w, r.Body, MaxAutodiscoverBody+1))
	if err != nil {
		h.log.Debug("autodiscover: bad request", "client", r.RemoteAddr, "err", err)
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || errors.Is(err, ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "bad autodiscover request", status)
		return
	}
	_, _, domain, _ := splitAddress(addr)
	if !h.set.Hosted(domain) {
		http.NotFound(w, r)
		return
	}
	writeXML(w, "application/xml", h.set.Autodiscover(addr))
}
