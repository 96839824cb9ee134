-- compensating: note on a pending order's mark that its request gave the
-- order up (its write failed or its outcome is unknown; the shopper gets
-- 503): reconciliation must then cancel it even if MySQL has it, never
-- finalize it. The mark gets a seventh field, "c" (the other scripts read
-- the first five).
-- KEYS[1] pending
-- ARGV[1] order id
-- Returns 1 when the order is pending (now noted), 0 when it is not
-- (reconciliation settled it already).
local p = redis.call('HGET', KEYS[1], ARGV[1])
if not p then return 0 end
if string.sub(p, -2) ~= '|c' then redis.call('HSET', KEYS[1], ARGV[1], p .. '|c') end
return 1
