package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// soakSample is the node's figures at one moment, with the run's own.
type soakSample struct {
	T     float64 // seconds since the load started
	Phase string  // before, warm-up, load, end, after

	Goroutines  int64 // runtime.NumGoroutine, from the goroutine profile's first line
	HeapLive    int64 // bytes of live heap just after a forced GC (MemStats.HeapAlloc); -1: not read
	HeapInuse   int64 // bytes in in-use heap spans at that moment (MemStats.HeapInuse); -1: not read
	StoreHeap   int64 // of HeapLive, what the heap profile puts on Redis and MySQL connections (their buffers); -1: not read
	RSS, FDs    int64 // resident bytes and open descriptors (/proc with --pid, else /metrics); -1: not read
	In, Out     int64 // established TCP connections to the node's port (clients) and from it (Redis, MySQL); -1: not read (no --pid)
	NodeSockets int64 // the node's flashsale_websocket_connections; -1: not read

	Sockets, InFlight, Queue int64 // the run's open sockets and shoppers; the sale's queue_length (-1: not read)
	Joins, Orders            int64 // the run's so far
	Load1                    string
}

const mib = 1 << 20

// brief is a sample in a few words, for the live line.
func (s soakSample) brief() string {
	b := fmt.Sprintf("at %.0fs: goroutines %d, heap %s", s.T, s.Goroutines, fmtBytes(s.HeapLive))
	if s.RSS >= 0 {
		b += ", RSS " + fmtBytes(s.RSS)
	}
	return b
}

