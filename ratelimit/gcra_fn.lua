-- gcra_spend: the rate checks of one request, shared by gcra.lua and by the
-- scripts that carry a request's checks along with their own work (join.lua:
-- one round trip for both, on one Redis server). A GCRA: a key holds its
-- theoretical arrival time (TAT, Redis µs); a request is allowed when
-- TAT + interval - burst * interval <= now, and then moves the TAT one
-- interval on. The request spends one on every one of its keys, or on none:
-- a refused request writes nothing, so it costs its client nothing. Two
-- requests of one call on the same key see each other, as two calls would.
-- keys[k], keys[k+1], ...: the request's rate keys; argv[a]: their count n,
-- then per key its emission interval in µs (1e6 / rate) and its burst. now:
-- Redis µs (now_ms() * 1000).
-- Returns wait, worst, k, a: 0, 0 when allowed (each key spent one), else
-- the µs until the request would be allowed (the longest over its keys that
-- refuse) and which of its keys asks it (1-based); then where the next
-- request's keys and arguments start.
local function gcra_spend(keys, k, argv, a, now)
  local n = tonumber(argv[a])
  a = a + 1
  local new = {}
  local wait, worst = 0, 0
  for i = 1, n do
    local interval = tonumber(argv[a])
    local burst = tonumber(argv[a + 1])
    a = a + 2
    -- a missing key (GET answers false) or one holding no number: a full bucket
    local tat = tonumber(redis.call('GET', keys[k + i - 1])) or now
    if tat < now then tat = now end
    local allow_at = tat + interval - burst * interval
    if allow_at > now then
      if allow_at - now > wait then wait, worst = allow_at - now, i end
    else
      new[i] = tat + interval
    end
  end
  if wait == 0 then
    -- Rate state means something for a few seconds: it is neither written
    -- to the AOF nor sent to replicas (a restarted or failed-over Redis
    -- gives each client a fresh burst, no worse than a node's restart).
    -- The AOF's share of a fresh key was about a third of its cost.
    redis.set_repl(redis.REPL_NONE)
    for i = 1, n do
      -- idle keys go: the TAT lies at most burst intervals ahead, and a TAT
      -- in the past is a full bucket, the same as no key
      local ttl = math.floor((new[i] - now) / 1000) + 1000
      redis.call('SET', keys[k + i - 1], string.format('%.0f', new[i]), 'PX', ttl)
    end
    redis.set_repl(redis.REPL_ALL)
  end
  return wait, worst, k + n, a
end
