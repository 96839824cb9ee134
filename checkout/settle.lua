-- settle: a held order was confirmed (paid), cancelled or expired in MySQL.
-- Paid moves its units from held to sold; cancelled or expired returns them
-- and frees the buyer. Tells the shopper's sockets.
-- KEYS[1] units, KEYS[2] holds, KEYS[3] orders, KEYS[4] buyers, KEYS[5] ev
-- ARGV[1] order id, ARGV[2] new status (paid, cancelled, expired),
-- ARGV[3] order JSON for the event, ARGV[4] event stream max length
-- Returns 1, or 0 when Redis did not hold this order (settled already).
local o = redis.call('HGET', KEYS[3], ARGV[1])
if not o then return 0 end
local h = hold_dec(o)
if h == nil then return redis.error_reply('settle: bad order record ' .. o) end
local user, qty = h.user, h.qty
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held', 0 - qty)
if ARGV[2] == 'paid' then
  redis.call('HINCRBY', KEYS[1], 'sold', qty)
else
  redis.call('HINCRBY', KEYS[1], 'remaining', qty)
  if redis.call('HGET', KEYS[4], user) == ARGV[1] then redis.call('HDEL', KEYS[4], user) end
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 't', 'order', 'u', user, 'd', ARGV[3])
return 1
