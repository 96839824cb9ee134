-- gcra: the rate checks of a batch of requests, in order (gcra_spend, from
-- gcra_fn.lua, for each).
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
  local wait, worst
  wait, worst, k, a = gcra_spend(KEYS, k, ARGV, a, now)
  out[#out + 1] = wait
  out[#out + 1] = worst
end
return out
