// Package mime reads the structure of an RFC 5322 / MIME message the way an
// IMAP server needs it: the tree of parts with byte offsets into the original
// message, each part's header and content fields, the envelope, section
// extraction for BODY[...] fetches, and decoded text for SEARCH. It never
// fails on broken MIME: what cannot be parsed is treated as RFC 2045's
// default (text/plain; charset=us-ascii), so a hostile message can always be
// fetched and searched.
//
// It produces Go values, not IMAP syntax: mailbox/imap renders them on the
// wire, and the webmail and SMAP servers can read the same values.
//
// CONTRACT FILE: the exported types other packages code against.
package mime

// Address is one mailbox of an address header, split the way IMAP's ENVELOPE
// wants it (RFC 3501 section 7.4.2). A group is written as a start marker
// (Mailbox = group name, Host = "") and an end marker (all fields empty), and
// Group is set on both so a renderer can tell the markers from real mailboxes.
type Address struct {
	Name    string // display name, RFC 2047-decoded to UTF-8
	ADL     string // at-domain-list (source route), usually ""
	Mailbox string // local part
	Host    string // domain
	Group   bool
}

// Envelope is IMAP's ENVELOPE of a message or an embedded message/rfc822.
// String fields hold the raw header value (unfolded, not decoded), as RFC 3501
// asks; empty means NIL. Address lists are nil when the header is absent.
type Envelope struct {
	Date      string
	Subject   string
	From      []Address
	Sender    []Address // defaults to From when absent (RFC 3501)
	ReplyTo   []Address // defaults to From when absent
	To        []Address
	Cc        []Address
	Bcc       []Address
	InReplyTo string
	MessageID string
}

// Param is one content-type or disposition parameter, in header order.
type Param struct {
	Name  string // as written (IMAP clients compare case-insensitively)
	Value string // RFC 2231-decoded
}

// Part is one node of the MIME tree. Offsets are byte positions in the whole
// message: the part's header runs from HeaderStart to BodyStart (including
// the blank line), its body from BodyStart to End.
//
// Message is nil for a message/rfc822 part whose body is base64 or
// quoted-printable encoded (it is left opaque, as Dovecot does) or that lies
// beyond MaxDepth: render such a part as a basic body (RFC 3501's
// media-basic allows "MESSAGE"). Lines is the number of LFs in the body
// (set for every part; IMAP shows it for text/* and message/rfc822).
type Part struct {
	HeaderStart, BodyStart, End int64

	Type, Subtype string  // lower-case, e.g. "text", "plain"
	Params        []Param // content-type parameters
	ID            string  // Content-ID, raw
	Description   string  // Content-Description, raw
	Encoding      string  // Content-Transfer-Encoding, upper-case, default "7BIT"
	Size          int64   // body octets (End - BodyStart)
	Lines         int64   // body lines, for text/* and message/rfc822
	MD5           string  // Content-MD5, raw
	Disposition   string  // e.g. "attachment", "" when absent
	DispParams    []Param
	Language      []string
	Location      string

	// Children of a multipart/*, in order. Empty for leaf parts.
	Children []*Part
	// Message is the embedded message of a message/rfc822 (or message/global)
	// part: its own header and body as a Part, with Envelope set.
	Message *Part
	// Envelope is set on the top-level part and on embedded messages.
	Envelope *Envelope

	// Header is the part's parsed header (for the top level and embedded
	// messages, the message header), for SEARCH HEADER and display.
	Header Header
	// Truncated is set on a part that the parser did not split further
	// because a limit (MaxDepth, MaxParts) was reached: such a multipart
	// is reported as application/octet-stream and such a message/rfc822
	// has no Message. Its bytes are all still there for BODY[] fetches.
	Truncated bool

	lfEnd int64 // LFs in the whole message before End
}

// The functions (implemented beside this file):
//
//	func Parse(r io.ReaderAt, size int64) (*Part, error)  // whole-message tree; error only on I/O failure
//	func ParseStructure(r io.ReaderAt, size int64) (*Part, error) // Parse without Envelope (search indexing)
//	func ParseHeader(r io.ReaderAt, start, end int64) (Header, error)
//	func (p *Part) Find(path []int) *Part                  // section part numbers "1.2.3" -> part; nil if none (RFC 3501 6.4.5 numbering: a non-multipart top level is part 1)
//	func Section(r io.ReaderAt, root *Part, spec SectionSpec) ([]byte, error) // BODY[spec] content: "", HEADER, HEADER.FIELDS (list), HEADER.FIELDS.NOT (list), TEXT, MIME, with part path
//	func DecodeHeaderValue(raw string) string               // RFC 2047 to UTF-8 for SEARCH/display
//	func (p *Part) Text(r io.ReaderAt) (string, error)      // decoded (CTE + charset -> UTF-8) text of all text/* leaves, for SEARCH BODY/TEXT
//	func ParseDate(raw string) (time.Time, bool)            // RFC 5322 date, lenient, for SEARCH SENTBEFORE etc.
//
//	type Header struct{ ... }        // ordered fields: Get(name) string, Values(name) []string, Fields() []Field, Has(name) bool
//	type SectionSpec struct {
//		Path      []int    // part numbers; empty = whole message
//		Specifier string   // "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"
//		Fields    []string // for HEADER.FIELDS[.NOT]
//	}
//
// Added beside the contract:
//
//	func ParseAddressList(value string) []Address      // the lenient address parser the envelope uses
//	const MissingMailbox, MissingDomain                 // placeholders for broken addresses (as Dovecot)
//	const MaxDepth = 64, MaxParts = 10000, MaxText = 16 MiB
//	var ErrBadSpecifier                                  // Section with an unknown specifier
//	func Decoded(r io.ReaderAt, root *Part, path []int) ([]byte, error) // BINARY[path]: transfer encoding undone
//	var ErrUnknownEncoding                               // Decoded of a part in an encoding it cannot undo
//	Part.Header (parsed header), Part.Truncated (a limit stopped the split)