// fmtBytes is n in MiB (or KiB below one), "?" when not read.
func fmtBytes(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n < mib:
		return fmt.Sprintf("%.0f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	}
}

// debugGet fetches a path of the node's debug listener (net/http/pprof).
func (k *soak) debugGet(ctx context.Context, path string) (*http.Response, error) {
	return k.get(ctx, strings.TrimSuffix(k.c.debugURL, "/")+path)
}

func (k *soak) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.dbg.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// readNode samples the node: goroutines from the goroutine profile, the
// heap after a forced GC from the heap profile's MemStats, RSS and open
// files from /proc (--pid) or /metrics, and its socket gauge. Only the
// goroutine count is needed (it says the debug listener answers); what
// else does not answer is -1.
func (k *soak) readNode(ctx context.Context, phase string, t float64) (soakSample, error) {
	s := soakSample{T: t, Phase: phase, HeapLive: -1, HeapInuse: -1, StoreHeap: -1, RSS: -1, FDs: -1, In: -1, Out: -1, NodeSockets: -1,
		Sockets: k.sc.wsOpen.Load(), InFlight: k.inflight.Load(), Queue: k.queueNow.Load(),
		Joins: k.sc.joins.Load(), Orders: k.sc.checkouts.Load(), Load1: strings.Fields(loadAvg() + " ?")[0]}
	if t < 0 {
		s.T = 0
	}
	var err error
	if s.Goroutines, err = k.goroutineCount(ctx); err != nil {
		return s, err
	}
	// gc=1 runs a collection first, so HeapAlloc is the live heap: what a
	// leak grows, without the garbage a busy moment leaves.
	if resp, err := k.debugGet(ctx, "/debug/pprof/heap?gc=1&debug=1"); err == nil {
		h := parseHeapText(resp.Body)
		resp.Body.Close()
		s.HeapLive, s.HeapInuse, s.StoreHeap = h.alloc, h.inuse, h.store
	} else {
		fmt.Fprintln(k.c.log, "loadgen: heap:", err)
	}
	var m map[string]int64
	if resp, err := k.get(ctx, k.c.metricsURL); err == nil {
		m = scanFields(resp.Body, "", " ", "process_resident_memory_bytes", "process_open_fds", "flashsale_websocket_connections")
		resp.Body.Close()
	} else {
		fmt.Fprintln(k.c.log, "loadgen: metrics:", err)
		m = map[string]int64{}
	}
	s.NodeSockets = m["flashsale_websocket_connections"]
	s.RSS, s.FDs = m["process_resident_memory_bytes"], m["process_open_fds"]
	if k.c.pid > 0 {
		s.RSS, s.FDs = procFigures(k.c.pid)
		s.In, s.Out = procConns(k.c.pid, k.listenPort())
	}
	return s, nil
}

// storeFrames are the functions an allocation of a store connection
// passes through: go-redis' pools (each connection's bufio buffers, 32 KiB
// each way in the main pool, 128 KiB in the pipeline pool) and the MySQL
// driver's connect (its 4 KiB buffer). The pools dial more connections
// when calls queue on a busy machine and keep them for up to 30 minutes
// idle, so what they hold is the node's load, not a leak.
var storeFrames = []string{
	"github.com/redis/go-redis/v9/internal/pool.",
	"github.com/go-sql-driver/mysql.(*connector).Connect",
}

// heapText is what a debug=1 heap profile says: the MemStats at its end,
// and the in-use bytes of the records whose stack has a storeFrames
// function.
type heapText struct {
	alloc, inuse, store int64
}

// parseHeapText reads a debug=1 heap profile: a header "heap profile: ...
// @ heap/2·rate", records "objects: bytes [allocs: bytes] @ 0x..." with
// their frames "#\t0x..\tfunc+0x..\tfile:line", then "# Name = value"
// MemStats lines. A record's in-use figures are the sampled ones, so its
// bytes are scaled up by 1/(1-e^(-size/rate)) as pprof does.
func parseHeapText(r io.Reader) heapText {
	h := heapText{alloc: -1, inuse: -1}
	rate := 512.0 * 1024 // runtime.MemProfileRate's default, until the header says
	var objs, bytes int64
	hit := false
	flush := func() {
		if hit && objs > 0 && bytes > 0 {
			size := float64(bytes) / float64(objs)
			h.store += int64(float64(bytes) / (1 - math.Exp(-size/rate)))
		}
		objs, bytes, hit = 0, 0, false
	}
	sc := bufio.NewScanner(io.LimitReader(r, 512<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "heap profile:"):
			if _, per, ok := strings.Cut(line, "@ heap/"); ok {
				if v, err := strconv.ParseFloat(strings.TrimSpace(per), 64); err == nil && v > 0 {
					rate = v / 2
				}
			}
		case strings.HasPrefix(line, "#\t"):
			if f := strings.Fields(line); len(f) >= 3 && !hit {
				for _, p := range storeFrames {
					hit = hit || strings.HasPrefix(f[2], p)
				}
			}
		case strings.HasPrefix(line, "# "):
			flush()
			name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
			if !ok {
				continue
			}
			v, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			switch {
			case err != nil:
			case name == "HeapAlloc":
				h.alloc = v
			case name == "HeapInuse":
				h.inuse = v
			}
		default:
			var o, b int64
			if _, err := fmt.Sscanf(line, "%d: %d [", &o, &b); err == nil {
				flush()
				objs, bytes = o, b
			}
		}
	}
	flush()
	if h.alloc < 0 {
		h.store = -1
	}
	return h
}

// goroutineCount reads the first line of the goroutine profile: "goroutine
// profile: total N".
func (k *soak) goroutineCount(ctx context.Context) (int64, error) {
	resp, err := k.debugGet(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, 4096)).ReadString('\n')
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("%s/debug/pprof/goroutine?debug=1 does not start with \"goroutine profile: total N\" (it starts %q): is --debug-url the node's --debug-listen?", k.c.debugURL, line)
	}
	return n, nil
}

// scanFields reads "<prefix>name<sep>value" lines (a Prometheus text
// exposition, or the MemStats comments at the end of a debug=1 heap
// profile) for the names asked; a name not found is -1.
func scanFields(r io.Reader, prefix, sep string, names ...string) map[string]int64 {
	out := make(map[string]int64, len(names))
	for _, n := range names {
		out[n] = -1
	}
	sc := bufio.NewScanner(io.LimitReader(r, 512<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(rest, sep)
		if !ok {
			continue
		}
		if _, want := out[name]; want {
			if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				out[name] = int64(f)
			}
		}
	}
	return out
}

