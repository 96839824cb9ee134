-- reconcile: one guarded repair of a sale's live state from MySQL. It runs
-- only if the units a checkout moves (remaining, held, sold) are still what
-- the caller read before reading MySQL: any reserve, undo or settle since
-- then changed them, and the caller reads again. (A finalize does not
-- change them, and the caller counts pending orders from their marks, not
-- from MySQL, so one finishing meanwhile changes nothing here.)
-- A repaired state is complete on this Redis server process: the step
-- stamps the sale with its run id (cfg field rid; see stamp.lua), which lets
-- checkouts in again after a restart.
-- KEYS[1] units, KEYS[2] tix, KEYS[3] buyers, KEYS[4] jti, KEYS[5] holds,
-- KEYS[6] orders, KEYS[7] cfg
-- ARGV[1..3] remaining, held, sold as read; ARGV[4] stock, ARGV[5] sold,
-- ARGV[6] held: the counts to write; ARGV[7] "restored" to note now as the
-- time the state was restored from MySQL (cfg field restored: to be checked
-- once more later), a time to clear that note if it is still that one (the
-- check once more), or ""; then groups of four:
-- op, a, b, c with op one of
--   bset user order      / bdel user order (only if the buyer is that order)
--   jset jti order       / jdel jti order  (only if the ticket is that order's)
--   hset order ms rec    / hdel order
-- Returns "ok", or "changed" when the units moved since the read.
local u = redis.call('HMGET', KEYS[1], 'remaining', 'held', 'sold')
if u[1] ~= ARGV[1] or u[2] ~= ARGV[2] or u[3] ~= ARGV[3] then return 'changed' end
for i = 8, #ARGV, 4 do
  local op, a, b, c = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if op == 'bset' then
    redis.call('HSET', KEYS[3], a, b)
  elseif op == 'bdel' then
    if redis.call('HGET', KEYS[3], a) == b then redis.call('HDEL', KEYS[3], a) end
  elseif op == 'jset' then
    redis.call('HSET', KEYS[4], a, b)
  elseif op == 'jdel' then
    if redis.call('HGET', KEYS[4], a) == b then redis.call('HDEL', KEYS[4], a) end
  elseif op == 'hset' then
    redis.call('ZADD', KEYS[5], b, a)
    redis.call('HSET', KEYS[6], a, c)
  elseif op == 'hdel' then
    redis.call('ZREM', KEYS[5], a)
    redis.call('HDEL', KEYS[6], a)
  else
    return redis.error_reply('reconcile: unknown op ' .. tostring(op))
  end
end
local stock, sold, held = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local remaining = stock - sold - held
-- reservations are the live admission records' (as restore.lua counts them)
local reserved = 0
for _, rec in ipairs(redis.call('HVALS', KEYS[2])) do
  reserved = reserved + adm_dec(rec).r
end
if reserved > remaining then reserved = remaining end
if reserved < 0 then reserved = 0 end
redis.call('HSET', KEYS[1], 'remaining', remaining, 'reserved', reserved, 'held', held, 'sold', sold, 'stock', stock)
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('HSET', KEYS[7], 'rid', run_id())
  if ARGV[7] == 'restored' then
    redis.call('HSET', KEYS[7], 'restored', now_ms())
  elseif ARGV[7] ~= '' and redis.call('HGET', KEYS[7], 'restored') == ARGV[7] then
    redis.call('HDEL', KEYS[7], 'restored')
  end
end
return 'ok'
