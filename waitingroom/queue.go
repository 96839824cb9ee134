package waitingroom

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
	"github.com/flashsale/flashsale/ticket"
)

//go:embed join.lua
var joinLua string

// joinScript carries the rate limits' checks of the joins that bring them
// (Queue.JoinLimited), so a join costs one round trip, not two.
var joinScript = sale.NewScript(ratelimit.GCRALua + "\n" + joinLua)

// Queue operations, as join.lua names them.
const (
	opJoin   = "j"
	opStatus = "s"
	opLeave  = "l"
	// opRequeue is a status that puts a waiter back at a known place
	// after Redis lost the queue (see Hub.requeue).
	opRequeue = "r"
)

// Kinds of a user's state, as join.lua answers them.
const (
	KindPurchased  = "purchased"
	KindAdmitted   = "admitted"
	KindExpired    = "expired"
	KindWaiting    = "waiting"
	KindLane       = "lane" // back from a skip, admitted at the next tick
	KindPrequeue   = "prequeue"
	KindClosed     = "closed"
	KindSoldOut    = "sold_out"
	KindNotOpen    = "not_open"
	KindNotInQueue = "not_in_queue"
	KindLeft       = "left"
	KindRestoring  = "restoring" // Redis lost the queue; nodes are putting it back
	// KindLimited: the rate limits the join carried refused it (Wait µs,
	// Worst the check); nothing else was done.
	KindLimited = "limited"
)

// ErrNoState is a sale whose live state is missing from Redis.
var ErrNoState = errors.New("the sale's live state is missing from Redis")

// UserState is one user's state in one sale.
type UserState struct {
	Kind     string
	Position int64
	QueueLen int64
	Place    float64 // the user's score in the queue
	Gen      string  // the generation of the sale's keys the place is in
	OrderID  string
	JTI      string
	IssuedAt int64
	Expires  int64
	New      bool  // placed in the queue by this join
	Wait     int64 // KindLimited: µs until the request would be allowed
	Worst    int   // KindLimited: which of the request's checks asks it (1-based)
}

// Queue runs join, status and leave. Calls from concurrent requests are
// batched: one script call per sale answers every request waiting for it,
// so a busy node makes far fewer round trips than it serves requests.
type Queue struct {
	rdb  redis.UniversalClient
	keys sale.Keyspace
	reqs chan *queueReq

	startstop.Loop
}

type queueReq struct {
	ctx  context.Context
	sale string
	op   string
	user string
	arg  string // a requeue's "place|gen"
	// limit: the rate checks that ride in the join's own script call
	limit ratelimit.Pending
	done  chan queueRes
}

type queueRes struct {
	st  UserState
	err error
}

// maxBatch bounds the users in one script call.
const maxBatch = 256

// queueWorkers run batches concurrently, so one slow round trip does not
// stall the next batch.
const queueWorkers = 4

// NewQueue returns a Queue; Start runs its batchers.
func NewQueue(rdb redis.UniversalClient, keys sale.Keyspace) *Queue {
	return &Queue{rdb: rdb, keys: keys, reqs: make(chan *queueReq, 4096)}
}

// Start runs the batchers until ctx ends or Stop.
func (q *Queue) Start(ctx context.Context) {
	q.Go(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		for range queueWorkers {
			wg.Go(func() { q.work(ctx) })
		}
		wg.Wait()
	})
}

// Join puts the user in the queue (keeping their place if they are in it).
func (q *Queue) Join(ctx context.Context, saleID, user string) (UserState, error) {
	return q.do(ctx, saleID, opJoin, user)
}

// Limited is a join (opJoin) or a status (opStatus) carrying the rate
// limits' checks of the request (a Pending of a Limiter that is Foldable
// on this Redis server): both in one script call. A refused request gets
// KindLimited (p.Refusal(st.Wait, st.Worst) is its 429) and does nothing
// else.
func (q *Queue) Limited(ctx context.Context, saleID, op, user string, p ratelimit.Pending) (UserState, error) {
	r := &queueReq{ctx: ctx, sale: saleID, op: op, user: user, limit: p, done: make(chan queueRes, 1)}
	return q.send(ctx, r)
}

// JoinLimited is Limited for a join.
func (q *Queue) JoinLimited(ctx context.Context, saleID, user string, p ratelimit.Pending) (UserState, error) {
	return q.Limited(ctx, saleID, opJoin, user, p)
}

// appendOp appends a request to a join.lua call's keys and arguments: its
// triplet and, when it carries rate checks (lim), their keys, after the
// limits they name when the call did not give those last (*params).
func appendOp(keys []string, args []any, params *string, op, user, arg string, lim ratelimit.Pending) ([]string, []any) {
	if lim.Empty() {
		return keys, append(args, op, user, arg)
	}
	if p := lim.Params(); p != *params {
		args = append(args, "p", p, "") // no reply
		*params = p
	}
	// "+": the request's rate checks, their keys next in KEYS
	keys, spec := lim.AppendChecks(keys)
	return keys, append(args, op+"+"+spec, user, arg)
}

// Status reads the user's state; it also refreshes their presence, and
// brings a skipped user back within the return window.
func (q *Queue) Status(ctx context.Context, saleID, user string) (UserState, error) {
	return q.do(ctx, saleID, opStatus, user)
}

// Leave takes the user out of the queue.
func (q *Queue) Leave(ctx context.Context, saleID, user string) (UserState, error) {
	return q.do(ctx, saleID, opLeave, user)
}

