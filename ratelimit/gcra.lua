-- gcra: the rate checks of a batch of requests, in order (gcra_spend, from
-- gcra_fn.lua, for each).
-- KEYS: the requests' rate keys, one after the other (ratelimit's key
-- builder; on Redis Cluster every call holds one key, since two clients'
-- keys live on different slots).
-- ARGV[1]: the limits (gcra_limits); then per request which limit each of
-- its keys is, a digit per key ("12").
-- Returns per request two integers: 0, 0 when allowed (each key spent one),
-- else wait, i: the µs until the request would be allowed (the longest over
-- its keys that refuse) and which of its keys asks it (1-based).
local now = now_ms() * 1000 -- µs, as the TATs: integers, exact in a double
local limits = gcra_limits(ARGV[1])
local out = {}
local k = 1
for a = 2, #ARGV do
  local wait, worst
  wait, worst, k = gcra_spend(KEYS, k, ARGV[a], limits, now)
  out[#out + 1] = wait
  out[#out + 1] = worst
end
return out
