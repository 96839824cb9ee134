-- idem: answer or drop an Idempotency-Key claim, only while the claim is
-- still the caller's (one that outlived its TTL may belong to another
-- request by now, which must keep it).
-- KEYS[1] the key's reply key
-- ARGV[1] the caller's claim, ARGV[2] the reply to keep ("" drops the
-- claim), ARGV[3] the reply's TTL (ms)
-- Returns 1 when done, 0 when the claim is no longer the caller's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
