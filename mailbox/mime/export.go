package mime

// ToUTF8 converts b from charset to UTF-8; an unknown charset, or text
// that does not convert, passes through unchanged.
func ToUTF8(charset string, b []byte) string { return toUTF8(charset, b) }
