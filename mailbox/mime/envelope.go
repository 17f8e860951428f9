package mime

// buildEnvelope builds IMAP's ENVELOPE (RFC 3501 7.4.2) from a message
// header. String fields are the unfolded raw values; address fields are
// parsed leniently (ParseAddressList). Sender and Reply-To default to From
// when absent or empty, as RFC 3501 requires of the server.
func buildEnvelope(h Header) *Envelope {
	env := &Envelope{
		Date:      h.Get("Date"),
		Subject:   h.Get("Subject"),
		InReplyTo: h.Get("In-Reply-To"),
		MessageID: h.Get("Message-ID"),
		From:      addressHeader(h, "From"),
		Sender:    addressHeader(h, "Sender"),
		ReplyTo:   addressHeader(h, "Reply-To"),
		To:        addressHeader(h, "To"),
		Cc:        addressHeader(h, "Cc"),
		Bcc:       addressHeader(h, "Bcc"),
	}
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

// addressHeader parses the first field named name; nil when absent or when
// it holds no address.
func addressHeader(h Header, name string) []Address {
	v, ok := firstValue(h, name)
	if !ok {
		return nil
	}
	addrs := ParseAddressList(v)
	if len(addrs) == 0 {
		return nil
	}
	return addrs
}
