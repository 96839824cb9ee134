-- gcra: spend one request of each rate key, or of none. A GCRA: a key holds
-- its theoretical arrival time (TAT, Redis µs); a request is allowed when
-- TAT + interval - burst * interval <= now, and then moves the TAT one
-- interval on. Every key must allow, else nothing is written: a refused
-- request costs its client nothing.
-- KEYS: 1 or 2 rate keys (ratelimit's key builder; on Redis Cluster one per
-- call, since two clients' keys live on different slots).
-- ARGV: per key, its emission interval in µs (1e6 / rate) and its burst:
-- ARGV[2i-1], ARGV[2i] for KEYS[i].
-- Returns {1, 0, 0} when allowed (each key spent one), else {0, wait, i}:
-- wait the µs until the request would be allowed (the longest over the
-- keys that refuse), i the key that asks the longest wait.
local now = now_ms() * 1000 -- µs, as the TATs: integers, exact in a double
local new = {}
local wait, worst = 0, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  -- a missing key (GET answers false) or one holding no number: a full bucket
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local allow_at = tat + interval - burst * interval
  if allow_at > now then
    if allow_at - now > wait then wait, worst = allow_at - now, i end
  else
    new[i] = tat + interval
  end
end
if wait > 0 then return {0, wait, worst} end
for i, key in ipairs(KEYS) do
  -- idle keys go: the TAT lies at most burst intervals ahead, and a TAT in
  -- the past is a full bucket, the same as no key
  local ttl = math.floor((new[i] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', new[i]), 'PX', ttl)
end
return {1, 0, 0}
