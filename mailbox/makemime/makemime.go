package makemime

import "io"

func MakemimeMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int { return 1 }
