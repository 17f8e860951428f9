package authtool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"postern/auth/passwd"
)

// ErrNoPassword: the line read was empty.
var ErrNoPassword = errors.New("empty password")

// ReadPasswordLine reads one line, without its line end, of at most
// passwd.MaxPasswordLen bytes: a password piped into a command.
func ReadPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, passwd.MaxPasswordLen+2))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > passwd.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", passwd.MaxPasswordLen)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", ErrNoPassword
	}
	return line, nil
}

// IsTerminal reports whether r is a terminal.
func IsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// PromptPassword asks for a password on the terminal stdin, with the echo
// off (and back on even after a Ctrl-C), each prompt on stderr; with two
// prompts the two answers must be the same.
func PromptPassword(stdin io.Reader, stderr io.Writer, prompts ...string) (string, error) {
	f, ok := stdin.(*os.File)
	if !ok || !IsTerminal(stdin) {
		return "", errors.New("standard input is not a terminal")
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	// Ctrl-C at the prompt must not leave the terminal without echo.
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer func() { signal.Stop(sigs); close(done) }()
	go func() {
		select {
		case <-sigs:
			unix.IoctlSetTermios(fd, unix.TCSETS, old)
			fmt.Fprintln(stderr)
			os.Exit(130)
		case <-done:
		}
	}()
	var answers []string
	for _, p := range prompts {
		fmt.Fprint(stderr, p)
		pw, err := ReadPasswordLine(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		answers = append(answers, pw)
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			return "", errors.New("the passwords differ; nothing changed")
		}
	}
	return answers[0], nil
}
