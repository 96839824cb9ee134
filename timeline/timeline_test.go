package timeline_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/timeline"
)

type env struct {
	rdb   *redis.Client
	sales *sale.Store
}

func setup(t *testing.T) *env {
	t.Helper()
	rdb, ks := testdb.Redis(t)
	_, db := testdb.MySQL(t)
	return &env{rdb: rdb, sales: sale.NewStore(db, rdb, ks)}
}

// newSale creates a sale (MySQL row and live copy) with the rate.
func (e *env) newSale(t *testing.T, rate float64) string {
	t.Helper()
	id := "tl-" + testdb.RandomID()
	name, cur, price, stock := "Timeline", "EUR", int64(100), 5
	req := sale.CreateRequest{ID: &id, Name: &name, Currency: &cur, PriceCents: &price, Stock: &stock, AdmissionRate: &rate}
	s, err := req.Build(time.Now())
	require.NoError(t, err)
	require.NoError(t, e.sales.Create(context.Background(), s))
	return id
}

func (e *env) sampler(t *testing.T, store *timeline.Store) *timeline.Sampler {
	t.Helper()
	s := timeline.NewSampler(timeline.SamplerConfig{Tick: 50 * time.Millisecond}, store, e.sales)
	t.Cleanup(s.Stop)
	return s
}

// TestTwoSamplersOneSamplePerSecond: two samplers on one sale (two
// admitter nodes) write one sample per second between them: every second
// at most once, in order, and no second lost while they run.
func TestTwoSamplersOneSamplePerSecond(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.newSale(t, 10)
	store := timeline.NewStore(timeline.Config{}, e.rdb, e.sales.Keys)
	a, b := e.sampler(t, store), e.sampler(t, store)
	ctx := context.Background()
	a.Start(ctx)
	b.Start(ctx)
	require.Eventually(t, func() bool {
		n, err := e.rdb.ZCard(ctx, store.Keys(id).Fine).Result()
		return err == nil && n >= 5
	}, 20*time.Second, 50*time.Millisecond)
	a.Stop()
	b.Stop()
	a.Stop() // safe twice

	recs, err := e.rdb.ZRangeWithScores(ctx, store.Keys(id).Fine, 0, -1).Result()
	require.NoError(t, err)
	series, err := store.Read(ctx, id, 0, 1)
	require.NoError(t, err)
	require.Len(t, series.Samples, len(recs), "every record reads back")
	for i, s := range series.Samples {
		require.EqualValues(t, recs[i].Score, s.T)
		if i > 0 {
			require.Greater(t, s.T, series.Samples[i-1].T, "one sample per second: %v", series.Samples)
		}
	}
	first, last := series.Samples[0].T, series.Samples[len(series.Samples)-1].T
	require.EqualValues(t, last-first+1, len(series.Samples), "no second missed between the first and the last")
	s := series.Samples[0]
	require.Equal(t, sale.Open, s.State)
	require.EqualValues(t, 5, s.Remaining)
	require.EqualValues(t, 10, s.AdmissionRate)
	require.True(t, s.Consistent)
	require.InDelta(t, time.Now().Unix(), last, 5)
}

