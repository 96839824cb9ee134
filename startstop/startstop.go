// Package startstop gives background loops one Start/Stop shape: Start runs
// the loop in a goroutine until its context ends or Stop is called; Stop
// waits for it to return and is safe to call twice, or before Start.
package startstop

import (
	"context"
	"sync"
	"time"
)

// Loop is embedded by every background service.
type Loop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Go starts run once; a second Go while running is a no-op.
func (l *Loop) Go(ctx context.Context, run func(ctx context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	done := l.done
	go func() {
		defer close(done)
		run(ctx)
	}()
}

// Stop cancels the loop and waits for it to return.
func (l *Loop) Stop() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	l.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Jobs runs background jobs that must outlive the request or tick that
// starts them (a compensation, a rebuild, a sale's finish): at most one at
// a time per key, each on the owner's context with its own timeout, never
// on a request's. Close cancels them and waits, so an owner that closes its
// stores after Close never pulls them from under a job.
type Jobs struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	running map[string]bool
	closed  bool
	wg      sync.WaitGroup
}

// NewJobs returns an empty job set.
func NewJobs() *Jobs {
	ctx, cancel := context.WithCancel(context.Background())
	return &Jobs{ctx: ctx, cancel: cancel, running: map[string]bool{}}
}

// Go starts fn in its own goroutine unless a job of the same key is running
// or the set is closed; it reports whether fn started. fn's context ends
// after timeout or at Close. Keys must come from a bounded set (sale ids of
// existing sales, ids of orders in flight), never straight from a client.
func (j *Jobs) Go(key string, timeout time.Duration, fn func(ctx context.Context)) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || j.running[key] {
		return false
	}
	j.running[key] = true
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer func() {
			j.mu.Lock()
			delete(j.running, key)
			j.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(j.ctx, timeout)
		defer cancel()
		fn(ctx)
	}()
	return true
}

// Running reports how many jobs run now.
func (j *Jobs) Running() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.running)
}

// Close cancels every job and waits for them to return; Go starts nothing
// after it. It is safe to call twice.
func (j *Jobs) Close() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
}
