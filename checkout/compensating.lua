-- compensating: note on a pending order's mark that its request gave the
-- order up (its write failed or its outcome is unknown; the shopper gets
-- 503): reconciliation must then cancel it even if MySQL has it, never
-- finalize it. The mark's flag field becomes "c" (see pend_enc).
-- KEYS[1] pending
-- ARGV[1] order id
-- Returns 1 when the order is pending (now noted), 0 when it is not
-- (reconciliation settled it already).
local p = redis.call('HGET', KEYS[1], ARGV[1])
if not p then return 0 end
local m = pend_dec(p)
if m == nil then return redis.error_reply('compensating: bad pending mark ' .. p) end
if not m.comp then
  m.comp = true
  redis.call('HSET', KEYS[1], ARGV[1], pend_enc(m))
end
return 1
