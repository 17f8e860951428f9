package main

import (
	"fmt"

	"postern/mailbox/makemime"
	"postern/mailbox/reformime"
)

func runReformime(e *env, args []string) int {
	if len(args) == 1 && args[0] == "--help" {
		fmt.Fprint(e.stdout, `Usage: reformime [-i] [-e] [-s SECTION[,SECTION...]] [-x[PREFIX]] [-X PROGRAM ARGS...]
                 [-r|-r7|-r8] [-c CHARSET] [-d|-D] [-m] [-u]
                 [-h|-H|-o|-O TEXT] < MESSAGE

Lists a message's MIME sections, shows what each one is, extracts and
decodes them (to standard output, to files, or to a program), rewrites
the message's transfer encodings, reads delivery status notifications,
builds a digest, and decodes or encodes RFC 2047 header text, as
Courier's reformime(1) does. See docs/reformime.md.
`)
		return 0
	}
	return reformime.ReformimeMain(args, e.stdin, e.stdout, e.stderr)
}

func runMakemime(e *env, args []string) int {
	if len(args) == 1 && args[0] == "--help" {
		fmt.Fprint(e.stdout, `Usage: makemime -c TYPE [-e ENCODING] [-o FILE] [-C CHARSET] [-N NAME] [-a "Header: value"]... FILE
       makemime -m MULTIPART/TYPE [-e 7bit|8bit] [-o FILE] [-a "Header: value"]... FILE
       makemime -j FILE1 [-o FILE] FILE2
       makemime @ARGFILE

Builds MIME sections and multipart collections, as Courier's makemime(1)
does. A FILE may be "-" (standard input), "&N" (file descriptor N) or
"(" OPTIONS ")" (a nested makemime). See docs/makemime.md.
`)
		return 0
	}
	return makemime.MakemimeMain(args, e.stdin, e.stdout, e.stderr)
}
