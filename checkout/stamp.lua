-- stamp: note that a sale's live state is complete on this Redis server
-- process (its run id, cfg field rid), so that a restart or a failover that
-- loses the last writes is noticed: reserve.lua answers "stale" until the
-- state has been checked against MySQL again (Service.Revalidate).
-- KEYS[1] cfg, KEYS[2] units
-- ARGV[1] "new": stamp a sale never stamped (the sweeper does, for a new
-- sale), or "restored": the state was just rebuilt from MySQL: stamp it and
-- note when (cfg field restored, Redis ms), so that it is checked once more
-- after the orders in flight meanwhile have landed in MySQL
-- Returns 1 when stamped, 0 when the state is missing, or, with "new", was
-- stamped already.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if ARGV[1] == 'new' and redis.call('HEXISTS', KEYS[1], 'rid') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rid', run_id())
if ARGV[1] == 'restored' then redis.call('HSET', KEYS[1], 'restored', now_ms()) end
return 1
