-- check: where a sale's live state stands on this Redis server process (in
-- one step, so the answer is about the server that holds the sale's keys).
-- KEYS[1] cfg, KEYS[2] units
-- ARGV[1] how long (ms) after a restore from MySQL the state is checked
-- once more
-- Returns {state, restored}: state is "missing" (no cfg or units: a rebuild
-- is due), "new" (never stamped; see stamp.lua), "stale" (stamped by another
-- server process: Redis restarted or failed over since, a revalidation is
-- due), "recheck" (stamped here and restored from MySQL at least ARGV[1] ms
-- ago: the second check is due) or "ok"; restored is the cfg field
-- restored, "" when none.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return {'missing', ''} end
local f = redis.call('HMGET', KEYS[1], 'rid', 'restored')
local rid, restored = f[1], f[2] or ''
if not rid then return {'new', restored} end
if rid ~= run_id() then return {'stale', restored} end
if restored ~= '' and now_ms() >= tonumber(restored) + tonumber(ARGV[1]) then return {'recheck', restored} end
return {'ok', restored}
