package waitingroom

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
	"github.com/flashsale/flashsale/ticket"
)

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

	// poll reads the node's sockets while the hub runs (nil: none, each
	// socket is read by a goroutine); noPoll: never (a test's)
	poll   atomic.Pointer[poller]
	noPoll bool
	// writers write the polled sockets' frames while the hub runs
	writers writerPool

	startstop.Loop
}

type hubShard struct {
	mu     sync.RWMutex
	bySale map[string]map[*Conn]struct{}
	// byUser: key sale + "\x00" + user; a slice, not a set: a user has a
	// few sockets at most (MaxUserSockets), and a slice of one costs a
	// fraction of a map of one, per socket of the node
	byUser map[string][]*Conn
}

// saleTrack is what the node knows of one sale it follows.
type saleTrack struct {
	lastID  string    // last event stream id read
	touched time.Time // last socket or request
	table   *rankTable
	advance []advSample // head advance samples, for the ETA
	gen     string      // the generation of the sale's keys this node last saw
	// eventAhead is when a tick first found the table's state set by a
	// state event while the tables read still showed the one before (zero:
	// none); see tick
	eventAhead time.Time
	// msg is the last message frame read from the stream (nil: none read
	// yet), fresher than a cached copy of the sale for a new socket
	msg []byte
}

// lastMessage is the message frame a new socket of the sale gets after its
// first frame: the newest the hub read from the stream, else the one of
// the sale as the caller read it; nil when there is none.
func (h *Hub) lastMessage(s *sale.Sale) []byte {
	h.mu.Lock()
	t := h.sales[s.ID]
	var msg []byte
	if t != nil {
		msg = t.msg
	}
	h.mu.Unlock()
	if msg != nil {
		if m := (MessageFrame{}); json.Unmarshal(msg, &m) == nil && m.Text == "" {
			return nil // cleared
		}
		return msg
	}
	if s.Message != nil {
		return messageFrame(s.Message.Text, s.Message.At)
	}
	return nil
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
		h.shards[i].byUser = map[string][]*Conn{}
	}
	return h
}

// Start runs the event reader, the tick, the pinger and the sockets'
// poller until ctx ends or Stop.
func (h *Hub) Start(ctx context.Context) {
	h.Go(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { h.readEvents(ctx) })
		wg.Go(func() { h.tickLoop(ctx) })
		wg.Go(func() { h.pingLoop(ctx) })
		// a worker per core: a broadcast's writes are system calls, each
		// worker's on its own core
		wg.Go(func() { h.writers.run(ctx, h, runtime.GOMAXPROCS(0)) })
		if !h.noPoll {
			if p, err := newPoller(); err != nil {
				h.cfg.Logger.Info("hub: sockets are read by a goroutine each", "why", err)
			} else {
				h.poll.Store(p)
				wg.Go(func() {
					p.run(ctx)
					h.poll.CompareAndSwap(p, nil)
				})
			}
		}
		wg.Wait()
	})
}

// watch has the socket read: by the poller while the hub runs, else by a
// goroutine of its own.
func (h *Hub) watch(c *Conn) {
	if p := h.poll.Load(); p != nil && p.add(c) {
		return
	}
	go c.readLoop()
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
	// at most MaxUserSockets open per user: the oldest make room
	replaced := oldestOpen(sh.byUser[k], h.cfg.MaxUserSockets)
	sh.byUser[k] = append(sh.byUser[k], c)
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
	if conns := slices.DeleteFunc(sh.byUser[k], func(o *Conn) bool { return o == c }); len(conns) > 0 {
		sh.byUser[k] = conns
	} else {
		delete(sh.byUser, k)
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
	return slices.Clone(sh.byUser[userKey(saleID, user)])
}

// allConns lists every socket of the node.
func (h *Hub) allConns() []*Conn {
	var out []*Conn
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, set := range sh.bySale {
			for c := range set {
				out = append(out, c)
			}
		}
		sh.mu.RUnlock()
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

func (h *Hub) framesSent(n int) {
	if m := h.cfg.Metrics; m != nil && n > 0 {
		m.FramesSent.Add(float64(n))
	}
}
