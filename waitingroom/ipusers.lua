-- ipusers: the users per address of a sale (max_users_per_ip). Lets user
-- join from this address if it joined from it before, or if fewer than max
-- distinct users did; else refuses, changing nothing.
-- KEYS[1] the address's set of user hashes
-- ARGV[1] the user's hash, ARGV[2] max, ARGV[3] the set's life (ms)
-- Returns 1 when allowed, 0 when the address is full.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
