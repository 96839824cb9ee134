package waitingroom

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// posSent is what a socket's last position frame said: the next frame is
// sent only when it would say something else. Compared as fields rather
// than as the frame's bytes, so a socket keeps no copy of its last frame
// and the tick encodes only the frames it sends.
type posSent struct {
	pos, queueLen, eta  int64 // eta -1: null
	paused, allReserved bool
	startsAt            string // "" when the frame has none
	set                 bool   // a position frame was sent
}

// pushPositions sends each waiting socket its position when it changed. A
// position never goes up.
func (h *Hub) pushPositions(s *sale.Sale, tab *rankTable, eta func(int64) *int64, conns []*Conn, now time.Time) {
	started := tab.state != string(sale.Upcoming)
	var startsAt *string
	if !started {
		startsAt = api.TimePtr(&s.StartsAt) // one string, shared by every frame of the tick
	}
	paused := tab.state == string(sale.Paused)
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
			Paused: paused, AllReserved: tab.allReserved, PollAfter: pollAfter, StartsAt: startsAt}
		next := posSent{pos: pos, queueLen: p.QueueLength, eta: -1, paused: paused, allReserved: p.AllReserved, set: true}
		if p.ETASeconds != nil {
			next.eta = *p.ETASeconds
		}
		if startsAt != nil {
			next.startsAt = *startsAt
		}
		if next != c.sent {
			c.lastPos, c.sent = pos, next
			// Sent under pmu: an event that ends the wait (admitted,
			// expired, order) sets the kind under pmu before its frame,
			// so no position frame can be queued after it.
			// (the pool's tick lane: an event's frames do not wait behind
			// a tick's 19,000)
			c.send(appendPosition(make([]byte, 0, positionFrameSize), &p), laneTick)
		}
		c.pmu.Unlock()
	}
}

// rankTable is the leader's sample of the queue: score at rank.
type rankTable struct {
	queueLen    int64
	advance     int64
	state       string
	hdrState    string // the state the table was published with (state may be an event's since)
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
	t := &rankTable{state: hdr[3], hdrState: hdr[3], allReserved: hdr[4] == "1", gen: hdr[5], restoring: hdr[6] == "1"}
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
