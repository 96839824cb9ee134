-- ban: a banned user leaves a sale at once: their place (queue, lane,
-- skipped, presence) is gone and a live admission ends, its reserved units
-- returning now. Orders (paid or held) are left alone.
-- KEYS[1] q, KEYS[2] lane, KEYS[3] prefix of the presence hashes
-- (seen_key), KEYS[4] skipped, KEYS[5] expired, KEYS[6] adm, KEYS[7] tix,
-- KEYS[8] units
-- ARGV[1] user
-- Returns {placed, admitted}: 1 when the user had a place, an admission.
local user = ARGV[1]
local placed = redis.call('ZREM', KEYS[1], user) + redis.call('ZREM', KEYS[2], user) + redis.call('HDEL', KEYS[4], user)
redis.call('HDEL', seen_key(KEYS[3], user), user)
redis.call('SREM', KEYS[5], user)
local admitted = 0
local rec = redis.call('HGET', KEYS[7], user)
if rec then
  local a = adm_dec(rec)
  if redis.call('EXISTS', KEYS[8]) == 1 and a.r > 0 then
    redis.call('HINCRBY', KEYS[8], 'reserved', 0 - a.r)
  end
  redis.call('HDEL', KEYS[7], user)
  admitted = 1
end
redis.call('ZREM', KEYS[6], user)
if placed > 0 then placed = 1 end
return {placed, admitted}
