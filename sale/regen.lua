-- regen: give a sale's live copy a new generation, as if written anew, and
-- open a requeue window (see publish.lua). For a Redis that came back behind
-- (a restart from an old snapshot, a failover to a lagging replica): its
-- queue may lack waiters who joined since, so nodes put back the waiters
-- they hold and shoppers the place their token remembers; newcomers wait.
-- KEYS[1] cfg; ARGV[1] the new generation, ARGV[2] the window (ms)
-- Returns 1, or 0 when the sale has no live copy (a rebuild writes one).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'requeue_until', now_ms() + tonumber(ARGV[2]))
return 1
