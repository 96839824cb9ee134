-- unlock: delete a lock only if the caller still owns it.
-- KEYS[1] lock
-- ARGV[1] the caller's token
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
