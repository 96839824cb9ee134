package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	_ "net/http/pprof" // the in-process node's debug listener
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/flashsale/flashsale/testenv"
)

// A 20-second soak against a real node in this process: shoppers join,
// sockets open and close by their lifetimes, some poll, some buy, some let
// the ticket expire, some leave; the node is sampled (goroutines, heap
// after GC, RSS and open files), its heap profiles are saved at the
// warm-up and the end, the diff and the report are written. Every
// goroutine the soak started is gone once it returns (goleak, checked
// after the node and its stores stop).
//
// Not parallel: goleak compares with the goroutines alive when it starts,
// so nothing else of this package may run meanwhile.
func TestSoakAgainstANode(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // the first cleanup registered runs last
	s := testenv.Start(t)
	dbg := httptest.NewServer(http.DefaultServeMux)
	t.Cleanup(dbg.Close)

	var out bytes.Buffer
	c := &soakConfig{url: s.URL, debugURL: dbg.URL, secret: string(s.Secret), adminToken: s.AdminToken,
		runID: "t" + testenv.RandomID(), out: t.TempDir(), pid: os.Getpid(),
		duration: 20 * time.Second, warmup: 6 * time.Second, every: 3 * time.Second,
		joinRate: 15, maxShoppers: 300, queue: 15, wsShare: 0.7, buyShare: 0.6, leaveShare: 0.15,
		sockMin: 500 * time.Millisecond, sockMax: 3 * time.Second, think: 300 * time.Millisecond, leaveWithin: 4 * time.Second,
		stock: 100_000, maxActive: 200, ticketTTL: 10, conns: 16, reqTimeout: 10 * time.Second, seed: 3,
		tol: soakTolerance{goroutines: 0.10, heap: 0.25}, progressEvery: time.Second, out2: &out, log: io.Discard,
		args: []string{"--d", "20s", "--admin-token", "hush"}}
	if testing.Verbose() {
		c.log = os.Stderr
	}
	r, err := runSoak(context.Background(), c)
	require.NoError(t, err)
	t.Logf("output:\n%s", out.String())
	md, err := os.ReadFile(filepath.Join(c.out, "report.md"))
	require.NoError(t, err)
	t.Logf("report:\n%s", md)
	if d := os.Getenv("LOADGEN_TEST_SOAK_REPORT"); d != "" {
		require.NoError(t, os.CopyFS(d, os.DirFS(c.out)))
	}

	// the mix ran: new users joined, sockets churned, shoppers bought
	require.False(t, r.Interrupted)
	require.Greater(t, r.Joins, int64(150), "%+v", r)
	require.Positive(t, r.Orders)
	require.Equal(t, r.Orders, r.Paid)
	require.Positive(t, r.Outcomes["admitted, let the ticket expire"], "%+v", r.Outcomes)
	require.Positive(t, r.Outcomes["left the queue"], "%+v", r.Outcomes)
	require.Zero(t, r.Outcomes["failed (an error ended the visit)"], "%+v", r.Outcomes)
	require.Positive(t, r.Churned, "sockets closed at the end of their life")
	require.Positive(t, r.Abrupt)
	require.Less(t, r.Abrupt, r.Churned, "some closed with a close frame too")
	require.Greater(t, r.SocketsOpened, r.SocketsPeak, "more sockets opened than were ever open at once: they churned")
	require.Positive(t, r.Reloads)
	require.Positive(t, r.Polling)
	require.True(t, r.SummaryRead)
	require.True(t, r.Consistent)
	require.True(t, r.Agrees, "%+v", r)

	// the samples: idle before, the warm-up, every 3 s, the end, idle after
	phases := map[string]int{}
	for _, sm := range r.Samples {
		phases[sm.Phase]++
		require.Positive(t, sm.Goroutines, "%+v", sm)
		require.Positive(t, sm.HeapLive, "%+v", sm)
		require.GreaterOrEqual(t, sm.HeapInuse, sm.HeapLive, "%+v", sm)
		// the store connections' share is sampled: it may be 0 (no sample hit them)
		require.GreaterOrEqual(t, sm.StoreHeap, int64(0), "%+v", sm)
		require.Less(t, sm.StoreHeap, sm.HeapLive, "%+v", sm)
		require.Positive(t, sm.RSS, "%+v", sm)
		require.Positive(t, sm.FDs, "%+v", sm)
		require.GreaterOrEqual(t, sm.NodeSockets, int64(0), "%+v", sm)
	}
	require.Equal(t, map[string]int{"before": 1, "warm-up": 1, "load": 4, "end": 1, "after": 1}, phases)
	last := r.Samples[len(r.Samples)-1]
	require.Zero(t, last.NodeSockets, "the node holds no socket after the run")
	require.Len(t, r.Verdict.Checks, 2)
	require.Empty(t, r.Verdict.Reason)

	// the profiles and the diff
	for _, f := range []string{"heap-start.pb.gz", "heap-end.pb.gz"} {
		b, err := os.ReadFile(filepath.Join(c.out, f))
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(b, []byte{0x1f, 0x8b}), "%s is gzip", f)
	}
	for _, f := range []string{"goroutines-start.txt", "goroutines-end.txt"} {
		b, err := os.ReadFile(filepath.Join(c.out, f))
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(b, []byte("goroutine profile: total ")), "%s", f)
	}
	if _, err := exec.LookPath("go"); err == nil {
		require.Contains(t, r.HeapDiff, "flat%", "go tool pprof -top's table")
		_, err := os.Stat(filepath.Join(c.out, "heap-diff.txt"))
		require.NoError(t, err)
	}

	// the report
	for _, want := range []string{"## Verdict: ", "| goroutines | ", "| live heap less store connections | ", "## Samples",
		"| warm-up |", "| end |", "| after |", "## Machine", "Load average (1 min)", "## What grew", "-diff_base heap-start.pb.gz heap-end.pb.gz",
		"![Node memory](soak-memory.svg)", "loadgen soak --d 20s"} {
		require.Contains(t, string(md), want)
	}
	require.NotContains(t, string(md), "hush", "secrets stay out of the report")
	for _, f := range []string{"soak-goroutines.svg", "soak-memory.svg"} {
		_, points := svgData(t, filepath.Join(c.out, f))
		require.NotEmpty(t, points, f)
	}

	// the live line, then the verdict
	lines := 0
	for l := range strings.SplitSeq(out.String(), "\n") {
		if strings.Contains(l, "s/20s  soak · ") {
			lines++
			require.Contains(t, l, "sockets ")
			require.Contains(t, l, "queue ")
		}
	}
	require.GreaterOrEqual(t, lines, 10, "a live line each second:\n%s", out.String())
	require.Contains(t, out.String(), "  verdict: ")
	require.Contains(t, out.String(), "report: "+filepath.Join(c.out, "report.md"))
}

