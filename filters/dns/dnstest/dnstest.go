// Package dnstest runs a real DNS server on 127.0.0.1 (UDP and TCP, one
// port) for tests of everything that resolves: the resolver itself, SPF,
// DNSBL, DKIM, DMARC. It answers authoritatively from an in-memory zone and
// can be told to misbehave (time out, SERVFAIL, send garbage) per name.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Zone is the data a Server answers from. Methods are safe for concurrent
// use, also while the server runs.
type Zone struct {
	mu          sync.Mutex
	records     map[string][]mdns.RR // by lower-case FQDN owner
	timeout     map[string]map[uint16]bool
	servfail    map[string]bool
	negativeTTL uint32
	rewrite     func(req, resp *mdns.Msg)
	// updates: TSIG key name (FQDN) → secret of keys whose signed DNS
	// UPDATEs (RFC 2136) the server applies; updateZone is their zone.
	updateKeys map[string]string
	updateZone string
	updates    int
}

// NewZone returns an empty zone; negative answers carry an SOA with a
// 300-second minimum (RFC 2308).
func NewZone() *Zone {
	return &Zone{
		records:     make(map[string][]mdns.RR),
		timeout:     make(map[string]map[uint16]bool),
		servfail:    make(map[string]bool),
		negativeTTL: 300,
	}
}

// AllowUpdates makes the server apply DNS UPDATEs (RFC 2136) for zone
// signed with TSIG key keyName (secret in base64, hmac-sha256 or any
// algorithm miekg/dns checks); unsigned or badly signed ones are refused
// (NOTAUTH). Call it before Start.
func (z *Zone) AllowUpdates(zone, keyName, secret string) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.updateKeys == nil {
		z.updateKeys = map[string]string{}
	}
	z.updateKeys[mdns.Fqdn(keyName)] = secret
	z.updateZone = canonical(zone)
	return z
}

// Updates counts the UPDATEs applied.
func (z *Zone) Updates() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.updates
}

// Records returns the records of name and type (a copy).
func (z *Zone) Records(name string, qtype uint16) []mdns.RR {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []mdns.RR
	for _, rr := range z.records[canonical(name)] {
		if rr.Header().Rrtype == qtype {
			out = append(out, mdns.Copy(rr))
		}
	}
	return out
}

// Add parses zone-file lines ("example.com. 300 IN TXT \"v=spf1 -all\"")
// and adds them. It panics on a bad line: test data is code.
func (z *Zone) Add(lines ...string) *Zone {
	for _, l := range lines {
		rr, err := mdns.NewRR(l)
		if err != nil || rr == nil {
			panic(fmt.Sprintf("dnstest: bad record %q: %v", l, err))
		}
		z.AddRR(rr)
	}
	return z
}

// AddRR adds ready-made records.
func (z *Zone) AddRR(rrs ...mdns.RR) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, rr := range rrs {
		name := canonical(rr.Header().Name)
		z.records[name] = append(z.records[name], rr)
	}
	return z
}

// Timeout makes the server drop queries for name of the given types (all
// types when none is given), so that clients time out.
func (z *Zone) Timeout(name string, qtypes ...uint16) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	name = canonical(name)
	if z.timeout[name] == nil {
		z.timeout[name] = make(map[uint16]bool)
	}
	if len(qtypes) == 0 {
		qtypes = []uint16{mdns.TypeANY}
	}
	for _, t := range qtypes {
		z.timeout[name][t] = true
	}
	return z
}

// ServFail makes the server answer SERVFAIL for name.
func (z *Zone) ServFail(name string) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.servfail[canonical(name)] = true
	return z
}

// SetNegativeTTL sets the SOA minimum sent with NXDOMAIN and no-data answers.
func (z *Zone) SetNegativeTTL(seconds uint32) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.negativeTTL = seconds
	return z
}

// Rewrite installs a hook that may change every response before it is sent
// (to test how clients handle wrong IDs, questions, garbage).
func (z *Zone) Rewrite(f func(req, resp *mdns.Msg)) *Zone {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rewrite = f
	return z
}

// Server is a running DNS server.
type Server struct {
	Addr string // host:port, the same port for UDP and TCP
	Zone *Zone

	udp, tcp *mdns.Server
	mu       sync.Mutex
	queries  map[string]int // "name TYPE proto" -> count
	total    int
}

