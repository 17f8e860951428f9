package mailbot

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var repliedBucket = []byte("replied")

// recentlyAnswered is -d/-D: it reports whether sender was answered less
// than days ago and, if not, records now as the time of this answer. The
// database is a bbolt file (FILE.db); bbolt's own file lock serialises
// concurrent deliveries, waiting at most lockWait.
func recentlyAnswered(path, sender string, days int, now time.Time, lockWait time.Duration) (bool, error) {
	db, err := bolt.Open(path+".db", 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		return false, fmt.Errorf("mailbot: reply database %s.db: %w", path, err)
	}
	defer db.Close()
	key := []byte(strings.ToLower(sender))
	recent := false
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(repliedBucket)
		if err != nil {
			return err
		}
		if v := b.Get(key); len(v) == 8 {
			last := time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
			if !last.Before(now.Add(-time.Duration(days) * 24 * time.Hour)) {
				recent = true
				return nil
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(now.Unix()))
		return b.Put(key, v[:])
	})
	if err != nil {
		return false, fmt.Errorf("mailbot: reply database %s.db: %w", path, err)
	}
	return recent, nil
}
