package waitingroom

// WithoutPoller has the hub read every socket with a goroutine of its own,
// as where there is no epoll; call it before Start.
func (h *Hub) WithoutPoller() { h.noPoll = true }
