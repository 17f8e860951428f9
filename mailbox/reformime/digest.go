package reformime

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"postern/internal/strerror"
	"strings"
)

// preamble is the text Courier puts before the first delimiter of the
// multiparts it makes, for readers that do not know MIME.
const preamble = "This is a MIME-formatted message.  If you see this text it means that your\nE-mail software does not support MIME-formatted messages.\n"

// makeDigest is -m: the files named on standard input, one per line,
// become the message/rfc822 parts of a multipart/digest. Every file is
// read before anything is written, so a missing one leaves no output.
func (r *runner) makeDigest(stdin io.Reader) int {
	var messages [][]byte
	br := bufio.NewReader(stdin)
	for {
		line, err := br.ReadString('\n')
		if line == "" && err != nil {
			break
		}
		name := strings.TrimSuffix(line, "\n")
		path := name
		if r.cfg.Dir != "" && !filepath.IsAbs(name) {
			path = filepath.Join(r.cfg.Dir, name)
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			if name == "" {
				fmt.Fprintln(r.stderr, strerror.Text(rerr))
			} else {
				fmt.Fprintf(r.stderr, "%s: %s\n", name, strerror.Text(rerr))
			}
			return 1
		}
		messages = append(messages, b)
		if err != nil {
			break
		}
	}
	if len(messages) == 0 {
		return 0
	}
	bnd := fmt.Sprintf("reformime_%d_%d", r.cfg.Now().Unix(), r.cfg.PID)
	fmt.Fprintf(r.out, "Mime-Version:1.0\nContent-Type: multipart/digest; boundary=\"%s\"\n\n%s\n", bnd, preamble)
	for _, m := range messages {
		fmt.Fprintf(r.out, "--%s\nContent-Type: message/rfc822\n\n", bnd)
		r.out.Write(m)
		r.out.WriteString("\n")
	}
	fmt.Fprintf(r.out, "--%s--\n", bnd)
	return 0
}
