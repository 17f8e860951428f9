package state

import (
	"fmt"
	"time"
)

// checkKey refuses keys both stores must refuse alike.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("state: key of %d bytes (want 1..%d): %w", len(key), MaxKeyLen, ErrInvalid)
	}
	return nil
}

func checkValue(value []byte) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("state: value of %d bytes (max %d): %w", len(value), MaxValueLen, ErrInvalid)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("state: negative ttl %v: %w", ttl, ErrInvalid)
	}
	return nil
}