// procFigures reads a process's RSS (VmRSS) and its open descriptors
// (entries of /proc/PID/fd); -1 where it cannot (another user's process,
// or no /proc).
func procFigures(pid int) (rss, fds int64) {
	rss, fds = -1, -1
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
					rss = kb << 10
				}
			}
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		fds = int64(len(ents))
	}
	return rss, fds
}

// listenPort is --url's port: the node's connections to it are clients'.
func (k *soak) listenPort() int {
	u, err := url.Parse(k.c.url)
	if err != nil {
		return 0
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// procConns counts a process's established TCP connections: in, those on
// port (its clients: HTTP and WebSockets); out, the others (its pools of
// Redis and MySQL connections). -1, -1 when /proc cannot tell.
func procConns(pid, port int) (in, out int64) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, -1
	}
	inodes := make(map[string]bool, len(ents))
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	read := false
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		read = true
		i, o := countTCP(string(b), inodes, port)
		in, out = in+i, out+o
	}
	if !read {
		return -1, -1
	}
	return in, out
}

// countTCP counts the established connections of a /proc/net/tcp table
// whose inode is one of the process's: on port (in) or not (out).
func countTCP(table string, inodes map[string]bool, port int) (in, out int64) {
	for i, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if i == 0 || len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			in++
		} else {
			out++
		}
	}
	return in, out
}

// sampleLoad samples the node during the load: after the warm-up (with the
// start profiles), every --sample, and at --d (with the end profiles). A
// stop (Ctrl-C) takes the end sample at once; interrupted says so.
func (k *soak) sampleLoad(ctx context.Context) (interrupted bool) {
	c := k.c
	next, warm := c.warmup, false
	for {
		phase := "load"
		if !sleepCtx(ctx, time.Until(k.start.Add(next))) {
			if !warm {
				return true
			}
			interrupted, phase = true, "end"
		}
		switch {
		case !warm:
			phase = "warm-up"
		case next >= c.duration:
			phase = "end"
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		smp, err := k.readNode(sctx, phase, time.Since(k.start).Seconds())
		if err == nil {
			k.mu.Lock()
			k.samples = append(k.samples, smp)
			k.mu.Unlock()
			switch phase {
			case "warm-up":
				warm = true
				k.saveProfiles(sctx, "start")
			case "end":
				k.saveProfiles(sctx, "end")
			}
		} else {
			fmt.Fprintf(c.log, "loadgen: read the node's figures (%s): %v\n", phase, err)
		}
		cancel()
		if phase == "end" || interrupted {
			return interrupted
		}
		next = min(next+c.every, c.duration)
	}
}

// saveProfiles writes the node's heap profile (after a forced GC) and its
// goroutines (grouped by stack) into the report's directory.
func (k *soak) saveProfiles(ctx context.Context, tag string) {
	for _, p := range []struct{ path, file string }{
		{"/debug/pprof/heap?gc=1", "heap-" + tag + ".pb.gz"},
		{"/debug/pprof/goroutine?debug=1", "goroutines-" + tag + ".txt"},
	} {
		if err := k.saveDebug(ctx, p.path, filepath.Join(k.c.out, p.file)); err != nil {
			fmt.Fprintf(k.c.log, "loadgen: save %s: %v\n", p.file, err)
		}
	}
}

func (k *soak) saveDebug(ctx context.Context, path, file string) error {
	resp, err := k.debugGet(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(resp.Body, 1<<30))
	return errors.Join(err, f.Close())
}

// waitIdle waits (until ctx ends) for the node to hold no sockets, so the
// "after" sample is of an idle node.
func (k *soak) waitIdle(ctx context.Context) {
	for {
		resp, err := k.get(ctx, k.c.metricsURL)
		if err == nil {
			n := scanFields(resp.Body, "", " ", "flashsale_websocket_connections")["flashsale_websocket_connections"]
			resp.Body.Close()
			if n <= 0 {
				return
			}
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return
		}
	}
}
