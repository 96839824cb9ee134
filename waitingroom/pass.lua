-- pass: an operator's pass puts its user in the priority lane, admitted at
-- the next tick ahead of the queue (still within max_active and the
-- units), once. A user admitted or who bought already keeps the pass
-- unused.
-- KEYS[1] cfg, KEYS[2] q, KEYS[3] lane, KEYS[4] tix, KEYS[5] buyers,
-- KEYS[6] skipped, KEYS[7] expired, KEYS[8] the pass's single-use key,
-- KEYS[9] passes
-- ARGV[1] user, ARGV[2] the pass's remaining life (ms)
-- Returns "nostate", "used" (spent before), "in" (admitted or bought), or
-- "ok".
if redis.call('EXISTS', KEYS[1]) == 0 then return 'nostate' end
local user = ARGV[1]
if redis.call('HEXISTS', KEYS[5], user) == 1 or redis.call('HEXISTS', KEYS[4], user) == 1 then return 'in' end
if not redis.call('SET', KEYS[8], user, 'NX', 'PX', ARGV[2]) then return 'used' end
redis.call('ZREM', KEYS[2], user)
redis.call('HDEL', KEYS[6], user)
redis.call('SREM', KEYS[7], user)
-- in the lane at score 0 (ahead of every place, which start at 1: status
-- shows them first) and among the pass holders, whom admit.lua admits at
-- its next tick outside the rate
redis.call('ZADD', KEYS[3], 0, user)
redis.call('ZADD', KEYS[9], redis.call('TIME')[1], user)
return 'ok'
