package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
)

// policyPath is where the policy host serves the policy (RFC 8461 section
// 3.3).
const policyPath = "/.well-known/mta-sts.txt"

// fetch gets and parses the policy of domain from https://mta-sts.DOMAIN
// (RFC 8461 section 3.3). ctx bounds the whole fetch: resolving the policy
// host, connecting, the TLS handshake, the request and reading the body.
func (c *Client) fetch(ctx context.Context, domain string) (*Policy, error) {
	host := "mta-sts." + domain
	// One transport per fetch: the TLS name is per domain, fetches are rare
	// (once per policy id and day), and nothing is left behind afterwards.
	transport := &http.Transport{
		Proxy: nil, // never a proxy from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.dialPolicyHost(ctx, host)
		},
		// Section 3.3: the certificate must be valid for the mta-sts host
		// and chain to a trusted root; section 7.2: TLS 1.2 at least.
		TLSClientConfig: &tls.Config{
			ServerName: host,
			RootCAs:    c.rootCAs,
			MinVersion: tls.VersionTLS12,
		},
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// Section 3.3: HTTP 3xx redirects MUST NOT be followed. The 3xx
		// comes back as the response and is refused below like any status
		// but 200.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	// The URL has no port: the Host header names the policy host alone,
	// and dialPolicyHost dials the configured port.
	url := "https://" + host + policyPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "postern-mta-sts")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()

	// Section 3.3: policies are valid only with status 200 (OK).
	if resp.StatusCode != http.StatusOK {
		if loc := resp.Header.Get("Location"); loc != "" {
			return nil, fmt.Errorf("fetch %s: status %s: redirect to %.100q not followed", url, resp.Status, loc)
		}
		return nil, fmt.Errorf("fetch %s: status %s", url, resp.Status)
	}
	// Section 3.3: senders SHOULD check that the media type is text/plain,
	// so that a host serving other people's content cannot be made to
	// serve a policy.
	mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mediaType != "text/plain" {
		return nil, fmt.Errorf("fetch %s: content type %.100q, not text/plain", url, resp.Header.Get("Content-Type"))
	}
	// Section 3.3: a limit on the body, 64 KiB suggested.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: reading body: %w", url, err)
	}
	if len(body) > maxPolicySize {
		return nil, fmt.Errorf("fetch %s: body larger than %d bytes", url, maxPolicySize)
	}
	policy, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: %w", url, errInvalidPolicy, err)
	}
	return policy, nil
}

// errInvalidPolicy marks a fetched policy that does not parse.
var errInvalidPolicy = errors.New("invalid policy")

// The RFC 8460 (section 4.3.2.2) result types of a failed policy fetch.
const (
	FetchError    = "sts-policy-fetch-error" // not retrieved: DNS, connection, HTTP status, media type, size
	WebPKIInvalid = "sts-webpki-invalid"     // the policy host's certificate does not verify
	PolicyInvalid = "sts-policy-invalid"     // retrieved, but not a valid policy
)

// failureKind names a fetch error as RFC 8460 does.
func failureKind(err error) string {
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.Is(err, errInvalidPolicy):
		return PolicyInvalid
	case errors.As(err, &verify), errors.As(err, &hostname), errors.As(err, &unknown), errors.As(err, &invalid):
		return WebPKIInvalid
	}
	return FetchError
}

// dialPolicyHost connects to the policy host's addresses in turn, on the
// configured port, until one answers.
func (c *Client) dialPolicyHost(ctx context.Context, host string) (net.Conn, error) {
	addrs, err := c.lookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	var (
		dialer net.Dialer
		errs   []error
	)
	port := strconv.Itoa(c.port)
	for _, addr := range addrs {
		conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connect to %s: %w", host, errors.Join(errs...))
}
