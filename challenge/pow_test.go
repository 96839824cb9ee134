package challenge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
)

var testKey = []byte("a test key of 32 bytes, no more.")

// zeroBits counts the leading zero bits of b one bit at a time: written
// apart from leadingZeros, to check it.
func zeroBits(b []byte) int {
	n := 0
	for _, c := range b {
		for i := 7; i >= 0; i-- {
			if c>>i&1 != 0 {
				return n
			}
			n++
		}
	}
	return n
}

// solve finds the smallest decimal nonce that proves the challenge, the
// obvious way a client would.
func solve(t testing.TB, challenge string, difficulty int) string {
	t.Helper()
	for n := 0; n < 1<<30; n++ {
		nonce := strconv.Itoa(n)
		sum := sha256.Sum256([]byte(challenge + ":" + nonce))
		if zeroBits(sum[:]) >= difficulty {
			return nonce
		}
	}
	t.Fatalf("no nonce for %s at difficulty %d", challenge, difficulty)
	return ""
}

// wrongNonce finds a decimal nonce that does not prove the challenge.
func wrongNonce(t testing.TB, challenge string, difficulty int) string {
	t.Helper()
	for n := 0; ; n++ {
		nonce := strconv.Itoa(n)
		sum := sha256.Sum256([]byte(challenge + ":" + nonce))
		if zeroBits(sum[:]) < difficulty {
			return nonce
		}
	}
}

