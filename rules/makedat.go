package rules

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"postern/internal/cliflags"
)

// MakedatMain is Courier's makedat(1): it builds the database that the
// filter language's gdbmopen/gdbmfetch read from a text source of
// "KEY<TAB>VALUE" lines (a line without a TAB is a key with an empty
// value; blank lines and lines starting with "#" are skipped). The source
// may be a file or a directory whose files are read in lexical order. The
// database is written beside its final name and renamed into place, so a
// filter never sees half of it. Postern's databases are bbolt files, not
// GDBM: makedat is how an existing text source moves over.
//
//	makedat -src=FILE|DIR -file=DB [-tmp=TMPFILE] [-cidr]
func MakedatMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("makedat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("src", "", "text source: a file or a directory")
	file := fs.String("file", "", "the database to write")
	tmp := fs.String("tmp", "", "temporary file (default: FILE.tmp)")
	fs.Bool("cidr", false, "accepted for compatibility (keys are stored as written)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: makedat -src=FILE|DIR -file=DB [-tmp=TMPFILE]\n\nBuilds a gdbmfetch database from KEY<TAB>VALUE lines. See docs/rules.md.")
		fs.PrintDefaults()
	}
	if err := cliflags.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 64
	}
	if *src == "" || *file == "" {
		fs.Usage()
		return 64
	}
	if *tmp == "" {
		*tmp = *file + ".tmp"
	}
	n, err := makedat(*src, *file, *tmp)
	if err != nil {
		fmt.Fprintf(stderr, "makedat: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "makedat: %d keys written to %s\n", n, *file)
	return 0
}

func makedat(src, file, tmp string) (int, error) {
	files := []string{src}
	if st, err := os.Stat(src); err != nil {
		return 0, err
	} else if st.IsDir() {
		entries, err := os.ReadDir(src)
		if err != nil {
			return 0, err
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), "~") {
				files = append(files, filepath.Join(src, e.Name()))
			}
		}
		sort.Strings(files)
	}
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	n := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(gdbmBucket))
		if err != nil {
			return err
		}
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			line := 0
			for sc.Scan() {
				line++
				text := strings.TrimRight(sc.Text(), "\r")
				if text == "" || strings.HasPrefix(text, "#") {
					continue
				}
				key, value, _ := strings.Cut(text, "\t")
				if key == "" {
					fh.Close()
					return fmt.Errorf("%s:%d: empty key", f, line)
				}
				if err := b.Put([]byte(key), []byte(value)); err != nil {
					fh.Close()
					return fmt.Errorf("%s:%d: %w", f, line, err)
				}
				n++
			}
			err = sc.Err()
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s:%d: %w", f, line+1, err)
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	return n, os.Rename(tmp, file)
}
