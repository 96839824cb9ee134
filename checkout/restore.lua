-- restore: the last step of a rebuild from MySQL. Writes the units only if
-- they are still missing (the commit point: every script refuses to run
-- until they exist), counting the reservations of admission records that
-- survived.
-- KEYS[1] units, KEYS[2] tix
-- ARGV[1] stock, ARGV[2] sold (paid units in MySQL), ARGV[3] held
-- Returns 1 when written, 0 when the units existed already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local reserved = 0
local tix = redis.call('HVALS', KEYS[2])
for _, rec in ipairs(tix) do
  reserved = reserved + adm_dec(rec).r
end
local stock, sold, held = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local remaining = stock - sold - held
if reserved > remaining then reserved = remaining end
redis.call('HSET', KEYS[1], 'remaining', remaining, 'reserved', reserved, 'held', held, 'sold', sold, 'stock', stock)
return 1