// edit decodes a challenge, lets change alter its bytes and encodes it
// again, as someone tampering with it would.
func edit(t testing.TB, challenge string, change func(b []byte)) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(challenge)
	require.NoError(t, err)
	change(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestPoWSolves(t *testing.T) {
	t.Parallel()
	p := NewPoW(testKey)
	now := time.Now()
	for _, d := range []int{1, 8, 12} {
		c, exp := p.Issue("drop-1", "alice", d, now)
		require.Len(t, c, ChallengeLen)
		require.Regexp(t, `^[A-Za-z0-9_-]{52}$`, c, "URL-safe")
		require.Equal(t, now.Add(Life).UnixMilli(), exp.UnixMilli(), "lives 10 minutes")

		nonce := solve(t, c, d)
		id, gotExp, err := p.Check(c, nonce, "drop-1", "alice", now.Add(Life-time.Millisecond))
		require.NoError(t, err, "difficulty %d nonce %s", d, nonce)
		require.Equal(t, exp, gotExp)
		require.Equal(t, c[12:28], id)
		require.Regexp(t, `^[A-Za-z0-9_-]{16}$`, id)
		// The same proof checked again still passes: single use is Spend's job.
		_, _, err = p.Check(c, nonce, "drop-1", "alice", now)
		require.NoError(t, err)
		// Leading zeros in the nonce are still decimal digits.
		if zeroBits(sumOf(c+":00"+nonce)) >= d {
			_, _, err = p.Check(c, "00"+nonce, "drop-1", "alice", now)
			require.NoError(t, err)
		}
	}
	c1, _ := p.Issue("drop-1", "alice", 8, now)
	c2, _ := p.Issue("drop-1", "alice", 8, now)
	require.NotEqual(t, c1, c2, "each challenge has its own random id")
}

func sumOf(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func TestPoWIssueClampsDifficulty(t *testing.T) {
	t.Parallel()
	p := NewPoW(testKey)
	for give, want := range map[int]byte{-5: 1, 0: 1, 1: 1, 18: 18, 30: 30, 31: 30, 1000: 30} {
		c, _ := p.Issue("s", "u", give, time.Now())
		b, err := base64.RawURLEncoding.DecodeString(c)
		require.NoError(t, err)
		require.Equal(t, want, b[1], "difficulty %d", give)
	}
}

// TestPoWTagIsHMAC checks the hand-built HMAC (two SHA-256 sums of stack
// buffers) against crypto/hmac, for short keys and keys longer than a block.
func TestPoWTagIsHMAC(t *testing.T) {
	t.Parallel()
	for _, key := range [][]byte{{}, []byte("k"), testKey, []byte(strings.Repeat("long key ", 20))} {
		p := NewPoW(key)
		fields := []byte("123456789012345678901")
		for _, ids := range [][2]string{{"", ""}, {"drop", "alice"}, {strings.Repeat("s", 300), strings.Repeat("u", 600)}} {
			m := hmac.New(sha256.New, key)
			m.Write(fields)
			m.Write(binary.AppendUvarint(nil, uint64(len(ids[0]))))
			m.Write([]byte(ids[0] + ids[1]))
			got := p.tag(fields, ids[0], ids[1])
			require.Equal(t, m.Sum(nil), got[:], "key %q ids %q", key, ids)
		}
	}
}

func TestPoWRefuses(t *testing.T) {
	t.Parallel()
	p := NewPoW(testKey)
	now := time.Now()
	const d = 10
	c, exp := p.Issue("drop-1", "alice", d, now)
	good := solve(t, c, d)
	// resolved re-solves a tampered challenge, so that only the tampering
	// is wrong with it, not the proof.
	resolved := func(change func(b []byte)) (string, string) {
		c2 := edit(t, c, change)
		b, _ := base64.RawURLEncoding.DecodeString(c2)
		return c2, solve(t, c2, int(b[1]))
	}
	other, _ := NewPoW([]byte("another node's key")).Issue("drop-1", "alice", d, now)

	type proof struct{ challenge, nonce, sale, user string }
	tests := []struct {
		name string
		give proof
		at   time.Time
		want error
	}{
		{"wrong nonce", proof{c, wrongNonce(t, c, d), "drop-1", "alice"}, now, errWrong},
		{"empty nonce", proof{c, "", "drop-1", "alice"}, now, errNonce},
		{"nonce with a letter", proof{c, good + "a", "drop-1", "alice"}, now, errNonce},
		{"negative nonce", proof{c, "-" + good, "drop-1", "alice"}, now, errNonce},
		{"nonce with a space", proof{c, " " + good, "drop-1", "alice"}, now, errNonce},
		{"nonce with a dot", proof{c, good + ".0", "drop-1", "alice"}, now, errNonce},
		{"nonce in Arabic-Indic digits", proof{c, "١٢", "drop-1", "alice"}, now, errNonce},
		{"nonce of 21 digits", proof{c, strings.Repeat("1", 21), "drop-1", "alice"}, now, errNonce},
		{"megabyte challenge", proof{strings.Repeat("A", 1<<20), good, "drop-1", "alice"}, now, errMalformed},
		{"empty challenge", proof{"", good, "drop-1", "alice"}, now, errMalformed},
		{"challenge with padding", proof{c + "=", good, "drop-1", "alice"}, now, errMalformed},
		{"challenge in the standard alphabet", proof{strings.Repeat("+", ChallengeLen), good, "drop-1", "alice"}, now, errMalformed},
		{"expired", proof{c, good, "drop-1", "alice"}, exp, errExpired},
		{"long expired", proof{c, good, "drop-1", "alice"}, exp.Add(time.Hour), errExpired},
		{"other user", proof{c, good, "drop-1", "bob"}, now, errForeign},
		{"other sale", proof{c, good, "drop-2", "alice"}, now, errForeign},
		{"sale and user split elsewhere", proof{c, good, "drop-1a", "lice"}, now, errForeign},
		{"another key", proof{other, solve(t, other, d), "drop-1", "alice"}, now, errForeign},
	}
	for _, tamper := range []struct {
		name   string
		change func(b []byte)
		want   error
	}{
		{"difficulty lowered", func(b []byte) { b[1] = 1 }, errForeign},
		{"difficulty raised", func(b []byte) { b[1] = d + 1 }, errForeign},
		{"difficulty 0", func(b []byte) { b[1] = 0 }, errMalformed},
		{"difficulty 31", func(b []byte) { b[1] = 31 }, errMalformed},
		{"version", func(b []byte) { b[0] = 2 }, errMalformed},
		{"expiry extended", func(b []byte) { b[8]++ }, errForeign},
		{"id", func(b []byte) { b[15] ^= 1 }, errForeign},
		{"signature", func(b []byte) { b[30] ^= 0x80 }, errForeign},
		{"signature's last byte", func(b []byte) { b[38] ^= 1 }, errForeign},
	} {
		c2, n2 := c, good
		if tamper.want == errForeign {
			c2, n2 = resolved(tamper.change)
		} else {
			c2 = edit(t, c, tamper.change)
		}
		tests = append(tests, struct {
			name string
			give proof
			at   time.Time
			want error
		}{"tampered " + tamper.name, proof{c2, n2, "drop-1", "alice"}, now, tamper.want})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, exp, err := p.Check(tt.give.challenge, tt.give.nonce, tt.give.sale, tt.give.user, tt.at)
			require.ErrorIs(t, err, ErrFailed)
			require.Equal(t, tt.want, err, "the reason")
			require.Empty(t, id)
			require.True(t, exp.IsZero())
			e := api.AsError(err)
			require.Equal(t, http.StatusForbidden, e.Status)
			require.Equal(t, "challenge_failed", e.Code)
			require.Equal(t, err.Error(), e.Message)
		})
	}
	// The untampered proof passes, so each refusal above is the change's doing.
	_, _, err := p.Check(c, good, "drop-1", "alice", now)
	require.NoError(t, err)
}

