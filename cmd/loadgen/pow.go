package main

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"hash"
	"math/bits"
	"strconv"
)

// powPrefix is the nonce's fixed head. A challenge is 52 characters, so
// challenge + ":" + these 11 digits fill SHA-256's first block exactly: the
// solver hashes that block once and each try costs one block (the waiting
// page's worker does the same).
const powPrefix = "10000000000"

// solvePoW finds a decimal nonce such that SHA-256(challenge + ":" + nonce)
// starts with difficulty zero bits, the way a native client would (one
// core). It answers the nonce and the number of tries it took, so a caller
// can price the solve in one core's time. It gives up after maxTries.
func solvePoW(challenge string, difficulty int, maxTries uint64) (nonce string, tries uint64, err error) {
	head := challenge + ":" + powPrefix
	base := sha256.New()
	base.Write([]byte(head))
	var mid []byte
	if len(head)%sha256.BlockSize == 0 {
		// Keep the state after the whole blocks; each try restores it.
		if mid, err = base.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return "", 0, err
		}
	}
	h := sha256.New()
	var num, sum []byte
	for tries = 1; tries <= maxTries; tries++ {
		num = strconv.AppendUint(num[:0], tries, 10)
		if mid != nil {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(mid); err != nil {
				return "", 0, err
			}
		} else {
			h.Reset()
			h.Write([]byte(head))
		}
		h.Write(num)
		sum = h.Sum(sum[:0])
		if leadingZeroBits(sum) >= difficulty {
			return powPrefix + string(num), tries, nil
		}
	}
	return "", tries, errors.New("no proof-of-work nonce found within the tries allowed")
}

// leadingZeroBits counts the zero bits at the head of b.
func leadingZeroBits(b []byte) int {
	n := 0
	for _, c := range b {
		if c != 0 {
			return n + bits.LeadingZeros8(c)
		}
		n += 8
	}
	return n
}

var _ hash.Hash = sha256.New()
