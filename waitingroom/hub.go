package waitingroom

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
	"github.com/flashsale/flashsale/ticket"
)

//go:embed presence.lua
var presenceLua string

var presenceScript = sale.NewScript(presenceLua)

// numShards splits the hub's maps so fan-out and joins rarely contend.
const numShards = 64

// HubConfig configures a node's hub. Zero values mean the defaults.
type HubConfig struct {
	// Tick is how often the node writes presence and pushes positions;
	// default 1 s (at most 1 s).
	Tick time.Duration
	// EventBlock is how long one stream read waits; default 250 ms.
	EventBlock time.Duration
	Logger     *slog.Logger
	Metrics    *Metrics
	// SocketLimits bound the shopper sockets (pings, writes, per user).
	SocketLimits
}

// Hub holds this node's shopper sockets. It reads every tracked sale's event
// stream (admissions, expiries, state changes, orders) and pushes frames to
// the sockets it concerns, and once a tick writes the presence of all its
// sockets and pushes positions computed from the sale's rank table: a fixed
// number of Redis calls per tick, however many sockets.
type Hub struct {
	cfg    HubConfig
	rdb    redis.UniversalClient
	keys   sale.Keyspace
	store  *sale.Store
	issuer *ticket.Issuer

	shards [numShards]hubShard

	mu     sync.Mutex
	sales  map[string]*saleTrack // sales this node follows
	wakeUp chan struct{}

	startstop.Loop
}

type hubShard struct {
	mu     sync.RWMutex
	bySale map[string]map[*Conn]struct{}
	byUser map[string]map[*Conn]struct{} // key: sale + "\x00" + user
}

// saleTrack is what the node knows of one sale it follows.
type saleTrack struct {
	lastID  string    // last event stream id read
	touched time.Time // last socket or request
	table   *rankTable
	advance []advSample // head advance samples, for the ETA
	gen     string      // the generation of the sale's keys this node last saw
}

type advSample struct {
	at  time.Time
	adv int64
}

// NewHub returns a hub; Start runs its loops.
func NewHub(cfg HubConfig, rdb redis.UniversalClient, store *sale.Store, issuer *ticket.Issuer) *Hub {
	if cfg.Tick <= 0 || cfg.Tick > time.Second {
		cfg.Tick = time.Second
	}
	if cfg.EventBlock <= 0 {
		cfg.EventBlock = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.SocketLimits = cfg.SocketLimits.withDefaults()
	h := &Hub{cfg: cfg, rdb: rdb, keys: store.Keys, store: store, issuer: issuer,
		sales: map[string]*saleTrack{}, wakeUp: make(chan struct{}, 1)}
	for i := range h.shards {
		h.shards[i].bySale = map[string]map[*Conn]struct{}{}
		h.shards[i].byUser = map[string]map[*Conn]struct{}{}
	}
	return h
}

// Start runs the event reader and the tick until ctx ends or Stop.
func (h *Hub) Start(ctx context.Context) {
	h.Go(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { h.readEvents(ctx) })
		wg.Go(func() { h.tickLoop(ctx) })
		wg.Wait()
	})
}

// CloseAll closes every socket with code (going away on shutdown).
func (h *Hub) CloseAll(code int, reason string) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		var conns []*Conn
		for _, set := range sh.bySale {
			for c := range set {
				conns = append(conns, c)
			}
		}
		sh.mu.RUnlock()
		for _, c := range conns {
			c.Close(code, reason)
		}
	}
}

// Count is the number of sockets this node holds.
func (h *Hub) Count() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, set := range sh.bySale {
			n += len(set)
		}
		sh.mu.RUnlock()
	}
	return n
}

func userKey(saleID, user string) string { return saleID + "\x00" + user }

func (h *Hub) shard(saleID, user string) *hubShard {
	f := fnv.New32a()
	f.Write([]byte(saleID))
	f.Write([]byte{0})
	f.Write([]byte(user))
	return &h.shards[f.Sum32()%numShards]
}

