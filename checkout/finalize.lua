-- finalize: MySQL has the order (or each of several orders of the sale:
-- the orders committed together are finalized in one call). End its
-- admission (its unbought reservation returns, its capacity frees), note a
-- hold's expiry, and tell the shopper's sockets.
-- KEYS[1] units, KEYS[2] tix, KEYS[3] adm, KEYS[4] pending, KEYS[5] holds,
-- KEYS[6] orders, KEYS[7] ev, KEYS[8] stats
-- ARGV: per order, 3 values: order id, hold expiry (ms, 0 for none), order
-- JSON for the event; then last the event stream's max length
-- Returns how many of the orders were pending (now finalized); one that was
-- not (finalized or undone already) is left alone. A pending mark it cannot
-- read fails the call before it changes anything.

-- First every order's mark, so that a bad one fails the call before any
-- write (a script's writes are not undone by its error).
local marks = {}
for i = 1, #ARGV - 3, 3 do
  local p = redis.call('HGET', KEYS[4], ARGV[i])
  if p then
    local m = pend_dec(p)
    if m == nil then return redis.error_reply('finalize: bad pending mark ' .. p) end
    m.order, m.hold, m.data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    marks[#marks + 1] = m
  end
end
if #marks == 0 then return 0 end

local unreserved, freed = 0, false
for _, m in ipairs(marks) do
  redis.call('HDEL', KEYS[4], m.order)
  local rec = redis.call('HGET', KEYS[2], m.user)
  if rec then
    local a = adm_dec(rec)
    if a.jti == m.jti then
      unreserved, freed = unreserved + a.r, true
      redis.call('HDEL', KEYS[2], m.user)
      redis.call('ZREM', KEYS[3], m.user)
    end
  end
  if m.kind == 'held' then
    redis.call('ZADD', KEYS[5], m.hold, m.order)
    redis.call('HSET', KEYS[6], m.order, hold_enc(m.qty, m.user))
  end
end
-- the counters once for the whole call
if freed then redis.call('HINCRBY', KEYS[1], 'reserved', 0 - unreserved) end
redis.call('HINCRBY', KEYS[8], 'orders_total', #marks)
for _, m in ipairs(marks) do
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[#ARGV], '*', 't', 'order', 'u', m.user, 'd', m.data)
end
return #marks
