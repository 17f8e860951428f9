package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"postern/auth"
	"postern/gateway/delivery"
	"postern/policy"
	"postern/policy/aliases"
	"postern/policy/srs"
)

// maxExpansion bounds how many final recipients one RCPT may turn into
// through aliases (a mailing-list alias of a few thousand is fine; a
// million is a mistake or an attack).
const maxExpansion = 10000

// extensionSeparators are the characters that start an address extension
// ("user-ext@domain"): Courier's "-", and "+" as most other MTAs use it.
const extensionSeparators = "-+"

// Refusal is why a recipient cannot be taken, as an SMTP reply.
type Refusal struct {
	Code     int
	Enhanced string
	Text     string
	Reason   string // for logs and metrics: relay, unknown_user, temporary, ...
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Router decides where an address goes: to local accounts (after alias
// expansion and address extensions), to a remote domain (only when the
// client may relay), or nowhere (with the SMTP reply that says why). The
// SMTP sessions and sendmail use the same Router, so both obey one policy.
type Router struct {
	Config  func() *policy.Config
	Auth    *auth.Service
	Aliases *aliases.DB // may be nil: no aliases
	// VerifyRelay, when set, asks the next hop about an address of a relay
	// domain (relayverify): nil when it takes the address, else the
	// refusal to give the client.
	VerifyRelay func(ctx context.Context, addr string) *Refusal
}

// Target is one final destination of an accepted address.
type Target struct {
	Recipient delivery.Recipient
	Account   *auth.Account // set for local accounts
	Extension string        // the address extension split off for Account ("lists" of "alice-lists")
	// Forwarded marks a remote address an alias of ours points to: its
	// copy is sent with cfg.ForwardSender (SRS) as envelope sender.
	Forwarded bool
	// Rcpt is the RCPT TO address this destination came from, as the
	// client gave it (a milter removes recipients by that address).
	Rcpt string
	// Archive marks a copy the "bcc" setting added (archiveTargets): it
	// never decides the reply to the client and no DSN is sent about it.
	Archive bool
}

// Resolve maps one RCPT address to its final destinations. relay says
// whether the client may send to domains that are not ours.
func (r *Router) Resolve(ctx context.Context, addr string, relay bool) ([]Target, *Refusal) {
	cfg := r.Config()
	if strings.EqualFold(addr, "postmaster") {
		// RFC 5321 4.5.1: "RCPT TO:<Postmaster>", without a domain, must
		// be taken; it is the postmaster of this host's domain.
		if d := PostmasterDomain(cfg); d != "" {
			addr = "postmaster@" + d
		}
	}
	local, domain, err := splitAddress(addr)
	if err != nil {
		return nil, &Refusal{501, "5.1.3", "Bad recipient address syntax", "rcpt_syntax"}
	}
	if !isPlainDomain(domain) || !cfg.HasDomain(domain) {
		if isPlainDomain(domain) && (relay || cfg.RelaysFor(domain)) {
			// The client may relay, or the domain is one we relay for
			// (esmtpacceptmailfor: a backup MX, a perimeter gateway),
			// whose valid addresses relayrecipients may list, so that
			// unknown ones are refused now rather than bounced later.
			if !relay && !cfg.RelayRecipientOK(local, domain) {
				return nil, &Refusal{550, "5.1.1", "No such user here", "unknown_user"}
			}
			if !relay && cfg.RelayVerify && r.VerifyRelay != nil && !cfg.RelayRecipientsListed(strings.ToLower(domain)) {
				if ref := r.VerifyRelay(ctx, addr); ref != nil {
					return nil, ref
				}
			}
			return []Target{{Recipient: delivery.Recipient{Addr: addr}}}, nil
		}
		// Never an open relay: literals, trailing dots and foreign domains
		// are refused for clients that may not relay.
		return nil, &Refusal{554, "5.7.1", "Relay access denied", "relay"}
	}
	seen := map[string]bool{}
	var out []Target
	// An alias domain (hosteddomains) shares its target's mailboxes.
	domain = cfg.CanonicalDomain(strings.ToLower(domain))
	if cfg.SRS != nil && domain == cfg.SRS.Domain && srs.IsSRS(local) {
		return r.resolveSRS(ctx, cfg, local+"@"+domain, addr, relay)
	}
	if ref := r.resolveLocal(ctx, cfg, local, domain, addr, seen, &out); ref != nil {
		return nil, ref
	}
	if len(out) == 0 {
		return nil, &Refusal{550, "5.1.1", "No such user here", "unknown_user"}
	}
	return out, nil
}

// resolveSRS takes a bounce (or a reply) to one of our SRS addresses: it
// goes to the address the SRS address stands for, wherever that is, from
// any client, since only we can have made a valid one. A forged, damaged
// or expired one is refused during the session, so it is not bounced.
func (r *Router) resolveSRS(ctx context.Context, cfg *policy.Config, srsAddr, orig string, relay bool) ([]Target, *Refusal) {
	back, err := cfg.SRS.Reverse(srsAddr)
	if err != nil {
		reason := "No such user here (invalid SRS address)"
		if errors.Is(err, srs.ErrExpired) {
			reason = "No such user here (expired SRS address)"
		}
		return nil, &Refusal{550, "5.1.1", reason, "srs_invalid"}
	}
	l, d, err := splitAddress(back)
	if err != nil || !isPlainDomain(d) {
		return nil, &Refusal{550, "5.1.1", "No such user here (invalid SRS address)", "srs_invalid"}
	}
	if cfg.HasDomain(d) {
		if srs.IsSRS(l) {
			return nil, &Refusal{550, "5.1.1", "No such user here (SRS loop)", "srs_invalid"}
		}
		return r.Resolve(ctx, back, relay)
	}
	return []Target{{Recipient: delivery.Recipient{Addr: back, ORcpt: "rfc822;" + orig}}}, nil
}

// resolveLocal expands one address of an accepted domain into out.
func (r *Router) resolveLocal(ctx context.Context, cfg *policy.Config, local, domain, orig string, seen map[string]bool, out *[]Target) *Refusal {
	full := local + "@" + domain
	if r.Aliases != nil {
		targets, isAlias, err := r.Aliases.Expand(ctx, full)
		if err != nil {
			return &Refusal{451, "4.3.0", "Temporary failure looking up the recipient, try again later", "temporary"}
		}
		if isAlias {
			// Targets are final: the alias table was expanded when it was
			// compiled, so they are accounts or remote addresses, never
			// aliases to look up again ("larry: larry, moe" keeps larry).
			for _, t := range targets {
				if t.Kind != aliases.Address {
					// A program or a file: delivered through the queue
					// by LocalDelivery, as the alias user.
					key := "pipe:" + t.String()
					if !seen[key] {
						seen[key] = true
						*out = append(*out, Target{Recipient: delivery.Recipient{Addr: full, Local: true, ORcpt: "rfc822;" + orig, Pipe: t.String()}})
					}
					continue
				}
				l, d, err := splitAddress(t.Value)
				bare := err != nil
				if bare { // a bare name: an account in this domain, or a domain-less one
					l, d = t.Value, domain
				}
				d = strings.ToLower(d)
				if !cfg.HasDomain(d) {
					// An alias may point outside: the admin wrote it, so it
					// is relayed whoever the client is.
					*out = append(*out, Target{Recipient: delivery.Recipient{Addr: t.Value, ORcpt: "rfc822;" + orig}, Forwarded: true})
					continue
				}
				if len(*out) >= maxExpansion {
					return &Refusal{550, "5.4.6", "Alias expansion too large", "alias_limit"}
				}
				acct, ext, ref := r.lookupAccountExt(ctx, l, d)
				if ref == nil && acct == nil && (bare || cfg.IsLocal(d)) {
					// Courier's aliases name system accounts without a
					// domain ("@virt.example: john" gives "john-sales").
					acct, ext, ref = r.lookupAccountExt(ctx, l, "")
				}
				if ref != nil {
					return ref
				}
				if acct == nil {
					// An alias naming a missing account is the admin's
					// mistake; say so instead of accepting into the void.
					return &Refusal{550, "5.1.1", "Alias target " + l + "@" + d + " has no mailbox", "alias_broken"}
				}
				if seen["acct:"+strings.ToLower(l+"@"+d)] {
					continue
				}
				seen["acct:"+strings.ToLower(l+"@"+d)] = true
				*out = append(*out, Target{
					Recipient: delivery.Recipient{Addr: l + "@" + d, Local: true, ORcpt: "rfc822;" + orig},
					Account:   acct,
					Extension: ext,
				})
			}
			return nil
		}
	}
	acct, ext, ref := r.lookupAccountExt(ctx, local, domain)
	if ref == nil && acct == nil && cfg.IsLocal(domain) {
		// A local domain (locals) is taken off the address, as Courier
		// does: user@LOCAL is the account "user". The whole address is
		// tried first, for a domain that is hosted too.
		acct, ext, ref = r.lookupAccountExt(ctx, local, "")
	}
	if ref != nil {
		return ref
	}
	if acct == nil {
		return nil
	}
	*out = append(*out, Target{
		Recipient: delivery.Recipient{Addr: local + "@" + domain, Local: true, ORcpt: orcptFor(orig, local+"@"+domain)},
		Account:   acct,
		Extension: ext,
	})
	return nil
}

// lookupAccount finds the account for local@domain, trying Courier's
// address-extension splits ("mary-ann-lists" → "mary-ann", then "mary").
// It returns nil, nil when no account matches.
//
// Local parts are matched as written first, then lower-cased: RFC 5321
// makes them case-sensitive, but every MTA in use folds them, and users
// type "Alice@...". An empty domain looks up domain-less account names.
func (r *Router) lookupAccount(ctx context.Context, local, domain string) (*auth.Account, *Refusal) {
	acct, _, ref := r.lookupAccountExt(ctx, local, domain)
	return acct, ref
}

// lookupAccountExt is lookupAccount that also returns the address
// extension that was split off ("lists" for "alice-lists").
func (r *Router) lookupAccountExt(ctx context.Context, local, domain string) (*auth.Account, string, *Refusal) {
	tried := map[string]bool{}
	for _, l := range []string{local, strings.ToLower(local)} {
		for _, split := range aliases.ExtensionCandidates(l, extensionSeparators) {
			name := split.Base
			if domain != "" {
				name += "@" + domain
			}
			if tried[name] {
				continue
			}
			tried[name] = true
			acct, err := r.Auth.Lookup(ctx, name)
			switch {
			case err == nil:
				return acct, split.Ext, nil
			case errors.Is(err, auth.ErrNoSuchUser):
				continue
			default:
				return nil, "", &Refusal{451, "4.3.0", "Temporary failure looking up the recipient, try again later", "temporary"}
			}
		}
	}
	return nil, "", nil
}

func orcptFor(orig, final string) string {
	if strings.EqualFold(orig, final) {
		return ""
	}
	return "rfc822;" + orig
}

// isPlainDomain accepts a host name: no address literal ("[1.2.3.4]"), no
// trailing dot, no empty labels.
func isPlainDomain(d string) bool {
	if d == "" || strings.HasPrefix(d, "[") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	return !strings.ContainsAny(d, " \t\r\n\x00/\\!%@:")
}

// recipientSet is what a message's recipient list holds already, so that
// each destination gets one copy: the same address given twice, "Alice"
// and "alice" for one account, an alias and one of its members, a
// sendmail -t message naming someone in To and Bcc. Postfix's cleanup and
// Courier's submit drop such duplicates too. The first occurrence wins
// (its DSN options and ORCPT are the ones kept).
type recipientSet map[string]struct{}

// add appends to list the targets of ts it has not seen yet. A first
// single target needs no bookkeeping: the set is made only once a list
// has two entries, so the usual one-recipient message pays nothing.
func (rs *recipientSet) add(list []Target, ts []Target) []Target {
	if len(list) == 0 && len(ts) <= 1 && *rs == nil {
		return append(list, ts...)
	}
	if *rs == nil {
		*rs = make(recipientSet, len(list)+len(ts))
		for _, t := range list {
			(*rs)[targetKey(t)] = struct{}{}
		}
	}
	for _, t := range ts {
		k := targetKey(t)
		if _, dup := (*rs)[k]; dup {
			continue
		}
		(*rs)[k] = struct{}{}
		list = append(list, t)
	}
	return list
}

// targetKey names a target's destination: the account (with its address
// extension, which may pick other delivery instructions) and folder for
// a local account, the program or file for an alias's pipe, else the
// address with its domain in lower case (a remote local part keeps its
// case, RFC 5321 2.4).
func targetKey(t Target) string {
	rc := t.Recipient
	switch {
	case rc.Pipe != "":
		return "pipe\x00" + rc.Addr + "\x00" + rc.Pipe
	case t.Account != nil:
		return "acct\x00" + t.Account.Name + "\x00" + strings.ToLower(t.Extension) + "\x00" + rc.Folder
	}
	if local, domain, err := splitAddress(rc.Addr); err == nil {
		return "addr\x00" + local + "@" + domain
	}
	return "addr\x00" + rc.Addr
}

// PostmasterDomain is the domain whose postmaster a bare "postmaster"
// recipient means: the host name (me) or its parent when mail for it is
// accepted, else the first accepted domain in alphabetical order; "" when
// the server accepts mail for no domain.
func PostmasterDomain(cfg *policy.Config) string {
	// The hosted domains decide: the default local domain (me, see
	// locals) has only system accounts, where postmaster is rarely one.
	me := strings.ToLower(cfg.Me)
	if cfg.AcceptMailFor[me] {
		return me
	}
	if _, parent, ok := strings.Cut(me, "."); ok && cfg.AcceptMailFor[parent] {
		return parent
	}
	first := ""
	for d, ok := range cfg.AcceptMailFor {
		if ok && isPlainDomain(d) && (first == "" || d < first) {
			first = d
		}
	}
	return first
}

// DefaultDomain is the domain sendmail appends to an address given without
// one ("root", "-f cron"): the defaultdomain setting, else the domain of a
// bare postmaster (this host's name or its parent when mail for it is
// taken here, else the first accepted domain), else the host name, so that
// cron's mail to root reaches root's alias.
func DefaultDomain(cfg *policy.Config) string {
	if cfg.DefaultDomain != "" {
		return cfg.DefaultDomain
	}
	if d := PostmasterDomain(cfg); d != "" {
		return d
	}
	return strings.ToLower(cfg.Me)
}

// qualify appends the default domain to an address without one.
func qualify(addr string, cfg *policy.Config) string {
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + DefaultDomain(cfg)
}

// SenderOwnedBy reports whether the account login may send as from
// (senderlogin "own"): from reaches login's own account when mail is sent
// to it: the account's address, one of its extensions, or an alias the
// account is a target of. An address of another domain is nobody's here.
// A Refusal means the answer is not known now (a backend is down).
func (r *Router) SenderOwnedBy(ctx context.Context, from, login string) (bool, *Refusal) {
	acct, err := r.Auth.Lookup(ctx, login)
	if err != nil {
		if errors.Is(err, auth.ErrNoSuchUser) {
			return false, nil
		}
		return false, &Refusal{451, "4.3.0", "Temporary failure checking the sender, try again later", "temporary"}
	}
	targets, ref := r.Resolve(ctx, from, false)
	if ref != nil {
		if ref.Code < 500 {
			return false, ref
		}
		return false, nil
	}
	for _, t := range targets {
		if t.Account != nil && t.Account.Name == acct.Name {
			return true, nil
		}
	}
	return false, nil
}