func (h *Hub) add(c *Conn) {
	sh := h.shard(c.sale, c.user)
	sh.mu.Lock()
	if sh.bySale[c.sale] == nil {
		sh.bySale[c.sale] = map[*Conn]struct{}{}
	}
	sh.bySale[c.sale][c] = struct{}{}
	k := userKey(c.sale, c.user)
	if sh.byUser[k] == nil {
		sh.byUser[k] = map[*Conn]struct{}{}
	}
	// at most MaxUserSockets open per user: the oldest make room
	replaced := oldestOpen(sh.byUser[k], h.cfg.MaxUserSockets)
	sh.byUser[k][c] = struct{}{}
	sh.mu.Unlock()
	for _, old := range replaced {
		h.dropped("replaced")
		old.Close(CloseReplaced, replacedReason)
	}
	if m := h.cfg.Metrics; m != nil {
		m.Sockets.Inc()
	}
}

func (h *Hub) remove(c *Conn) {
	sh := h.shard(c.sale, c.user)
	sh.mu.Lock()
	if set := sh.bySale[c.sale]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(sh.bySale, c.sale)
		}
	}
	k := userKey(c.sale, c.user)
	if set := sh.byUser[k]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(sh.byUser, k)
		}
	}
	sh.mu.Unlock()
	if m := h.cfg.Metrics; m != nil {
		m.Sockets.Dec()
	}
}

