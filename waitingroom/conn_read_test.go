package waitingroom

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// clientFrame builds a frame as a client sends it: masked (unless
// unmasked), with fin and opcode given whole in b0.
func clientFrame(b0 byte, payload []byte, unmasked bool) []byte {
	out := []byte{b0}
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n < 1<<16:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

const (
	fin    = 0x80
	opText = 0x1
	opBin  = 0x2
	opCont = 0x0
)

// feedAll feeds b in pieces of at most step bytes (as reads may split it)
// and returns the verdicts that call for something, in order.
func feedAll(f *clientFrames, b []byte, step int) []readVerdict {
	var out []readVerdict
	for len(b) > 0 {
		piece := b[:min(step, len(b))]
		b = b[len(piece):]
		for len(piece) > 0 {
			used, v := f.feed(piece)
			piece = piece[used:]
			if v.close != 0 || v.ping != nil || v.done {
				out = append(out, v)
				if v.close != 0 {
					return out
				}
			}
		}
	}
	return out
}

// TestClientFrames: what a polled socket reads from its client, in any
// split, is taken as gorilla's reader takes it: pongs and messages up to
// 4 KiB (also fragmented) pass, a ping is answered, a close is echoed, and
// a bigger message or a frame RFC 6455 forbids closes the socket.
func TestClientFrames(t *testing.T) {
	t.Parallel()
	text := func(n int) []byte { return []byte(strings.Repeat("a", n)) }
	cat := func(frames ...[]byte) []byte {
		return []byte(strings.Join(func() []string {
			s := make([]string, len(frames))
			for i, f := range frames {
				s[i] = string(f)
			}
			return s
		}(), ""))
	}
	protocol := []readVerdict{{close: websocket.CloseProtocolError, reason: "protocol error"}}
	tooBig := []readVerdict{{close: websocket.CloseMessageTooBig, reason: "message too big"}}
	cases := []struct {
		name  string
		bytes []byte
		want  []readVerdict
	}{
		{"an empty pong", clientFrame(fin|websocket.PongMessage, nil, false), nil},
		{"a pong with data", clientFrame(fin|websocket.PongMessage, []byte("x"), false), nil},
		{"a ping", clientFrame(fin|websocket.PingMessage, []byte("hello"), false), []readVerdict{{ping: []byte("hello")}}},
		{"an empty ping", clientFrame(fin|websocket.PingMessage, nil, false), []readVerdict{{ping: []byte{}}}},
		{"4 KiB of text", clientFrame(fin|opText, text(4096), false), nil},
		{"4 KiB + 1 of text", clientFrame(fin|opText, text(4097), false), tooBig},
		{"a 70 KiB binary message (64-bit length)", clientFrame(fin|opBin, text(70_000), false), tooBig},
		{"4 KiB in three fragments, a ping between", cat(clientFrame(opText, text(2000), false),
			clientFrame(fin|websocket.PingMessage, []byte("p"), false), clientFrame(opCont, text(2000), false),
			clientFrame(fin|opCont, text(96), false)), []readVerdict{{ping: []byte("p")}}},
		{"4 KiB + 1 in fragments", cat(clientFrame(opText, text(4000), false), clientFrame(fin|opCont, text(97), false)), tooBig},
		{"two messages of 4 KiB", cat(clientFrame(fin|opText, text(4096), false), clientFrame(fin|opBin, text(4096), false)), nil},
		{"a close with a code", cat(clientFrame(fin|websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), false),
			clientFrame(fin|opText, text(1), false)), []readVerdict{{close: 1000, done: true}}},
		{"a close without one", clientFrame(fin|websocket.CloseMessage, nil, false), []readVerdict{{close: websocket.CloseNoStatusReceived, done: true}}},
		{"an unmasked frame", clientFrame(fin|opText, text(3), true), protocol},
		{"a reserved bit", clientFrame(fin|0x40|opText, text(3), false), protocol},
		{"a reserved opcode", clientFrame(fin|0x3, text(3), false), protocol},
		{"a reserved control opcode", clientFrame(fin|0xb, nil, false), protocol},
		{"a continuation with no message", clientFrame(fin|opCont, text(3), false), protocol},
		{"a new message inside one", cat(clientFrame(opText, text(3), false), clientFrame(fin|opText, text(3), false)), protocol},
		{"a fragmented ping", clientFrame(websocket.PingMessage, nil, false), protocol},
		{"a ping of 126 bytes", clientFrame(fin|websocket.PingMessage, text(126), false), protocol},
	}
	for _, tc := range cases {
		for _, step := range []int{1, 3, 7, 4096, len(tc.bytes)} {
			var f clientFrames
			got := feedAll(&f, tc.bytes, step)
			require.Equal(t, tc.want, got, "%s, read %d bytes at a time", tc.name, step)
		}
	}
}

// TestAppendPosition: the hand-written position frame is byte for byte
// what encoding/json writes, for any field values.
func TestAppendPosition(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "2026-12-01T18:00:00Z", `a"b\c`, "<&>", "\u2028 é \x01", "\xff"}
	for range 2000 {
		p := Position{Position: r.Int64N(1e7) - 10, QueueLength: r.Int64N(1e9), Paused: r.IntN(2) == 0,
			AllReserved: r.IntN(2) == 0, PollAfter: r.IntN(5)}
		if r.IntN(2) == 0 {
			p.Type = "position"
		}
		if r.IntN(4) == 0 {
			p.State = strs[r.IntN(len(strs))]
		}
		if r.IntN(2) == 0 {
			eta := r.Int64N(1e6) - 1
			p.ETASeconds = &eta
		}
		if r.IntN(2) == 0 {
			s := strs[r.IntN(len(strs))]
			p.StartsAt = &s
		}
		if r.IntN(4) == 0 {
			p.QueueToken = strs[r.IntN(len(strs))]
		}
		want, err := json.Marshal(p)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendPosition(nil, &p)))
	}
}
