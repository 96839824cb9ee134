//go:build !linux

package waitingroom

import (
	"context"
	"errors"
)

// poller is Linux's epoll; elsewhere every socket is read by its own
// goroutine (readLoop).
type poller struct{}

func newPoller() (*poller, error)     { return nil, errors.New("no epoll on this system") }
func (p *poller) add(*Conn) bool      { return false }
func (p *poller) remove(*Conn)        {}
func (p *poller) run(context.Context) {}
