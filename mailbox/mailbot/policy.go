package mailbot

import "strings"

// reasonNotToAnswer returns why the message must not be answered, or "".
// The first checks are Courier's; the rest are RFC 3834 section 2 advice
// that Courier leaves to the filter author.
func reasonNotToAnswer(m *original, envelopeSender string, envelopeKnown bool) string {
	ct := strings.ToLower(m.get("Content-Type"))
	if strings.HasPrefix(ct, "multipart/report") {
		return "a delivery or disposition report (multipart/report)"
	}
	switch p := strings.ToLower(m.get("Precedence")); {
	case strings.HasPrefix(p, "junk"), strings.HasPrefix(p, "bulk"), strings.HasPrefix(p, "list"):
		return "Precedence: " + p
	}
	// RFC 3834 5.1: anything but "no" is automatic.
	if as := strings.ToLower(m.get("Auto-Submitted")); as != "" && as != "no" && !strings.HasPrefix(as, "no ") && !strings.HasPrefix(as, "no;") {
		return "Auto-Submitted: " + as
	}
	for _, f := range m.fields {
		// RFC 2919 List-Id and the RFC 2369 list fields.
		if strings.HasPrefix(strings.ToLower(f.name), "list-") {
			return "mailing list mail (" + f.name + ")"
		}
	}
	if envelopeKnown && (envelopeSender == "" || envelopeSender == "<>") {
		return "null envelope sender"
	}
	// RFC 3834 2: not to bounces or list administrators.
	for _, addr := range []string{envelopeSender, firstAddress(m.get("From"))} {
		local, _, _ := strings.Cut(strings.ToLower(strings.Trim(addr, "<>")), "@")
		switch {
		case local == "mailer-daemon", local == "postmaster" && addr == envelopeSender,
			strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"), strings.HasPrefix(local, "bounce"):
			return "automatic sender " + addr
		}
	}
	return ""
}

func firstAddress(value string) string {
	if a := addresses(value); len(a) > 0 {
		return a[0]
	}
	return ""
}

// addressedToUs is -r: one of our addresses is in a To: or Cc: field.
func addressedToUs(m *original, ours []string) bool {
	for _, f := range m.fields {
		if !strings.EqualFold(f.name, "To") && !strings.EqualFold(f.name, "Cc") {
			continue
		}
		for _, a := range addresses(unfold(f.value)) {
			for _, o := range ours {
				if strings.EqualFold(a, o) {
					return true
				}
			}
		}
	}
	return false
}