// userConns lists the sockets of one user in one sale.
func (h *Hub) userConns(saleID, user string) []*Conn {
	sh := h.shard(saleID, user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	set := sh.byUser[userKey(saleID, user)]
	out := make([]*Conn, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	return out
}

// saleConns lists every socket of a sale.
func (h *Hub) saleConns(saleID string) []*Conn {
	var out []*Conn
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for c := range sh.bySale[saleID] {
			out = append(out, c)
		}
		sh.mu.RUnlock()
	}
	return out
}

// SendUser pushes a frame to every socket of a user on this node.
func (h *Hub) SendUser(saleID, user string, frame []byte) {
	for _, c := range h.userConns(saleID, user) {
		c.Send(frame)
	}
}

func (h *Hub) dropped(reason string) {
	if m := h.cfg.Metrics; m != nil {
		m.SocketsDropped.WithLabelValues(reason).Inc()
	}
}

func (h *Hub) framesSent() {
	if m := h.cfg.Metrics; m != nil {
		m.FramesSent.Inc()
	}
}

// track makes the node follow a sale's events from now on. The start id is
// read before the caller reads the user's state, so no event after that
// read is missed.
func (h *Hub) track(ctx context.Context, saleID string) error {
	h.mu.Lock()
	t := h.sales[saleID]
	if t != nil {
		t.touched = time.Now()
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	// the generation of the sale's keys too, so a loss before this node's
	// first tick is noticed (see requeue)
	k := h.keys.Sale(saleID)
	var last *redis.XMessageSliceCmd
	var gen *redis.StringCmd
	err := sale.ExecPipeline(ctx, h.rdb, func(pipe redis.Pipeliner) {
		last = pipe.XRevRangeN(ctx, k.Ev, "+", "-", 1)
		gen = pipe.HGet(ctx, k.Cfg, "gen")
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return storeErr(err)
	}
	tr := &saleTrack{lastID: "0-0", touched: time.Now(), gen: gen.Val()}
	if msgs := last.Val(); len(msgs) == 1 {
		tr.lastID = msgs[0].ID
	}
	h.mu.Lock()
	if h.sales[saleID] == nil {
		h.sales[saleID] = tr
	}
	h.mu.Unlock()
	select { // let the reader pick the new stream up now
	case h.wakeUp <- struct{}{}:
	default:
	}
	return nil
}

// trackedIDs lists the followed sales, forgetting those idle for a while.
func (h *Hub) trackedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.sales))
	for id, t := range h.sales {
		if time.Since(t.touched) > 2*time.Minute && len(h.saleConns(id)) == 0 {
			delete(h.sales, id)
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// readEvents reads the followed sales' streams from their last ids, so no
// event is lost across a reconnect, and dispatches them.
func (h *Hub) readEvents(ctx context.Context) {
	for ctx.Err() == nil {
		ids := h.trackedIDs()
		if len(ids) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-h.wakeUp:
			case <-time.After(h.cfg.EventBlock):
			}
			continue
		}
		streams := make([]string, 0, 2*len(ids))
		h.mu.Lock()
		for _, id := range ids {
			streams = append(streams, h.keys.Sale(id).Ev)
		}
		for _, id := range ids {
			streams = append(streams, h.sales[id].lastID)
		}
		h.mu.Unlock()
		res, err := h.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: 1000, Block: h.cfg.EventBlock}).Result()
		if err != nil && err != redis.Nil {
			if ctx.Err() != nil {
				return
			}
			h.cfg.Logger.Warn("hub: read events", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for _, st := range res {
			saleID := saleOfStream(st.Stream)
			for _, m := range st.Messages {
				h.dispatch(ctx, saleID, m)
			}
			if n := len(st.Messages); n > 0 {
				h.mu.Lock()
				if t := h.sales[saleID]; t != nil {
					t.lastID = st.Messages[n-1].ID
				}
				h.mu.Unlock()
			}
		}
	}
}

// saleOfStream takes the sale id out of "prefix:{sale}:ev".
func saleOfStream(key string) string {
	i := strings.IndexByte(key, '{')
	j := strings.LastIndexByte(key, '}')
	if i < 0 || j < i {
		return ""
	}
	return key[i+1 : j]
}

func field(m redis.XMessage, k string) string {
	s, _ := m.Values[k].(string)
	return s
}

func (h *Hub) dispatch(ctx context.Context, saleID string, m redis.XMessage) {
	user, data := field(m, "u"), field(m, "d")
	switch field(m, "t") {
	case "adm":
		conns := h.userConns(saleID, user)
		if len(conns) == 0 {
			return
		}
		f := strings.Split(data, "|")
		if len(f) != 3 {
			return
		}
		iat, _ := strconv.ParseInt(f[1], 10, 64)
		exp, _ := strconv.ParseInt(f[2], 10, 64)
		frame := mustJSON(Admitted{Type: KindAdmitted,
			Ticket:          h.issuer.Ticket(ticket.Admission{Sale: saleID, User: user, JTI: f[0], IssuedAt: iat, ExpiresAt: exp}),
			TicketExpiresAt: api.Time(time.Unix(exp, 0))})
		for _, c := range conns {
			c.setState(KindAdmitted, 0)
			c.Send(frame)
		}
	case "exp":
		for _, c := range h.userConns(saleID, user) {
			c.setState(KindExpired, 0)
			c.Send(typeFrame(KindExpired))
		}
	case "order":
		for _, c := range h.userConns(saleID, user) {
			c.setState(KindPurchased, 0)
			c.Send([]byte(`{"type":"order","order":` + data + `}`))
		}
	case "state":
		frame := typeFrame(data)
		final := sale.State(data).Final()
		for _, c := range h.saleConns(saleID) {
			c.Send(frame)
			if final {
				c.Close(CloseFinal, data)
			}
		}
		h.mu.Lock()
		if t := h.sales[saleID]; t != nil && t.table != nil {
			// until the next table. A copy: a tick may still be reading the
			// table it took (pushPositions runs outside h.mu).
			tab := *t.table
			tab.state = data
			t.table = &tab
		}
		h.mu.Unlock()
	}
}

// tickLoop writes presence and pushes positions once a tick.
func (h *Hub) tickLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.tick(ctx)
		}
	}
}

// presenceChunk bounds the users of one presence call (Lua's stack).
const presenceChunk = 1000

