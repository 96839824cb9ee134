-- claim: take this second's sample of a sale for the caller, once across
-- every node. The second is Redis's (TIME), the clock every node shares, so
-- two samplers whose ticks fall in the same second cannot both write it.
-- KEYS[1] the timeline's meta hash
-- ARGV[1] retention (ms): how long the timeline outlives its last sample
-- Returns the claimed second (Unix seconds), or 0 when another sampler (or
-- this one) already took it.
local t = redis.call('TIME')
local sec = tonumber(t[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if sec <= last then return 0 end
redis.call('HSET', KEYS[1], 'last', sec)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return sec
