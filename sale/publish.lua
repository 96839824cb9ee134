-- publish: write a sale's live copy if it is newer than the one in Redis.
-- KEYS[1] cfg hash, KEYS[2] units hash, KEYS[3] set of sale ids
-- ARGV[1] sale id, ARGV[2] version, ARGV[3] "1" to create the units of a new
-- sale, ARGV[4] stock, ARGV[5..] field, value pairs
-- Returns 1 when written, 0 when Redis already had this version or a newer one.
local ver = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
redis.call('SADD', KEYS[3], ARGV[1])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'remaining', ARGV[4], 'reserved', 0, 'held', 0, 'sold', 0, 'stock', ARGV[4])
end
if cur >= ver then return 0 end
local args = {}
for i = 5, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'ver', ver, unpack(args))
return 1