func (h *Hub) tick(ctx context.Context) {
	ids := h.trackedIDs()
	if len(ids) == 0 {
		return
	}
	rankCmds := make([]*redis.StringCmd, len(ids))
	connsBySale := make([][]*Conn, len(ids))
	for i, id := range ids {
		connsBySale[i] = h.saleConns(id)
	}
	err := sale.ExecPipeline(ctx, h.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := h.keys.Sale(id)
			users := make([]any, 0, len(connsBySale[i]))
			for _, c := range connsBySale[i] {
				if _, ok := c.waiting(); ok {
					users = append(users, c.user)
				}
			}
			for len(users) > 0 {
				n := min(len(users), presenceChunk)
				presenceScript.Run(ctx, pipe, []string{k.Seen}, users[:n]...)
				users = users[n:]
			}
			rankCmds[i] = pipe.Get(ctx, k.Ranks)
		}
	})
	if err != nil && err != redis.Nil && ctx.Err() == nil {
		h.cfg.Logger.Warn("hub: tick", "err", err)
	}
	now := time.Now()
	for i, id := range ids {
		tab, err := parseRankTable(rankCmds[i].Val())
		if err != nil {
			if errors.Is(rankCmds[i].Err(), redis.Nil) && len(connsBySale[i]) > 0 {
				// No table: no leader, or Redis lost the sale (even from the
				// set the admitters walk). Reading the sale writes its live
				// copy back if it is missing, so a leader comes and the
				// waiters here are put back, even if no request comes.
				_, _ = h.store.Get(ctx, id)
			}
			continue
		}
		h.mu.Lock()
		tr := h.sales[id]
		var eta func(pos int64) *int64
		lost := ""
		if tr != nil {
			if tr.gen == "" {
				tr.gen = tab.gen
			} else if tab.gen != tr.gen {
				lost = tr.gen
				tr.advance = nil // the head's counters started again with the keys
			}
			tr.table = tab
			tr.advance = append(tr.advance, advSample{at: now, adv: tab.advance})
			for len(tr.advance) > 1 && now.Sub(tr.advance[0].at) > time.Minute {
				tr.advance = tr.advance[1:]
			}
			eta = etaFunc(tr.advance, tab.state)
		}
		h.mu.Unlock()
		if lost != "" {
			h.requeue(ctx, id, lost, tab.gen, connsBySale[i])
		}
		// A table made before every node put its waiters back would show
		// them positions too low, and a position never goes back up.
		if eta == nil || len(connsBySale[i]) == 0 || lost != "" || tab.restoring {
			continue
		}
		s, err := h.store.Cached(ctx, id, time.Second)
		if err != nil {
			continue
		}
		h.pushPositions(s, tab, eta, connsBySale[i], now)
	}
}

// requeue puts back the waiters this node holds in a sale whose keys Redis
// lost (the generation changed from lost to gen), at the places it knows,
// in one script call per thousand sockets. Until it succeeds the node keeps
// the old generation, so the next tick tries again.
func (h *Hub) requeue(ctx context.Context, saleID, lost, gen string, conns []*Conn) {
	var waiting []*Conn
	var args []any
	for _, c := range conns {
		if place, ok := c.waiting(); ok && place > 0 {
			waiting = append(waiting, c)
			args = append(args, opRequeue, c.user, strconv.FormatFloat(place, 'f', 0, 64)+"|"+lost)
		}
	}
	keys := queueKeys(h.keys.Sale(saleID))
	back := 0
	for len(waiting) > 0 {
		n := min(len(waiting), presenceChunk)
		states, err := parseJoinReply(joinScript.Run(ctx, h.rdb, keys, args[:3*n]...))
		if err == nil && len(states) != n {
			err = fmt.Errorf("join script: %d replies for %d users", len(states), n)
		}
		if err != nil {
			if ctx.Err() == nil {
				h.cfg.Logger.Warn("hub: put back waiters after a Redis loss", "sale", saleID, "err", err)
			}
			return
		}
		for j, st := range states {
			if st.Kind == KindWaiting || st.Kind == KindLane || st.Kind == KindPrequeue {
				back++
			}
			waiting[j].setState(st.Kind, st.Place)
		}
		waiting, args = waiting[n:], args[3*n:]
	}
	h.mu.Lock()
	if tr := h.sales[saleID]; tr != nil {
		tr.gen = gen
	}
	h.mu.Unlock()
	h.cfg.Logger.Warn("hub: Redis lost the sale's keys; put back the waiters this node holds",
		"sale", saleID, "waiters", back)
}

