package waitingroom

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

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
		var res []redis.XStream
		var err error
		if _, cluster := h.rdb.(*redis.ClusterClient); cluster {
			res, err = h.readEach(ctx, streams)
		} else {
			res, err = h.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: 1000, Block: h.cfg.EventBlock}).Result()
		}
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

// clusterPoll is how often readEach asks again when no stream had news.
const clusterPoll = 50 * time.Millisecond

// readEach is XREAD on Redis Cluster, where one command may only name
// streams of one slot (every sale has its own): one non-blocking XREAD per
// stream, all in one pipeline (go-redis sends each master its own), and,
// when none had news, a pause of clusterPoll (or until a new sale is
// tracked). streams is XREAD's list: the keys, then their ids.
func (h *Hub) readEach(ctx context.Context, streams []string) ([]redis.XStream, error) {
	n := len(streams) / 2
	cmds := make([]*redis.XStreamSliceCmd, n)
	pipe := h.rdb.Pipeline()
	for i := range n {
		cmds[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{streams[i], streams[n+i]}, Count: 1000, Block: -1})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []redis.XStream
	for _, c := range cmds {
		out = append(out, c.Val()...)
	}
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-h.wakeUp:
		case <-time.After(clusterPoll):
		}
	}
	return out, nil
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
	case "msg":
		at := time.UnixMilli(0)
		if ms, err := strconv.ParseInt(field(m, "at"), 10, 64); err == nil && ms > 0 {
			at = time.UnixMilli(ms)
		} else if ms, err := strconv.ParseInt(m.ID[:max(strings.IndexByte(m.ID, '-'), 0)], 10, 64); err == nil {
			at = time.UnixMilli(ms) // cleared: the time of the clearing
		}
		frame := messageFrame(data, at) // encoded once for every socket
		h.mu.Lock()
		if t := h.sales[saleID]; t != nil {
			t.msg = frame
		}
		h.mu.Unlock()
		for _, c := range h.saleConns(saleID) {
			c.Send(frame)
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
