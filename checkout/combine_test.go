package checkout

// Tests of the checkout's CPU savings that need no store: the combiner that
// sends concurrent Redis steps together, the checkout body's fast path and
// the order's JSON without a map. (Package checkout, not checkout_test: they
// reach unexported code, and need no testenv, which imports this package.)

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
)

// TestCombinerBatches: calls made while batches are on their way go out
// together, each gets its own outcome, at most maxInflight batches are out
// at once and none has more than maxCombined calls.
func TestCombinerBatches(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var inflight, maxSeen, batches, biggest atomic.Int64
	c := newCombiner(func(batch []*combined[int]) {
		defer inflight.Add(-1)
		atomicMax(&maxSeen, inflight.Add(1))
		atomicMax(&biggest, int64(len(batch)))
		batches.Add(1)
		<-release
		for _, x := range batch {
			if x.call%7 == 0 {
				x.err = errForTest(x.call)
			} else {
				x.err = nil
			}
		}
	})
	const calls = 3*maxCombined + 10
	errs := make([]error, calls)
	var wg sync.WaitGroup
	// the first maxInflight calls go out alone and wait for release; the
	// others queue behind them
	for i := range maxInflight {
		wg.Go(func() { errs[i] = c.do(i) })
	}
	require.Eventually(t, func() bool { return inflight.Load() == maxInflight }, 5*time.Second, time.Millisecond)
	for i := maxInflight; i < calls; i++ {
		wg.Go(func() { errs[i] = c.do(i) })
	}
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue) == calls-maxInflight
	}, 5*time.Second, time.Millisecond, "the rest queue while both batches are out")
	close(release)
	wg.Wait()
	for i, err := range errs {
		if i%7 == 0 {
			require.Equal(t, errForTest(i), err, "call %d", i)
		} else {
			require.NoError(t, err, "call %d", i)
		}
	}
	require.EqualValues(t, maxInflight, maxSeen.Load(), "never more batches out at once")
	// 2 alone, then the queue of calls-2 in batches of maxCombined at most
	require.EqualValues(t, maxInflight+(calls-maxInflight+maxCombined-1)/maxCombined, batches.Load())
	require.EqualValues(t, maxCombined, biggest.Load(), "full batches, none bigger")
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Zero(t, c.inflight, "nothing left in flight")
	require.Empty(t, c.queue)
}

func atomicMax(m *atomic.Int64, n int64) {
	for {
		old := m.Load()
		if n <= old || m.CompareAndSwap(old, n) {
			return
		}
	}
}

type errForTest int

func (e errForTest) Error() string { return "call failed" }

// TestCombinerSendPanics: a send that panics leaves no caller waiting: the
// other callers of its batch get errNotCombined, the queue moves on.
func TestCombinerSendPanics(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var first atomic.Bool
	c := newCombiner(func(batch []*combined[int]) {
		if first.CompareAndSwap(false, true) {
			<-release
			panic("send failed")
		}
		for _, x := range batch {
			x.err = nil
		}
	})
	var wg sync.WaitGroup
	panicked := make(chan any, 1)
	wg.Go(func() {
		defer func() { panicked <- recover() }()
		_ = c.do(0)
	})
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.inflight == 1
	}, 5*time.Second, time.Millisecond)
	// a second batch of one goes out and comes back while the first hangs
	require.NoError(t, c.do(1))
	close(release)
	wg.Wait()
	require.Equal(t, "send failed", <-panicked)
	require.NoError(t, c.do(2), "the combiner still works")
}

// TestQuantityFastPath: every body gives what api.Decode makes of it, the
// usual one without it.
func TestQuantityFastPath(t *testing.T) {
	t.Parallel()
	slow := func(raw []byte) (int, error) {
		var req struct {
			Quantity *int `json:"quantity"`
		}
		if err := api.Decode(raw, &req, true); err != nil {
			return 0, err
		}
		if req.Quantity == nil {
			return 1, nil
		}
		return *req.Quantity, nil
	}
	for _, body := range []string{``, ` `, `{}`, `{"quantity":1}`, `{"quantity":2}`, `{"quantity":123456789}`,
		`{"quantity":1234567890}`, `{"quantity":0}`, `{"quantity":01}`, `{"quantity":-1}`, `{"quantity":1.5}`,
		`{"quantity":1e2}`, `{"quantity":"1"}`, `{"quantity":}`, `{"quantity":1 }`, `{"quantity": 1}`,
		`{"quantity":1}x`, `{"quantity":1}}`, `{"quantity":1,"x":2}`, `{"quantity":null}`, `{"Quantity":1}`,
		`{"quantity":99999999999999999999}`, `[1]`, `{"quantity":1` + "\n}", `{"quantity":1}` + "\n"} {
		wantQ, wantErr := slow([]byte(body))
		q, err := quantity([]byte(body))
		require.Equal(t, wantQ, q, "body %q", body)
		require.Equal(t, wantErr, err, "body %q", body)
	}
}

// TestOrderMarshal: the order's JSON made from a struct is byte for byte
// what json.Marshal makes of Order.JSON's map (the contract's shape).
func TestOrderMarshal(t *testing.T) {
	t.Parallel()
	hold := time.Date(2026, 12, 3, 18, 0, 5, 123e6, time.UTC)
	for _, o := range []*Order{
		{ID: "ord_abc", SaleID: "phone-drop", UserID: "alice", Quantity: 1, AmountCents: 79900, Currency: "EUR",
			Status: StatusPaid, CreatedAt: time.Date(2026, 12, 3, 18, 0, 0, 999e6, time.UTC)},
		{ID: "ord_def", SaleID: "s", UserID: `auth0|<b>&"é"` + "\u2028", Quantity: 2, Status: StatusHeld,
			HoldExpiresAt: &hold, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))},
		{ID: "ord_zero", HoldExpiresAt: &time.Time{}},
	} {
		want, err := json.Marshal(o.JSON())
		require.NoError(t, err)
		require.Equal(t, string(want), string(o.marshal()))
		require.True(t, strings.HasPrefix(string(want), `{"amount_cents":`))
	}
}
