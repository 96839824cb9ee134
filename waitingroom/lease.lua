-- lease: take or renew a sale's admitter lease. A new holder gets a new
-- fencing token; the admit script refuses any other lease value.
-- KEYS[1] lease, KEYS[2] fence counter
-- ARGV[1] holder id, ARGV[2] ttl (ms)
-- Returns {1, "holder|fence"} when the caller holds it now, {0, value} when
-- another holder does.
local cur = redis.call('GET', KEYS[1])
if cur then
  -- the holder is everything before the last "|" (the fence is digits),
  -- so a holder id that itself contains "|" still renews its own lease
  if string.match(cur, '^(.*)|%d+$') == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, cur}
  end
  return {0, cur}
end
local v = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {1, v}