// series is a soak's samples: idle before, n under load (the first the
// warm-up, the last the end; 30 s apart), idle after. set fills each load
// sample, whose connection counts start unread (-1) and whose store
// connections hold 2 MiB.
func series(n int, set func(i int, s *soakSample)) []soakSample {
	ss := []soakSample{{Phase: "before", Goroutines: 40, HeapLive: 4 << 20, StoreHeap: 1 << 20, FDs: 20, In: -1, Out: -1}}
	for i := range n {
		s := soakSample{T: 60 + float64(i)*30, Phase: "load", StoreHeap: 2 << 20, In: -1, Out: -1, FDs: -1, NodeSockets: -1}
		switch i {
		case 0:
			s.Phase = "warm-up"
		case n - 1:
			s.Phase = "end"
		}
		set(i, &s)
		ss = append(ss, s)
	}
	return append(ss, soakSample{Phase: "after", Goroutines: 45, HeapLive: 5 << 20, StoreHeap: 2 << 20, FDs: 20, In: -1, Out: -1})
}

// The verdict: a flat series (with noise) passes; goroutines or a heap
// that grow steadily fail, each by its own check; connections open at the
// end and not at the warm-up allow what they hold, and store connections'
// buffers are left out of the heap judged; one busy sample at the end, or a
// busy stretch in the middle, is no leak; a run stopped before the warm-up
// has no verdict.
func TestSoakVerdict(t *testing.T) {
	t.Parallel()
	tol := soakTolerance{goroutines: 0.10, heap: 0.25}
	noise := []int64{0, 7, -5, 3, -8, 6, 1, -2, 5, -4, 2, 0, 6, -7, 4, -1, 3, -3, 0, 2}

	flat := judgeSoak(series(20, func(i int, s *soakSample) {
		s.Goroutines, s.HeapLive, s.FDs = 300+noise[i], 40<<20+noise[i]*300<<10, 260+noise[i]
	}), tol)
	require.True(t, flat.OK, "%+v", flat)
	require.Empty(t, flat.Reason)
	require.Less(t, math.Abs(flat.Checks[0].PerMinute), 1.0, "a flat series has no trend: %+v", flat.Checks[0])
	require.EqualValues(t, 38<<20, flat.Checks[1].Warm, "the median of the first three, less the store connections' 2 MiB")

	growing := judgeSoak(series(20, func(i int, s *soakSample) {
		s.Goroutines, s.HeapLive, s.FDs = 300+int64(i)*5+noise[i], 40<<20, 260
	}), tol)
	require.False(t, growing.OK, "%+v", growing)
	require.Equal(t, "goroutines", growing.Checks[0].What)
	require.False(t, growing.Checks[0].OK)
	require.True(t, growing.Checks[1].OK, "the heap was flat")
	require.InDelta(t, 10, growing.Checks[0].PerMinute, 1, "5 goroutines a 30 s sample: 10 a minute")

	heap := judgeSoak(series(20, func(i int, s *soakSample) {
		s.Goroutines, s.HeapLive, s.FDs = 300, 40<<20+int64(i)<<20, 260
	}), tol)
	require.False(t, heap.OK)
	require.True(t, heap.Checks[0].OK)
	require.False(t, heap.Checks[1].OK)
	require.EqualValues(t, 39<<20, heap.Checks[1].Warm)
	require.EqualValues(t, 56<<20, heap.Checks[1].End)
	require.Greater(t, heap.Checks[1].PerMinute, float64(1<<20), "a MiB a sample: 2 MiB a minute")

	// 200 more descriptors over the last samples, each with a goroutine
	// and 12 KiB: allowed, not a leak
	busier := judgeSoak(series(20, func(i int, s *soakSample) {
		extra := int64(0)
		if i >= 17 {
			extra = 200
		}
		s.Goroutines, s.HeapLive, s.FDs = 300+extra, 40<<20+extra*12<<10, 260+extra
	}), tol)
	require.True(t, busier.OK, "%+v", busier)
	require.EqualValues(t, 200, busier.Clients)
	require.Contains(t, busier.By, "200 open descriptors more")

	// Told apart by /proc: 4 MiB more that the profile puts on store
	// connections is left out; 4 MiB more with 50 more client connections
	// (800 KiB allowed) is not.
	pool := func(storeMore, clientsMore int64) soakVerdict {
		return judgeSoak(series(20, func(i int, s *soakSample) {
			s.Goroutines, s.HeapLive, s.In, s.Out = 300, 10<<20, 150, 30
			if i >= 17 {
				s.HeapLive, s.StoreHeap, s.In, s.Out = 14<<20, 2<<20+storeMore, 150+clientsMore, 30+storeMore>>16
			}
		}), tol)
	}
	require.True(t, pool(4<<20, 0).OK, "%+v", pool(4<<20, 0))
	require.Contains(t, pool(4<<20, 0).By, "0 client and 64 store connections more")
	require.True(t, pool(4<<20, 0).Checks[0].OK, "64 goroutines more are allowed for 64 connections more")
	require.False(t, pool(0, 50).OK, "%+v", pool(0, 50))

	// one busy sample at the very end, and a busy stretch in the middle
	spike := judgeSoak(series(20, func(i int, s *soakSample) {
		s.Goroutines, s.HeapLive, s.FDs = 300, 40<<20, 260
		if i == 19 || (i >= 8 && i <= 11) {
			s.Goroutines, s.HeapLive = 600, 80<<20
		}
	}), tol)
	require.True(t, spike.OK, "%+v", spike)

	// an unread heap is no pass
	unread := judgeSoak(series(5, func(i int, s *soakSample) { s.Goroutines, s.HeapLive, s.FDs = 300, -1, 260 }), tol)
	require.False(t, unread.OK)

	stopped := judgeSoak([]soakSample{{Phase: "before", Goroutines: 40}}, tol)
	require.False(t, stopped.OK)
	require.Contains(t, stopped.Reason, "no verdict")
}

