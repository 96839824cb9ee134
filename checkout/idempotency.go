package checkout

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// Idempotency-Key replies live this long.
const idemTTL = 24 * time.Hour

// idemInflightTTL bounds a claim whose holder died mid-request.
const idemInflightTTL = 30 * time.Second

// maxIdemKey bounds an Idempotency-Key (the orders column is 255 bytes).
const maxIdemKey = 255

// checkIdemKey refuses a key MySQL could not keep: too long, or not UTF-8
// text (it would fail the order's write and cost a compensation each time).
func checkIdemKey(key string) error {
	switch {
	case len(key) > maxIdemKey:
		return api.Invalid("Idempotency-Key: at most %d bytes", maxIdemKey)
	case !utf8.ValidString(key):
		return api.Invalid("Idempotency-Key: must be UTF-8 text")
	}
	return nil
}

var (
	errIdemMismatch = api.Errorf(http.StatusUnprocessableEntity, "idempotency_mismatch",
		"this Idempotency-Key was used with another request body")
	errIdemInProgress = api.Errorf(http.StatusConflict, "idempotency_in_progress",
		"a request with this Idempotency-Key is still in progress")
)

//go:embed idem.lua
var idemLua string

var idemScript = sale.NewScript(idemLua)

// storedReply is what Redis keeps for a key: a claim while in flight, then
// the answer, byte for byte, with the hash of the body that got it.
type storedReply struct {
	State  string `json:"s"` // "inflight" or "done"
	Hash   string `json:"h"`
	Token  string `json:"t,omitempty"` // a claim's owner`
	Status int    `json:"c,omitempty"`
	Body   []byte `json:"b,omitempty"`
}

// idempotency claims and stores replies for one (sale, user, key).
type idempotency struct {
	rdb   redis.UniversalClient
	key   string
	hash  string
	claim []byte // this request's claim, once taken
}

func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// claim takes the key, or returns the reply to replay (or an error for a
// mismatch or a request in flight).
func (i *idempotency) take(ctx context.Context) (*storedReply, error) {
	claim, _ := json.Marshal(storedReply{State: "inflight", Hash: i.hash, Token: lockToken()})
	old, err := i.rdb.SetArgs(ctx, i.key, claim, redis.SetArgs{Mode: "NX", Get: true, TTL: idemInflightTTL}).Result()
	if errors.Is(err, redis.Nil) {
		i.claim = claim
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
	i.put(ctx, nil, 0)
}

// put replaces this request's claim with reply (nil drops it), unless the
// claim is no longer this request's.
func (i *idempotency) put(ctx context.Context, reply []byte, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	idemScript.Run(ctx, i.rdb, []string{i.key}, i.claim, reply, ttl.Milliseconds()) //nolint:errcheck // the claim expires by itself
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
	i.put(ctx, b, idemTTL)
}
