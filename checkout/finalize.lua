-- finalize: MySQL has the order. End the admission (its unbought
-- reservation returns, its capacity frees), note a hold's expiry, and tell
-- the shopper's sockets.
-- KEYS[1] units, KEYS[2] tix, KEYS[3] adm, KEYS[4] pending, KEYS[5] holds,
-- KEYS[6] orders, KEYS[7] ev, KEYS[8] stats
-- ARGV[1] order id, ARGV[2] hold expiry (ms, 0 for none), ARGV[3] order
-- JSON for the event, ARGV[4] event stream max length
-- Returns 1, or 0 when the order was not pending (finalized or undone).
local p = redis.call('HGET', KEYS[4], ARGV[1])
if not p then return 0 end
local m = pend_dec(p)
if m == nil then return redis.error_reply('finalize: bad pending mark ' .. p) end
local user = m.user
redis.call('HDEL', KEYS[4], ARGV[1])
local rec = redis.call('HGET', KEYS[2], user)
if rec then
  local a = adm_dec(rec)
  if a.jti == m.jti then
    redis.call('HINCRBY', KEYS[1], 'reserved', 0 - a.r)
    redis.call('HDEL', KEYS[2], user)
    redis.call('ZREM', KEYS[3], user)
  end
end
if m.kind == 'held' then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[6], ARGV[1], hold_enc(m.qty, user))
end
redis.call('HINCRBY', KEYS[8], 'orders_total', 1)
redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[4], '*', 't', 'order', 'u', user, 'd', ARGV[3])
return 1
