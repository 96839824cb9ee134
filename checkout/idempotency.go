package checkout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// Idempotency-Key replies live this long.
const idemTTL = 24 * time.Hour

// idemInflightTTL bounds a claim whose holder died mid-request.
const idemInflightTTL = 30 * time.Second

// maxIdemKey bounds an Idempotency-Key (the orders column is 255).
const maxIdemKey = 255

var (
	errIdemMismatch = api.Errorf(http.StatusUnprocessableEntity, "idempotency_mismatch",
		"this Idempotency-Key was used with another request body")
	errIdemInProgress = api.Errorf(http.StatusConflict, "idempotency_in_progress",
		"a request with this Idempotency-Key is still in progress")
)

// storedReply is what Redis keeps for a key: a claim while in flight, then
// the answer, byte for byte, with the hash of the body that got it.
type storedReply struct {
	State  string `json:"s"` // "inflight" or "done"
	Hash   string `json:"h"`
	Status int    `json:"c,omitempty"`
	Body   []byte `json:"b,omitempty"`
}

// idempotency claims and stores replies for one (sale, user, key).
type idempotency struct {
	rdb  redis.UniversalClient
	key  string
	hash string
}

func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// claim takes the key, or returns the reply to replay (or an error for a
// mismatch or a request in flight).
func (i *idempotency) claim(ctx context.Context) (*storedReply, error) {
	claim, _ := json.Marshal(storedReply{State: "inflight", Hash: i.hash})
	old, err := i.rdb.SetArgs(ctx, i.key, claim, redis.SetArgs{Mode: "NX", Get: true, TTL: idemInflightTTL}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil // claimed
	}
	if err != nil {
		return nil, &sale.StoreError{Store: "Redis", Err: err}
	}
	var prev storedReply
	if err := json.Unmarshal([]byte(old), &prev); err != nil {
		return nil, errIdemInProgress
	}
	switch {
	case prev.Hash != i.hash:
		return nil, errIdemMismatch
	case prev.State != "done":
		return nil, errIdemInProgress
	}
	return &prev, nil
}

// release drops the claim without an answer, so the next request with the
// key runs again.
func (i *idempotency) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	i.rdb.Del(ctx, i.key)
}

// store keeps a final answer; 5xx answers are never stored (the claim is
// dropped so a retry runs again).
func (i *idempotency) store(ctx context.Context, status int, body []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if status >= 500 {
		i.release(ctx)
		return
	}
	b, _ := json.Marshal(storedReply{State: "done", Hash: i.hash, Status: status, Body: body})
	i.rdb.Set(ctx, i.key, b, idemTTL)
}
