package dmarc

import "math/rand/v2"

// randIntN is the default pct= sampler; math/rand/v2's top-level functions
// are safe for concurrent use.
func randIntN(n int) int { return rand.IntN(n) }
