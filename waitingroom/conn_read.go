package waitingroom

import (
	"encoding/binary"
	"time"

	"github.com/gorilla/websocket"
)

// clientFrames reads what a client sends on a polled socket (see poller):
// the bytes come from whichever read found them, in any split, and this
// keeps where the socket is between two reads. A client has nothing to
// say: data messages (up to maxClientMessage) are dropped, a ping is
// answered with a pong, a pong only shows the client lives, a close is
// answered with a close. It checks what gorilla's reader checks (RFC 6455):
// client frames masked, no reserved bits or opcodes, control frames whole
// and at most 125 bytes, continuations only inside a message.
type clientFrames struct {
	hdr       [14]byte // the frame header read so far
	nhdr      uint8
	op        uint8 // the current frame's opcode
	inMsg     bool  // a fragmented data message goes on
	remain    int64 // payload bytes of the current frame still to come
	msgLen    int64 // bytes of the current data message so far
	mask      [4]byte
	maskPos   uint8
	ctl       []byte // the current control frame's payload (unmasked)
	inPayload bool
}

// readVerdict is what the bytes read call for.
type readVerdict struct {
	close  int // close the socket with this code (0: nothing to do)
	reason string
	ping   []byte // answer a ping with this pong payload (non-nil: a ping)
	done   bool   // the client closed: answered, nothing more to read
}

// feed reads b; it stops at the first frame that calls for something (a
// ping to answer, a close) and returns how much of b it used.
func (f *clientFrames) feed(b []byte) (used int, v readVerdict) {
	for used < len(b) {
		if !f.inPayload {
			n, ok, bad := f.header(b[used:])
			used += n
			if bad.close != 0 {
				return used, bad
			}
			if !ok {
				return used, v // the header goes on in the next read
			}
			if f.remain > 0 {
				f.inPayload = true
				continue
			}
		} else {
			n := int(min(f.remain, int64(len(b)-used)))
			if f.op >= 8 {
				for _, c := range b[used : used+n] {
					f.ctl = append(f.ctl, c^f.mask[f.maskPos&3])
					f.maskPos++
				}
			}
			used += n
			f.remain -= int64(n)
			if f.remain > 0 {
				return used, v
			}
			f.inPayload = false
		}
		if v = f.frameDone(); v.close != 0 || v.ping != nil || v.done {
			return used, v
		}
	}
	return used, v
}

// header takes header bytes from b; ok once the whole header is in and
// checked.
func (f *clientFrames) header(b []byte) (used int, ok bool, v readVerdict) {
	need := 2
	for {
		if int(f.nhdr) < need {
			k := copy(f.hdr[f.nhdr:need], b[used:])
			f.nhdr += uint8(k)
			used += k
			if int(f.nhdr) < need {
				return used, false, v
			}
		}
		if need > 2 {
			break
		}
		if f.hdr[0]&0x70 != 0 || f.hdr[1]&0x80 == 0 {
			// reserved bits (no extension was agreed), or an unmasked
			// client frame: refused before its length is read
			f.nhdr = 0
			return used, false, readVerdict{close: websocket.CloseProtocolError, reason: "protocol error"}
		}
		switch f.hdr[1] & 0x7f {
		case 126:
			need = 2 + 2 + 4
		case 127:
			need = 2 + 8 + 4
		default:
			need = 2 + 4
		}
	}
	b0, b1 := f.hdr[0], f.hdr[1]
	fin, op := b0&0x80 != 0, b0&0x0f
	var n int64
	switch b1 & 0x7f {
	case 126:
		n = int64(binary.BigEndian.Uint16(f.hdr[2:4]))
	case 127:
		n = int64(binary.BigEndian.Uint64(f.hdr[2:10]) & (1<<63 - 1))
	default:
		n = int64(b1 & 0x7f)
	}
	copy(f.mask[:], f.hdr[need-4:need])
	f.nhdr, f.maskPos, f.op, f.remain, f.ctl = 0, 0, op, n, f.ctl[:0]
	protocol := readVerdict{close: websocket.CloseProtocolError, reason: "protocol error"}
	switch {
	case op >= 8: // close, ping, pong
		if op > 10 || !fin || n > 125 {
			return used, false, protocol
		}
	case op == 0: // a continuation
		if !f.inMsg {
			return used, false, protocol
		}
	case op == 1 || op == 2: // text, binary
		if f.inMsg {
			return used, false, protocol
		}
		f.msgLen = 0
	default:
		return used, false, protocol
	}
	if op < 8 {
		f.inMsg = !fin
		f.msgLen += n
		if f.msgLen > maxClientMessage {
			return used, false, readVerdict{close: websocket.CloseMessageTooBig, reason: "message too big"}
		}
	}
	return used, true, v
}

// frameDone acts on a whole frame.
func (f *clientFrames) frameDone() readVerdict {
	switch f.op {
	case websocket.PingMessage:
		return readVerdict{ping: append([]byte{}, f.ctl...)}
	case websocket.CloseMessage:
		// answered with its code, as gorilla answers (none: an empty close)
		code := websocket.CloseNoStatusReceived
		if len(f.ctl) >= 2 {
			code = int(binary.BigEndian.Uint16(f.ctl))
		}
		return readVerdict{close: code, done: true}
	}
	return readVerdict{}
}

// seen records that the client was heard from: the pinger ends a polled
// socket silent for PingInterval + PongWait.
func (c *Conn) seen(now time.Time) { c.lastSeen.Store(now.UnixNano()) }