// pushPositions sends each waiting socket its position when it changed. A
// position never goes up.
func (h *Hub) pushPositions(s *sale.Sale, tab *rankTable, eta func(int64) *int64, conns []*Conn, now time.Time) {
	started := tab.state != string(sale.Upcoming)
	for _, c := range conns {
		c.pmu.Lock()
		kind, place, last := c.kind, c.place, c.lastPos
		if kind == KindPrequeue && started {
			kind = KindWaiting
			c.kind = kind
		}
		if kind != KindWaiting && kind != KindLane {
			c.pmu.Unlock()
			continue
		}
		pos := tab.position(place)
		if last > 0 && pos > last {
			pos = last
		}
		p := Position{Type: "position", Position: pos, QueueLength: tab.queueLen, ETASeconds: eta(pos),
			Paused: tab.state == string(sale.Paused), AllReserved: tab.allReserved, PollAfter: pollAfter}
		if tab.state == string(sale.Upcoming) {
			p.StartsAt = api.TimePtr(&s.StartsAt)
		}
		frame := mustJSON(p)
		if string(frame) != c.lastSent {
			c.lastPos, c.lastSent = pos, string(frame)
			// Sent under pmu: an event that ends the wait (admitted,
			// expired, order) sets the kind under pmu before its frame,
			// so no position frame can be queued after it.
			c.Send(frame)
		}
		c.pmu.Unlock()
	}
}

// ETA returns the node's estimate for a position in a sale it follows.
func (h *Hub) ETA(saleID string, pos int64) *int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.sales[saleID]
	if t == nil || t.table == nil {
		return nil
	}
	return etaFunc(t.advance, t.table.state)(pos)
}

// etaFunc estimates seconds to the head: position ÷ the head's advance
// (admitted + skipped per second) over the last minute; nil while paused or
// not yet measurable.
func etaFunc(samples []advSample, state string) func(int64) *int64 {
	none := func(int64) *int64 { return nil }
	if state == string(sale.Paused) || len(samples) < 2 {
		return none
	}
	first, last := samples[0], samples[len(samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 2 || last.adv <= first.adv {
		return none
	}
	rate := float64(last.adv-first.adv) / dt
	return func(pos int64) *int64 {
		v := int64(math.Ceil(float64(pos) / rate))
		return &v
	}
}

// rankTable is the leader's sample of the queue: score at rank.
type rankTable struct {
	queueLen    int64
	advance     int64
	state       string
	allReserved bool
	gen         string
	restoring   bool // waiters are being put back after a Redis loss
	ranks       []int64
	scores      []float64
}

func parseRankTable(s string) (*rankTable, error) {
	if s == "" {
		return nil, redis.Nil
	}
	lines := strings.Split(s, "\n")
	hdr := strings.Split(lines[0], "|")
	if len(hdr) < 7 {
		return nil, redis.Nil
	}
	t := &rankTable{state: hdr[3], allReserved: hdr[4] == "1", gen: hdr[5], restoring: hdr[6] == "1"}
	t.queueLen, _ = strconv.ParseInt(hdr[1], 10, 64)
	t.advance, _ = strconv.ParseInt(hdr[2], 10, 64)
	t.ranks = make([]int64, 0, len(lines)-1)
	t.scores = make([]float64, 0, len(lines)-1)
	for _, l := range lines[1:] {
		r, sc, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		ri, err1 := strconv.ParseInt(r, 10, 64)
		sf, err2 := strconv.ParseFloat(sc, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		t.ranks = append(t.ranks, ri)
		t.scores = append(t.scores, sf)
	}
	return t, nil
}

// position estimates 1 + the entries ahead of a place: exact where every
// rank is sampled (the first 100), interpolated between samples beyond.
func (t *rankTable) position(place float64) int64 {
	n := len(t.scores)
	if n == 0 {
		return 1
	}
	// i: the first sample with a score above place
	i := sort.SearchFloat64s(t.scores, place)
	if i < n && t.scores[i] == place {
		return t.ranks[i] + 1
	}
	if i == 0 {
		return 1 // ahead of the head: the lane, or admitted next
	}
	lo := i - 1
	if i == n {
		return t.ranks[n-1] + 2
	}
	r0, r1 := t.ranks[lo], t.ranks[i]
	if r1-r0 <= 1 {
		return r0 + 2
	}
	frac := (place - t.scores[lo]) / (t.scores[i] - t.scores[lo])
	r := r0 + 1 + int64(frac*float64(r1-r0-1))
	return r + 1
}