// TestPoWCheckCostsNoAllocation: a check allocates nothing, passed or
// refused, so a flood of proofs costs the server hashing only; a megabyte
// challenge is refused on its length alone.
func TestPoWCheckCostsNoAllocation(t *testing.T) {
	p := NewPoW(testKey)
	now := time.Now()
	c, _ := p.Issue("drop-1", "alice", 8, now)
	nonce := solve(t, c, 8)
	huge := strings.Repeat("A", 1<<20)
	for name, give := range map[string][2]string{
		"passed":        {c, nonce},
		"wrong nonce":   {c, wrongNonce(t, c, 8)},
		"megabyte":      {huge, nonce},
		"not decimal":   {c, "12x"},
		"not base64url": {strings.Repeat("*", ChallengeLen), nonce},
	} {
		allocs := testing.AllocsPerRun(100, func() { _, _, _ = p.Check(give[0], give[1], "drop-1", "alice", now) })
		require.Zero(t, allocs, name)
	}
}

func TestSpendKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "fs:{drop-1}:pow:AAAAAAAAAAAAAAAA", SpendKey(sale.Keyspace{}, "drop-1", "AAAAAAAAAAAAAAAA"))
	require.Equal(t, "t1:{s}:pow:x", SpendKey(sale.Keyspace{Prefix: "t1"}, "s", "x"))
}

