-- gcra_limits and gcra_spend: the rate checks of requests, shared by
-- gcra.lua and by the scripts that carry a request's checks along with their
-- own work (join.lua: one round trip for both, on one Redis server). A GCRA:
-- a key holds its theoretical arrival time (TAT, Redis µs); a request is
-- allowed when TAT + interval - burst * interval <= now, and then moves the
-- TAT one interval on. The request spends one on every one of its keys, or
-- on none: a refused request leaves its keys as they were, so it costs its
-- client nothing. Two requests of one call on the same key see each other,
-- as two calls would.

-- gcra_limits reads the limits a call's checks name, given once per call
-- (not per request: a join's checks cost two keys and a short string, not
-- six arguments): "interval:burst:interval:burst...", limit 1 first, each
-- interval in µs (1e6 / rate).
local function gcra_limits(s)
  local out, v = {}, {}
  for x in string.gmatch(s, '[^:]+') do v[#v + 1] = tonumber(x) end
  for i = 1, #v - 1, 2 do out[#out + 1] = {v[i], v[i + 1]} end
  return out
end

-- SET with both NX and GET came with Redis 7.0, as REDIS_VERSION_NUM did:
-- an older server reads, then writes.
local gcra_nx_get = redis.REDIS_VERSION_NUM ~= nil

-- gcra_spend makes the checks of one request. keys[k], keys[k+1], ...: its
-- rate keys; spec: which limit each one is, a digit per key ("12": the keys
-- of limits 1 and 2, in that order); limits: gcra_limits's answer. now:
-- Redis µs (now_ms() * 1000).
-- Returns wait, worst, k: 0, 0 when allowed (each key spent one), else the
-- µs until the request would be allowed (the longest over its keys that
-- refuse) and which of its keys asks it (1-based); then where the next
-- request's keys start.
local function gcra_spend(keys, k, spec, limits, now)
  local n = #spec
  local wait, worst = 0, 0
  local new, made = {}, {}
  -- Rate state means something for a few seconds: it is neither written to
  -- the AOF nor sent to replicas (a restarted or failed-over Redis gives
  -- each client a fresh burst, no worse than a node's restart). The AOF's
  -- share of a fresh key was about a third of its cost.
  redis.set_repl(redis.REPL_NONE)
  for i = 1, n do
    local lim = limits[string.byte(spec, i) - 48]
    local interval, burst = lim[1], lim[2]
    local key = keys[k + i - 1]
    -- A missing key is a full bucket, where the request is allowed
    -- (burst >= 1): SET NX GET writes its TAT and reads whether it was
    -- missing in one call, the usual case (a new client). Once the request
    -- is refused, the rest of its keys are only read.
    -- Idle keys go: the TAT lies at most burst intervals ahead, and a TAT
    -- in the past is a full bucket, the same as no key.
    local fresh_ttl = math.floor(interval / 1000) + 1000
    local old
    if wait == 0 and gcra_nx_get then
      old = redis.call('SET', key, string.format('%.0f', now + interval), 'PX', fresh_ttl, 'NX', 'GET')
    else
      old = redis.call('GET', key)
      if old == false and wait == 0 then
        redis.call('SET', key, string.format('%.0f', now + interval), 'PX', fresh_ttl)
      end
    end
    if old == false and wait == 0 then
      made[#made + 1] = key
    else
      -- a missing key, or one holding no number: a full bucket
      local tat = tonumber(old) or now
      if tat < now then tat = now end
      local allow_at = tat + interval - burst * interval
      if allow_at > now then
        if allow_at - now > wait then wait, worst = allow_at - now, i end
      else
        new[i] = tat + interval
      end
    end
  end
  if wait == 0 then
    for i = 1, n do
      if new[i] then
        redis.call('SET', keys[k + i - 1], string.format('%.0f', new[i]), 'PX',
          math.floor((new[i] - now) / 1000) + 1000)
      end
    end
  else
    -- refused: the keys this request made go again (a full bucket, as
    -- before it)
    for _, key in ipairs(made) do redis.call('DEL', key) end
  end
  redis.set_repl(redis.REPL_ALL)
  return wait, worst, k + n
end
