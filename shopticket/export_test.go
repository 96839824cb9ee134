package shopticket

import "time"

// NewWithClock is New on a clock the test moves (expiry and the pace of
// unknown-kid fetches without waiting).
func NewWithClock(cfg Config, now func() time.Time) (*Verifier, error) { return newWithClock(cfg, now) }

// ParseJWKS exposes the JWKS parser to the bounds tests.
var ParseJWKS = parseJWKS

// MaxJWKSBytes is the bound on a JWKS answer.
const MaxJWKSBytes = maxJWKSBytes
