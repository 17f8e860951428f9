// Package reformail is Postern's reformail(1): the mail reformatting tool
// that Courier's maildrop ships and that thousands of .mailfilter files call
// through xfilter and backticks.
//
// It owns the command's behaviour, not its wiring: ReformailMain takes the
// arguments after the program name and the standard streams, and returns the
// exit status. The behaviour follows Courier's reformail as Debian ships it
// (maildrop 2.9), recorded in testdata/compat by tools/reformail-compat.sh:
// header edits (-a -A -i -I -u -U -R), folding (-c), line endings (-d),
// mbox "From " line conversion (-f0, -f1), header extraction (-x, -X),
// duplicate detection on Message-ID (-D) and mailbox splitting (-s).
//
// The message is streamed: header lines are held one logical (unfolded)
// line at a time, the body one bounded chunk at a time, so the size of a
// message does not bound what can be reformatted. Only -f1, which must see
// every header before it can write the "From " line, holds the header block,
// and that is bounded by maxHeaderBlock.
package reformail