// TestClaimOncePerSecond: many samplers asking at the same moment get each
// second once (the claim is one Lua step on Redis's clock).
func TestClaimOncePerSecond(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.newSale(t, 10)
	store := timeline.NewStore(timeline.Config{}, e.rdb, e.sales.Keys)
	ctx := context.Background()
	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 5 {
				sec, err := store.Claim(ctx, id)
				if err != nil {
					t.Error(err)
					return
				}
				if sec != 0 {
					mu.Lock()
					got[sec]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.NotEmpty(t, got)
	for sec, n := range got {
		require.Equal(t, 1, n, "second %d claimed %d times", sec, n)
	}
	// and the samplers write what they claim, once
	a, b := e.sampler(t, store), e.sampler(t, store)
	require.Eventually(t, func() bool { return a.SampleOnce(ctx, []string{id})+b.SampleOnce(ctx, []string{id}) == 1 },
		10*time.Second, 20*time.Millisecond)
	n, err := e.rdb.ZCard(ctx, store.Keys(id).Fine).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestBounded: the per-second series keeps its window, the per-minute one
// its cap, the marks theirs, and every key expires after the retention.
func TestBounded(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.newSale(t, 10)
	cfg := timeline.Config{FineWindow: 10 * time.Second, CoarseStep: 5 * time.Second, CoarseCap: 4, MarksCap: 3,
		Retention: time.Hour}
	store := timeline.NewStore(cfg, e.rdb, e.sales.Keys)
	ctx := context.Background()
	const start = 1_000_000
	for sec := int64(start); sec < start+100; sec++ {
		rate := float64(10 + (sec/7)%2) // changes every 7 s
		require.NoError(t, store.Write(ctx, id, timeline.Sample{T: sec, State: sale.Open, Remaining: sec, AdmissionRate: rate}))
	}
	k := store.Keys(id)
	fine, err := e.rdb.ZRangeWithScores(ctx, k.Fine, 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, fine, 11, "seconds last-10 .. last")
	require.EqualValues(t, start+89, fine[0].Score)
	coarse, err := e.rdb.ZRangeWithScores(ctx, k.Coarse, 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, coarse, 4)
	require.Equal(t, []float64{start + 80, start + 85, start + 90, start + 95},
		[]float64{coarse[0].Score, coarse[1].Score, coarse[2].Score, coarse[3].Score}, "the first sample of each 5 s")
	require.EqualValues(t, 3, e.rdb.ZCard(ctx, k.Marks).Val())
	for _, key := range k.All() {
		ttl := e.rdb.PTTL(ctx, key).Val()
		require.True(t, ttl > 59*time.Minute && ttl <= time.Hour, "%s expires after the retention: %v", key, ttl)
	}

	// Read: the coarse samples before the window, then every second.
	series, err := store.Read(ctx, id, 0, 1)
	require.NoError(t, err)
	require.Len(t, series.Samples, 2+11)
	require.EqualValues(t, start+80, series.Samples[0].T)
	require.EqualValues(t, start+85, series.Samples[1].T)
	require.EqualValues(t, start+89, series.Samples[2].T)
	require.EqualValues(t, start+89, series.Samples[2].Remaining)
	require.Len(t, series.Marks, 3)
	require.Equal(t, timeline.Mark{T: start + 97, Field: "admission_rate", From: 10.0, To: 11.0}, series.Marks[2])
	// since, and thinning by step (the newest sample always kept)
	series, err = store.Read(ctx, id, start+95, 1)
	require.NoError(t, err)
	require.Len(t, series.Samples, 5)
	series, err = store.Read(ctx, id, start+89, 4)
	require.NoError(t, err)
	var ts []int64
	for _, s := range series.Samples {
		ts = append(ts, s.T)
	}
	require.Equal(t, []int64{start + 89, start + 93, start + 97, start + 99}, ts)

	require.NoError(t, store.Remove(ctx, id))
	require.Zero(t, e.rdb.Exists(ctx, k.All()...).Val())
}

// TestRateChangeMarked: an operator's PATCH of the rate (and a pause) shows
// in the series, as the samples' rate and as marks.
func TestRateChangeMarked(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.newSale(t, 10)
	store := timeline.NewStore(timeline.Config{}, e.rdb, e.sales.Keys)
	s := e.sampler(t, store)
	ctx := context.Background()
	s.Start(ctx)
	read := func() *timeline.Series {
		series, err := store.Read(ctx, id, 0, 1)
		require.NoError(t, err)
		return series
	}
	require.Eventually(t, func() bool { return len(read().Samples) >= 1 }, 10*time.Second, 50*time.Millisecond)

	rate := 25.5
	_, err := e.sales.Patch(ctx, id, &sale.PatchRequest{AdmissionRate: &rate}, time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(read().Marks) == 1 }, 10*time.Second, 50*time.Millisecond)
	paused := "paused"
	_, err = e.sales.Patch(ctx, id, &sale.PatchRequest{State: &paused}, time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(read().Marks) == 2 }, 10*time.Second, 50*time.Millisecond)
	s.Stop()

	series := read()
	m := series.Marks[0]
	require.Equal(t, "admission_rate", m.Field)
	require.Equal(t, 10.0, m.From)
	require.Equal(t, 25.5, m.To)
	require.Equal(t, timeline.Mark{T: series.Marks[1].T, Field: "state", From: "open", To: "paused"}, series.Marks[1])
	for _, smp := range series.Samples {
		switch {
		case smp.T < m.T:
			require.EqualValues(t, 10, smp.AdmissionRate)
		default:
			require.EqualValues(t, 25.5, smp.AdmissionRate)
		}
		if smp.T >= series.Marks[1].T {
			require.Equal(t, sale.Paused, smp.State)
		}
	}
}

// TestRetiredSaleStops: a sale that leaves the working set (the sweeper
// retires final sales) gets no more samples, and its timeline expires on
// its own after the retention; a sale still in the set goes on.
func TestRetiredSaleStops(t *testing.T) {
	t.Parallel()
	e := setup(t)
	retired, live := e.newSale(t, 10), e.newSale(t, 10)
	store := timeline.NewStore(timeline.Config{Retention: time.Minute}, e.rdb, e.sales.Keys)
	s := e.sampler(t, store)
	ctx := context.Background()
	s.Start(ctx)
	count := func(id string) int64 { return e.rdb.ZCard(ctx, store.Keys(id).Fine).Val() }
	require.Eventually(t, func() bool { return count(retired) >= 2 && count(live) >= 2 }, 10*time.Second, 50*time.Millisecond)

	require.NoError(t, e.rdb.SRem(ctx, e.sales.Keys.Sales(), retired).Err())
	// the sampler lists the sales every second: after two more samples of
	// the live sale it has seen the change
	require.Eventually(t, func() bool { return count(live) >= count(retired)+1 }, 10*time.Second, 50*time.Millisecond)
	before, liveBefore := count(retired), count(live)
	require.Eventually(t, func() bool { return count(live) >= liveBefore+3 }, 10*time.Second, 50*time.Millisecond)
	require.LessOrEqual(t, count(retired), before+1, "a retired sale is not sampled")
	k := store.Keys(retired)
	for _, key := range []string{k.Meta, k.Fine, k.Coarse} { // no marks: no rate change
		ttl := e.rdb.PTTL(ctx, key).Val()
		require.True(t, ttl > 0 && ttl <= time.Minute, "%s expires with the retention: %v", key, ttl)
	}
	require.Zero(t, e.rdb.Exists(ctx, k.Marks).Val())
}

// TestHandler: the admin endpoint answers the series, refuses other tokens
// (401), bad parameters (422 naming them) and unknown sales (404).
func TestHandler(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.newSale(t, 10)
	store := timeline.NewStore(timeline.Config{}, e.rdb, e.sales.Keys)
	ctx := context.Background()
	for _, sec := range []int64{100, 101, 102} {
		require.NoError(t, store.Write(ctx, id, timeline.Sample{T: sec, State: sale.Open, QueueLength: sec, AdmissionRate: 10}))
	}
	mux := http.NewServeMux()
	timeline.NewHandler(store, e.sales, nil).Register(mux, api.AdminOnly("admin-tok"))
	srv := httptest.NewServer(api.Routes(mux))
	t.Cleanup(srv.Close)
	get := func(path, token string) (int, map[string]any) {
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m), "%s", b)
		return resp.StatusCode, m
	}
	path := "/api/v1/admin/sales/" + id + "/timeline"

	code, body := get(path, "admin-tok")
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, id, body["sale_id"])
	samples := body["samples"].([]any)
	require.Len(t, samples, 3)
	first := samples[0].(map[string]any)
	require.EqualValues(t, 100, first["t"])
	require.EqualValues(t, 100, first["queue_length"])
	require.Equal(t, "open", first["state"])
	require.EqualValues(t, 10, first["admission_rate"])
	require.Equal(t, []any{}, body["marks"])
	require.InDelta(t, time.Now().Unix(), body["now"], 5)

	code, body = get(path+"?since=102", "admin-tok")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["samples"], 1)

	for _, bad := range []struct{ query, field string }{
		{"?since=-1", "since"}, {"?since=yesterday", "since"}, {"?since=1.5", "since"},
		{"?step=0", "step"}, {"?step=86401", "step"},
	} {
		code, body = get(path+bad.query, "admin-tok")
		require.Equal(t, http.StatusUnprocessableEntity, code, bad.query)
		e := body["error"].(map[string]any)
		require.Equal(t, "invalid_request", e["code"])
		require.Contains(t, e["message"], bad.field+":", bad.query)
	}
	code, body = get(path, "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "unauthorized", body["error"].(map[string]any)["code"])
	code, _ = get(path, "wrong")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = get("/api/v1/admin/sales/no-such-sale/timeline", "admin-tok")
	require.Equal(t, http.StatusNotFound, code, "%v", body)
	require.Equal(t, "not_found", body["error"].(map[string]any)["code"])
}
