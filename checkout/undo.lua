-- undo: MySQL will never have this order (it was refused, or compensated).
-- Put everything back as it was before reserve: the units (to the ticket's
-- reservation when its admission still stands), the buyer, the ticket.
-- KEYS[1] units, KEYS[2] tix, KEYS[3] buyers, KEYS[4] jti, KEYS[5] pending
-- ARGV[1] order id
-- Returns 1, or 0 when the order was not pending.
local p = redis.call('HGET', KEYS[5], ARGV[1])
if not p then return 0 end
local m = pend_dec(p)
if m == nil then return redis.error_reply('undo: bad pending mark ' .. p) end
local user, qty, jti, fromTicket, kind = m.user, m.qty, m.jti, m.from, m.kind
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[1], kind, 0 - qty)
redis.call('HINCRBY', KEYS[1], 'remaining', qty)
if redis.call('HGET', KEYS[3], user) == ARGV[1] then redis.call('HDEL', KEYS[3], user) end
if redis.call('HGET', KEYS[4], jti) == ARGV[1] then redis.call('HDEL', KEYS[4], jti) end
if fromTicket == '1' then
  local rec = redis.call('HGET', KEYS[2], user)
  if rec then
    local a = adm_dec(rec)
    if a.jti == jti then
      redis.call('HINCRBY', KEYS[1], 'reserved', qty)
      a.r = a.r + qty
      redis.call('HSET', KEYS[2], user, adm_enc(a))
    end
  end
end
return 1