// A debug=1 heap profile: the MemStats at its end, and the bytes of the
// records allocated on the way to a store connection, scaled up from the
// sample as pprof does (a 32 KiB object at the 512 KiB rate is sampled
// with probability 1-e^(-1/16), about 1 in 16.5).
func TestParseHeapText(t *testing.T) {
	t.Parallel()
	text := "heap profile: 5: 131072 [9: 200000] @ heap/1048576\n" +
		"2: 65536 [2: 65536] @ 0x1 0x2\n" +
		"#\t0x1\tbufio.NewWriterSize+0x1\t/go/src/bufio/bufio.go:1\n" +
		"#\t0x2\tgithub.com/redis/go-redis/v9/internal/pool.NewConnWithBufferSize+0x9\t/p.go:2\n\n" +
		"1: 4096 [1: 4096] @ 0x3\n" +
		"#\t0x3\tgithub.com/go-sql-driver/mysql.(*connector).Connect+0x9\t/c.go:3\n\n" +
		"2: 61440 [6: 130000] @ 0x4\n" +
		"#\t0x4\tgolang.org/x/time/rate.NewLimiter+0x9\t/r.go:4\n\n" +
		"0: 0 [3: 900] @ 0x2\n" +
		"#\t0x2\tgithub.com/redis/go-redis/v9/internal/pool.NewConnWithBufferSize+0x9\t/p.go:2\n\n" +
		"\n# runtime.MemStats\n# Alloc = 5000000\n# HeapAlloc = 5000000\n# HeapInuse = 7340032\n# NumGC = 12\n"
	h := parseHeapText(strings.NewReader(text))
	require.EqualValues(t, 5000000, h.alloc)
	require.EqualValues(t, 7340032, h.inuse)
	scale := func(bytes, objs float64) float64 { return bytes / (1 - math.Exp(-bytes/objs/(512<<10))) }
	require.InDelta(t, scale(65536, 2)+scale(4096, 1), float64(h.store), 2)
	require.EqualValues(t, -1, parseHeapText(strings.NewReader("not a profile")).store)
}