// StatusAt is Status for a shopper whose queue token remembers their place:
// if Redis lost the queue since (the generation differs) and they are
// nowhere, they are put back at that place.
func (q *Queue) StatusAt(ctx context.Context, saleID, user string, at ticket.QueuePlace) (UserState, error) {
	if at.Place == "" {
		return q.do(ctx, saleID, opStatus, user)
	}
	return q.do(ctx, saleID, opRequeue, user, at.Place+"|"+at.Gen)
}

func (q *Queue) do(ctx context.Context, saleID, op, user string, arg ...string) (UserState, error) {
	r := &queueReq{ctx: ctx, sale: saleID, op: op, user: user, done: make(chan queueRes, 1)}
	if len(arg) > 0 {
		r.arg = arg[0]
	}
	return q.send(ctx, r)
}

func (q *Queue) send(ctx context.Context, r *queueReq) (UserState, error) {
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		return UserState{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.st, res.err
	case <-ctx.Done():
		return UserState{}, ctx.Err()
	}
}

func (q *Queue) work(ctx context.Context) {
	for {
		var first *queueReq
		select {
		case first = <-q.reqs:
		case <-ctx.Done():
			return
		}
		batch := []*queueReq{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		q.run(ctx, batch)
	}
}

// run answers a batch: one script call per sale, all in one pipeline.
func (q *Queue) run(ctx context.Context, batch []*queueReq) {
	bySale := map[string][]*queueReq{}
	var order []string
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.done <- queueRes{err: r.ctx.Err()}
			continue
		}
		if _, ok := bySale[r.sale]; !ok {
			order = append(order, r.sale)
		}
		bySale[r.sale] = append(bySale[r.sale], r)
	}
	if len(order) == 0 {
		return
	}
	keysBySale := make([][]string, len(order))
	argsBySale := make([][]any, len(order))
	for i, id := range order {
		reqs := bySale[id]
		keys := queueKeys(q.keys.Sale(id))
		args := make([]any, 0, 3*len(reqs)+3)
		params := ""
		for _, r := range reqs {
			arg := r.arg
			if r.op == opJoin {
				arg = randomPlace()
			}
			keys, args = appendOp(keys, args, &params, r.op, r.user, arg, r.limit)
		}
		keysBySale[i], argsBySale[i] = keys, args
	}
	cmds := make([]*redis.Cmd, len(order))
	_ = sale.ExecPipeline(ctx, q.rdb, func(pipe redis.Pipeliner) {
		for i := range order {
			cmds[i] = joinScript.Run(ctx, pipe, keysBySale[i], argsBySale[i]...)
		}
	})
	for i, id := range order {
		reqs := bySale[id]
		results, err := parseJoinReply(cmds[i])
		for j, r := range reqs {
			switch {
			case err != nil:
				r.done <- queueRes{err: err}
			case j >= len(results):
				r.done <- queueRes{err: fmt.Errorf("join script: %d replies for %d users", len(results), len(reqs))}
			default:
				r.done <- queueRes{st: results[j]}
			}
		}
	}
}

func queueKeys(k sale.Keys) []string {
	return []string{k.Cfg, k.Q, k.Lane, k.Seen, k.Skipped, k.Expired, k.Adm, k.Tix, k.Buyers, k.Stats, k.Units}
}

// randomPlace is a uniform 52-bit place from crypto/rand, as a decimal
// string (exact in a Redis score).
func randomPlace() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>12, 10)
}

// parseJoinReply maps join.lua's replies, refusing any shape it does not know.
func parseJoinReply(cmd *redis.Cmd) ([]UserState, error) {
	v, err := cmd.Result()
	if err != nil {
		return nil, storeErr(err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("join script: unexpected reply %T", v)
	}
	if len(list) == 1 {
		if s, ok := list[0].(string); ok && s == "nostate" {
			return nil, ErrNoState
		}
	}
	out := make([]UserState, len(list))
	for i, item := range list {
		f, ok := item.([]any)
		if !ok || len(f) == 0 {
			return nil, fmt.Errorf("join script: unexpected item %v", item)
		}
		st, err := parseUserState(f)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

func parseUserState(f []any) (UserState, error) {
	str := func(i int) string {
		if i < len(f) {
			if s, ok := f[i].(string); ok {
				return s
			}
		}
		return ""
	}
	i64 := func(i int) int64 {
		if i < len(f) {
			switch x := f[i].(type) {
			case int64:
				return x
			case string:
				n, _ := strconv.ParseInt(x, 10, 64)
				return n
			}
		}
		return 0
	}
	st := UserState{Kind: str(0)}
	switch st.Kind {
	case KindPurchased:
		st.OrderID = str(1)
	case KindAdmitted:
		st.JTI, st.IssuedAt, st.Expires = str(1), i64(2), i64(3)
	case KindWaiting, KindLane:
		st.Position, st.QueueLen = i64(1), i64(2)
		st.Place, _ = strconv.ParseFloat(str(3), 64)
		st.Gen = str(4)
		st.New = str(5) == "new"
	case KindPrequeue, KindLeft:
		st.Place, _ = strconv.ParseFloat(str(1), 64)
		st.Gen = str(2)
		st.New = str(3) == "new"
	case KindNotInQueue, KindRestoring:
		st.Gen = str(1)
	case KindLimited:
		st.Wait, st.Worst = i64(1), int(i64(2))
	case KindExpired, KindClosed, KindSoldOut, KindNotOpen:
	default:
		return st, fmt.Errorf("join script: unknown reply %q", st.Kind)
	}
	return st, nil
}

// storeErr wraps a Redis failure as a 503.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return &sale.StoreError{Store: "Redis", Err: err}
}
