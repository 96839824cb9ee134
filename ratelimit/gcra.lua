-- gcra: the rate checks of a batch of requests, in order. Each request
-- spends one on every one of its keys, or on none. A GCRA: a key holds its
-- theoretical arrival time (TAT, Redis µs); a request is allowed when
-- TAT + interval - burst * interval <= now, and then moves the TAT one
-- interval on. A refused request writes nothing: it costs its client
-- nothing. Two requests of one batch on the same key see each other, as
-- two calls would.
-- KEYS: the requests' rate keys, one after the other (ratelimit's key
-- builder; on Redis Cluster every call holds one key, since two clients'
-- keys live on different slots).
-- ARGV: per request, its key count n, then per key its emission interval in
-- µs (1e6 / rate) and its burst.
-- Returns per request two integers: 0, 0 when allowed (each key spent one),
-- else wait, i: the µs until the request would be allowed (the longest over
-- its keys that refuse) and which of its keys asks it (1-based).
local now = now_ms() * 1000 -- µs, as the TATs: integers, exact in a double
local out = {}
local k, a = 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local new = {}
  local wait, worst = 0, 0
  for i = 1, n do
    local interval = tonumber(ARGV[a])
    local burst = tonumber(ARGV[a + 1])
    a = a + 2
    -- a missing key (GET answers false) or one holding no number: a full bucket
    local tat = tonumber(redis.call('GET', KEYS[k + i - 1])) or now
    if tat < now then tat = now end
    local allow_at = tat + interval - burst * interval
    if allow_at > now then
      if allow_at - now > wait then wait, worst = allow_at - now, i end
    else
      new[i] = tat + interval
    end
  end
  if wait == 0 then
    for i = 1, n do
      -- idle keys go: the TAT lies at most burst intervals ahead, and a TAT
      -- in the past is a full bucket, the same as no key
      local ttl = math.floor((new[i] - now) / 1000) + 1000
      redis.call('SET', KEYS[k + i - 1], string.format('%.0f', new[i]), 'PX', ttl)
    end
  end
  out[#out + 1] = wait
  out[#out + 1] = worst
  k = k + n
end
return out