// Start runs a server for zone on 127.0.0.1 and stops it when t ends.
func Start(t testing.TB, zone *Zone) *Server {
	t.Helper()
	s, err := Listen(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen runs a server for zone on 127.0.0.1 (for benchmarks and tools that
// manage the lifetime themselves with Close).
func Listen(zone *Zone) (*Server, error) {
	var pc net.PacketConn
	var ln net.Listener
	var err error
	// Find a port free for both UDP and TCP.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("listen tcp: %w", err)
	}
	s := &Server{Addr: pc.LocalAddr().String(), Zone: zone, queries: make(map[string]int)}
	s.udp = &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(s.serve)}
	s.tcp = &mdns.Server{Listener: ln, Handler: mdns.HandlerFunc(s.serve)}
	zone.mu.Lock()
	if len(zone.updateKeys) > 0 {
		s.udp.TsigSecret, s.tcp.TsigSecret = zone.updateKeys, zone.updateKeys
		s.udp.MsgAcceptFunc, s.tcp.MsgAcceptFunc = acceptUpdates, acceptUpdates
	}
	zone.mu.Unlock()
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("dns server did not start")
		}
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Queries returns how many queries for name and qtype arrived (over UDP and
// TCP together).
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := canonical(name) + " " + mdns.TypeToString[qtype]
	return s.queries[k+" udp"] + s.queries[k+" tcp"]
}

// QueriesOver returns how many queries for name and qtype arrived over proto
// ("udp" or "tcp").
func (s *Server) QueriesOver(proto, name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[canonical(name)+" "+mdns.TypeToString[qtype]+" "+proto]
}

// Total returns how many queries arrived in all.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	s.mu.Lock()
	s.queries[name+" "+mdns.TypeToString[q.Qtype]+" "+proto]++
	s.total++
	s.mu.Unlock()

	z := s.Zone
	if req.Opcode == mdns.OpcodeUpdate {
		s.update(w, req)
		return
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if t := z.timeout[name]; t[mdns.TypeANY] || t[q.Qtype] {
		return // say nothing: the client times out
	}
	resp := new(mdns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	if z.servfail[name] {
		resp.Rcode = mdns.RcodeServerFailure
	} else {
		z.answer(resp, name, q.Qtype)
	}
	if z.rewrite != nil {
		z.rewrite(req, resp)
	}
	if proto == "udp" {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// acceptUpdates lets UPDATE messages through, which miekg/dns's default
// answers with NOTIMP; everything else is judged by the default.
func acceptUpdates(dh mdns.Header) mdns.MsgAcceptAction {
	if int(dh.Bits>>11)&0xF == mdns.OpcodeUpdate {
		return mdns.MsgAccept
	}
	return mdns.DefaultMsgAcceptFunc(dh)
}

// update applies a signed UPDATE to the zone, as a primary server does:
// class INET adds a record, NONE removes that record, ANY the name's
// records of the type (RFC 2136 section 2.5). Prerequisites are not
// checked.
func (s *Server) update(w mdns.ResponseWriter, req *mdns.Msg) {
	z := s.Zone
	resp := new(mdns.Msg)
	resp.SetReply(req)
	z.mu.Lock()
	defer func() {
		z.mu.Unlock()
		if t := req.IsTsig(); t != nil && w.TsigStatus() == nil {
			resp.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
		}
		w.WriteMsg(resp)
	}()
	t := req.IsTsig()
	switch {
	case len(z.updateKeys) == 0:
		resp.Rcode = mdns.RcodeRefused
		return
	case t == nil || w.TsigStatus() != nil || z.updateKeys[t.Hdr.Name] == "":
		resp.Rcode = mdns.RcodeNotAuth
		return
	case canonical(req.Question[0].Name) != z.updateZone:
		resp.Rcode = mdns.RcodeNotZone
		return
	}
	for _, rr := range req.Ns {
		h := rr.Header()
		name := canonical(h.Name)
		if !mdns.IsSubDomain(z.updateZone, name) {
			resp.Rcode = mdns.RcodeNotZone
			return
		}
		switch h.Class {
		case mdns.ClassINET:
			c := mdns.Copy(rr)
			c.Header().Name = name
			z.records[name] = append(z.records[name], c)
		case mdns.ClassNONE, mdns.ClassANY:
			kept := z.records[name][:0]
			for _, have := range z.records[name] {
				drop := have.Header().Rrtype == h.Rrtype
				if drop && h.Class == mdns.ClassNONE {
					c := mdns.Copy(rr)
					c.Header().Class, c.Header().Ttl, c.Header().Name = mdns.ClassINET, have.Header().Ttl, name
					drop = mdns.IsDuplicate(have, c)
				}
				if !drop {
					kept = append(kept, have)
				}
			}
			if len(kept) == 0 {
				delete(z.records, name)
			} else {
				z.records[name] = kept
			}
		}
	}
	z.updates++
}

// answer fills resp like an authoritative server that owns every name:
// CNAMEs are followed inside the zone (RFC 1034 section 4.3.2), missing
// names are NXDOMAIN, and negative answers carry an SOA (RFC 2308).
func (z *Zone) answer(resp *mdns.Msg, name string, qtype uint16) {
	seen := map[string]bool{}
	for range 16 {
		rrs, exists := z.records[name]
		if !exists {
			// RFC 6604: after a CNAME the rcode describes the last name.
			resp.Rcode = mdns.RcodeNameError
			z.addSOA(resp)
			return
		}
		var cname *mdns.CNAME
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				resp.Answer = append(resp.Answer, rr)
				found = true
			} else if c, ok := rr.(*mdns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil || qtype == mdns.TypeCNAME {
			if !found {
				z.addSOA(resp)
			}
			return
		}
		resp.Answer = append(resp.Answer, cname)
		name = canonical(cname.Target)
		if seen[name] {
			return // a loop: give what we have, the client must notice
		}
		seen[name] = true
	}
}

func (z *Zone) addSOA(resp *mdns.Msg) {
	resp.Ns = append(resp.Ns, &mdns.SOA{
		Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: z.negativeTTL},
		Ns:  "ns.test.", Mbox: "hostmaster.test.",
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: z.negativeTTL,
	})
}

// canonical is the lower-case FQDN in the presentation form names have after
// a trip over the wire (miekg/dns escapes spaces and other special octets),
// so that names given by tests match names in queries.
func canonical(name string) string {
	fqdn := strings.ToLower(mdns.Fqdn(name))
	var buf [512]byte
	n, err := mdns.PackDomainName(fqdn, buf[:], 0, nil, false)
	if err != nil {
		return fqdn
	}
	c, _, err := mdns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return fqdn
	}
	return c
}