// TestSpendIsSingleUse spends a checked challenge on the real Redis: once,
// with a TTL no longer than the challenge's remaining life; a second spend,
// even by 50 at once, is refused.
func TestSpendIsSingleUse(t *testing.T) {
	t.Parallel()
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	p := NewPoW(testKey)
	issued := time.Now()
	c, _ := p.Issue("drop-1", "alice", 8, issued)
	now := issued.Add(3 * time.Minute) // checked a while after it was issued
	id, exp, err := p.Check(c, solve(t, c, 8), "drop-1", "alice", now)
	require.NoError(t, err)
	key := SpendKey(ks, "drop-1", id)
	remaining := exp.Sub(now)

	require.NoError(t, Spend(ctx, rdb, key, remaining))
	ttl, err := rdb.PTTL(ctx, key).Result()
	require.NoError(t, err)
	require.Positive(t, ttl)
	require.LessOrEqual(t, ttl, remaining, "the key lives no longer than the challenge")
	require.Greater(t, ttl, remaining-time.Minute, "and about as long")

	err = Spend(ctx, rdb, key, remaining)
	require.ErrorIs(t, err, ErrFailed)
	require.Equal(t, errUsed, err)

	// Another challenge's key, spent by 50 requests at once: one wins.
	c2, _ := p.Issue("drop-1", "alice", 8, issued)
	id2, exp2, err := p.Check(c2, solve(t, c2, 8), "drop-1", "alice", now)
	require.NoError(t, err)
	key2 := SpendKey(ks, "drop-1", id2)
	var wg sync.WaitGroup
	results := make(chan error, 50)
	for range 50 {
		wg.Go(func() { results <- Spend(ctx, rdb, key2, exp2.Sub(now)) })
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		if err == nil {
			won++
		} else {
			require.ErrorIs(t, err, ErrFailed)
		}
	}
	require.Equal(t, 1, won)

	// No life left: refused without a key.
	err = Spend(ctx, rdb, key+"x", 0)
	require.ErrorIs(t, err, ErrFailed)
	n, err := rdb.Exists(ctx, key+"x").Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestSpendRedisDown: a Redis that does not answer is a 503, not a pass
// and not the shopper's fault.
func TestSpendRedisDown(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections: a Redis that is down.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	err := Spend(context.Background(), rdb, "t:{s}:pow:x", time.Minute)
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrFailed))
	e := api.AsError(err)
	require.Equal(t, http.StatusServiceUnavailable, e.Status)
	require.Equal(t, "unavailable", e.Code)
	require.Positive(t, e.RetryAfter)
}

func BenchmarkIssue(b *testing.B) {
	p := NewPoW(testKey)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p.Issue("drop-1", "user-123456", 18, now)
	}
}

// BenchmarkCheck is the server's cost of one join's proof: the SHA-256 of
// the proof and the HMAC of the challenge.
func BenchmarkCheck(b *testing.B) {
	p := NewPoW(testKey)
	now := time.Now()
	c, _ := p.Issue("drop-1", "user-123456", 12, now)
	nonce := solve(b, c, 12)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Check(c, nonce, "drop-1", "user-123456", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckWrongNonce is a flood of random nonces: one SHA-256 each.
func BenchmarkCheckWrongNonce(b *testing.B) {
	p := NewPoW(testKey)
	now := time.Now()
	c, _ := p.Issue("drop-1", "user-123456", 20, now)
	nonce := wrongNonce(b, c, 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Check(c, nonce, "drop-1", "user-123456", now); err == nil {
			b.Fatal("passed")
		}
	}
}

// BenchmarkCheckMegabyte is a megabyte challenge: refused on its length.
func BenchmarkCheckMegabyte(b *testing.B) {
	p := NewPoW(testKey)
	now := time.Now()
	huge := strings.Repeat("A", 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Check(huge, "1", "drop-1", "user-123456", now); err == nil {
			b.Fatal("passed")
		}
	}
}

// TestPoWFormatIsStable checks a challenge made outside Go (the fuzz
// corpus's valid-d8, written by a separate HMAC-SHA256 implementation from
// the layout in pow.go): nodes of two releases check each other's
// challenges during a rolling deploy only while the format stays.
func TestPoWFormatIsStable(t *testing.T) {
	t.Parallel()
	p := NewPoW(fuzzKey)
	const c = "AQgAAbjgmSxoAAECAwQFBgcICQoL8wD-8fuiLe2dGKmTRzBB_yTc"
	id, exp, err := p.Check(c, "158", "drop-1", "alice", fuzzNow)
	require.NoError(t, err)
	require.Equal(t, "AAECAwQFBgcICQoL", id)
	require.Equal(t, fuzzNow.Add(5*time.Minute), exp)
	_, _, err = p.Check(c, "158", "drop-1", "alice", fuzzNow.Add(5*time.Minute))
	require.ErrorIs(t, err, ErrFailed)
}
