//go:build !linux

package main

import (
	"errors"
	"time"
)

// pollReader is Linux's (epoll); elsewhere use --reader goroutine.
type pollReader struct{}

func newPollReader(string, string, string) (*pollReader, error) {
	return nil, errors.New("the poll reader needs Linux (epoll): use --reader goroutine")
}

func (*pollReader) dial(string, time.Duration) (*sock, error) { return nil, errors.ErrUnsupported }
func (*pollReader) close()                                    {}
