// Package startstop gives background loops one Start/Stop shape: Start runs
// the loop in a goroutine until its context ends or Stop is called; Stop
// waits for it to return and is safe to call twice, or before Start.
package startstop

import (
	"context"
	"sync"
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
