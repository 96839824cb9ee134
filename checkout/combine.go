package checkout

import (
	"errors"
	"sync"
)

// combiner sends the Redis steps of concurrent checkouts together. A call
// joins the queue; when fewer than maxInflight batches are on their way,
// its caller takes the queue (its own call among it) and sends it as one
// batch; else it waits, and when a batch comes back its sender hands what
// queued meanwhile to one of those callers to send. So a busy node makes
// one round trip (and Redis one script call per sale) for many checkouts,
// while a lone checkout goes out at once. It has no goroutine of its own:
// the callers take turns, so there is nothing to start or stop.
type combiner[C any] struct {
	// send runs one batch and sets every call's outcome.
	send func(batch []*combined[C])

	mu       sync.Mutex
	queue    []*combined[C]
	inflight int
}

// combined is one call in a combiner.
type combined[C any] struct {
	call C
	err  error
	// lead, set before done is closed, is a batch this call's caller is to
	// send (its own call first); nil: the call has its outcome.
	lead []*combined[C]
	done chan struct{}
}

const (
	// maxInflight bounds the batches on their way at once: two, so the
	// next batch is already in Redis's buffer while it runs one.
	maxInflight = 2
	// maxCombined bounds the calls of one batch, and so how long one
	// script call keeps Redis busy (about 10 µs an order).
	maxCombined = 128
)

// errNotCombined is the outcome of a call whose batch failed before it
// reached Redis (send did not get to it).
var errNotCombined = errors.New("the Redis step was not sent")

func newCombiner[C any](send func(batch []*combined[C])) *combiner[C] {
	return &combiner[C]{send: send}
}

// do runs call in a batch and returns its error (send sets the rest of the
// outcome in call itself).
func (b *combiner[C]) do(call C) error {
	me := &combined[C]{call: call, err: errNotCombined, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, me)
	var batch []*combined[C]
	if b.inflight < maxInflight {
		b.inflight++
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if batch == nil {
		<-me.done
		if me.lead == nil {
			return me.err
		}
		batch = me.lead
	}
	b.run(batch, me)
	return me.err
}

// takeLocked takes up to maxCombined calls off the queue.
func (b *combiner[C]) takeLocked() []*combined[C] {
	n := min(len(b.queue), maxCombined)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the old array go
	}
	return batch
}

// run sends a batch, then hands on what queued meanwhile and wakes the
// batch's other callers (even when send panics: none may wait for ever).
func (b *combiner[C]) run(batch []*combined[C], me *combined[C]) {
	defer func() {
		b.mu.Lock()
		b.inflight--
		var next [][]*combined[C]
		for len(b.queue) > 0 && b.inflight < maxInflight {
			b.inflight++
			next = append(next, b.takeLocked())
		}
		b.mu.Unlock()
		for _, n := range next {
			n[0].lead = n
			close(n[0].done)
		}
		for _, c := range batch {
			if c != me {
				close(c.done)
			}
		}
	}()
	b.send(batch)
}
