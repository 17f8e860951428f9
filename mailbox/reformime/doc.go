// Package reformime is Courier's reformime: it lists a message's MIME
// sections, shows what each one is (-i, with Courier's byte offsets and
// line counts), extracts and decodes them (-e, -x, -X), rewrites the
// message's MIME headers and transfer encodings (-r, -r7, -r8), reads
// delivery status notifications (-d, -D), builds digests (-m), dumps the
// text as UTF-8 (-u), and decodes and encodes RFC 2047 header text (-h,
// -H, -o, -O).
//
// Its parser (parse.go) is its own rather than mailbox/mime's, because
// scripts depend on Courier's exact reading of broken MIME: which line
// ends belong to a delimiter, which Content-Type counts, what a header cut
// short means, where the 300-part limit stops. Each of those rules was
// taken from Courier's reformime (maildrop 2.9.3) by experiment, and the
// tests compare the two on a corpus and on generated messages.
package reformime
