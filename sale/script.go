package sale

import (
	"context"
	_ "embed"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

//go:embed prelude.lua
var prelude string

var (
	scriptsMu sync.Mutex
	scripts   []*redis.Script
)

// NewScript makes a Redis script of a .lua body with the shared prelude
// (now_ms, hmap, num, eff_state, split) in front. Script.Run uses EVALSHA
// and falls back to EVAL, so nothing is preloaded; in a pipeline, where
// that fallback cannot happen, use ExecPipeline.
func NewScript(body string) *redis.Script {
	s := redis.NewScript(prelude + "\n" + body)
	scriptsMu.Lock()
	scripts = append(scripts, s)
	scriptsMu.Unlock()
	return s
}

// ExecPipeline runs the pipeline that fill builds. When a script in it is
// missing from Redis's cache (NOSCRIPT: a restart or SCRIPT FLUSH), it loads
// every script and runs the pipeline once more; fill must (re)assign the
// commands it wants to read, since it runs again.
func ExecPipeline(ctx context.Context, rdb redis.UniversalClient, fill func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		pipe := rdb.Pipeline()
		fill(pipe)
		cmds, err := pipe.Exec(ctx)
		if attempt > 0 || !noScript(cmds) {
			return err
		}
		if err := LoadScripts(ctx, rdb); err != nil {
			return err
		}
	}
}

func noScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// LoadScripts loads every script into Redis's script cache.
func LoadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	scriptsMu.Lock()
	all := append([]*redis.Script(nil), scripts...)
	scriptsMu.Unlock()
	// One call each: Script.Load in a pipeline would record an empty hash.
	for _, s := range all {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}