// /proc/PID/net/tcp's established connections of the process are told
// apart by its port: on it, clients; the others, its pools. Listening
// sockets, other states and other processes' inodes do not count.
func TestCountTCP(t *testing.T) {
	t.Parallel()
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2015 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2015 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:2015 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:B3A0 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:B3A2 0100007F:0CEA 06 00000000:00000000 00:00000000 00000000     0        0 104 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:2015 0100007F:D433 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 20 4 30 10 -1
`
	mine := map[string]bool{"100": true, "101": true, "102": true, "103": true, "104": true}
	in, out := countTCP(table, mine, 0x2015)
	require.EqualValues(t, 2, in, "two clients on 8213")
	require.EqualValues(t, 1, out, "one connection to Redis (6379); the TIME_WAIT one and the other process's do not count")
	// this process's own table reads
	in, out = procConns(os.Getpid(), 1)
	require.GreaterOrEqual(t, in, int64(0))
	require.GreaterOrEqual(t, out, int64(0))
}

// The goroutine profiles' diff names the stacks that grew by their first
// functions outside the runtime.
func TestGoroutineGrowth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prof := func(name string, leaky int) string {
		p := filepath.Join(dir, name)
		body := "goroutine profile: total 12\n" +
			"2 @ 0x1 0x2\n#\t0x1\truntime.gopark+0x1\t/go/src/runtime/proc.go:1\n#\t0x2\tnet/http.(*conn).serve+0x2\t/x.go:2\n\n" +
			"10 @ 0x3 0x4\n#\t0x3\truntime.gopark+0x1\t/go/src/runtime/proc.go:1\n#\t0x4\tgithub.com/flashsale/flashsale/waitingroom.(*Hub).leak+0x9\t/h.go:3\n#\t0x5\tgithub.com/flashsale/flashsale/waitingroom.(*Hub).Start.func1+0x9\t/h.go:4\n\n"
		body = strings.Replace(body, "10 @", strconv.Itoa(leaky)+" @", 1)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	g := goroutineGrowth(prof("a.txt", 10), prof("b.txt", 35))
	require.Equal(t, []labelCount{{"github.com/flashsale/flashsale/waitingroom.(*Hub).leak ← github.com/flashsale/flashsale/waitingroom.(*Hub).Start.func1", 25}}, g)
	require.Nil(t, goroutineGrowth(filepath.Join(dir, "missing.txt"), prof("c.txt", 1)))
}

// The mode is registered and says what is wrong by flag name.
func TestSoakMode(t *testing.T) {
	err := run([]string{"soak", "--url", "http://192.0.2.1:8080", "--d", "1m", "--warmup", "2m", "--sample", "10ms",
		"--debug-url", "localhost:6060", "--socket-min", "5s", "--socket-max", "1s", "--data-dir", t.TempDir()})
	require.Error(t, err)
	for _, want := range []string{"--url must be on loopback", "--warmup must be more than 0 and less than --d",
		"--sample must be at least 1s", "--debug-url must be an http:// URL", "--socket-max at least --socket-min"} {
		require.Contains(t, err.Error(), want)
	}
	require.ErrorContains(t, run([]string{"soak", "--data-dir", t.TempDir()}), "no --identity-secret given and no dev one in --data-dir")
	require.ErrorContains(t, run([]string{"soak", "oops"}), `"oops" is not one`)

	// no debug listener: a clear error before any load
	s := httptest.NewServer(http.NotFoundHandler())
	defer s.Close()
	c := &soakConfig{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	soakFlags(fs, c)
	require.NoError(t, fs.Parse([]string{"--url", s.URL, "--debug-url", s.URL, "--identity-secret", "x", "--admin-token", "y", "--out", t.TempDir()}))
	c.secret, c.adminToken = "x", "y"
	_, err = runSoak(context.Background(), c)
	require.ErrorContains(t, err, "start the node with --debug-listen")
}
