package reformime

import "io"

func (r *runner) makeDigest(stdin io.Reader) int  { return 0 }
func (r *runner) rewriteMessage() int             { return 0 }
func (r *runner) printDSN() int                   { return 0 }
func (r *runner) toUTF8() int                     { return 0 }
