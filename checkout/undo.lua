-- undo: MySQL will never have this order (it was refused, or compensated).
-- Put everything back as it was before reserve: the units (to the ticket's
-- reservation when its admission still stands), the buyer, the ticket.
-- KEYS[1] units, KEYS[2] tix, KEYS[3] buyers, KEYS[4] jti, KEYS[5] pending
-- ARGV[1] order id
-- Returns 1, or 0 when the order was not pending.
local p = redis.call('HGET', KEYS[5], ARGV[1])
if not p then return 0 end
local f = split(p, '|')
local user, qty, jti, fromTicket, kind = f[1], tonumber(f[2]), f[3], f[4], f[5]
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[1], kind, 0 - qty)
redis.call('HINCRBY', KEYS[1], 'remaining', qty)
if redis.call('HGET', KEYS[3], user) == ARGV[1] then redis.call('HDEL', KEYS[3], user) end
if redis.call('HGET', KEYS[4], jti) == ARGV[1] then redis.call('HDEL', KEYS[4], jti) end
if fromTicket == '1' then
  local rec = redis.call('HGET', KEYS[2], user)
  if rec then
    local t = split(rec, '|')
    if t[1] == jti then
      redis.call('HINCRBY', KEYS[1], 'reserved', qty)
      redis.call('HSET', KEYS[2], user, t[1] .. '|' .. t[2] .. '|' .. t[3] .. '|' .. (tonumber(t[4]) + qty))
    end
  end
end
return 1
