-- write: add a claimed second's sample to a sale's timeline, keep the
-- timeline bounded, and record a change of the admission rate or the state
-- as a mark (so a chart can draw it even where only the minute samples are
-- left).
-- KEYS[1] meta hash, KEYS[2] per-second zset, KEYS[3] per-minute zset,
-- KEYS[4] marks zset (each scored by its second)
-- ARGV[1] the second, ARGV[2] the sample record, ARGV[3] the admission
-- rate, ARGV[4] the state, ARGV[5] how many seconds the per-second zset
-- keeps, ARGV[6] the per-minute zset's cap (samples), ARGV[7] the marks'
-- cap, ARGV[8] retention (ms), ARGV[9] the coarse step (s)
-- Returns 1.
local sec = tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], sec, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (sec - tonumber(ARGV[5])))

-- the first sample of each step (minute) also goes to the coarse series,
-- which outlives the per-second window
local step = tonumber(ARGV[9])
local slot = sec - sec % step
local cmin = tonumber(redis.call('HGET', KEYS[1], 'cslot') or '-1')
if slot > cmin then
  redis.call('ZADD', KEYS[3], sec, ARGV[2])
  redis.call('HSET', KEYS[1], 'cslot', slot)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[6]) + 1))
end

-- marks compare with the newest sample written; a late write of an older
-- second (a slow sampler) adds its sample but says nothing of changes
local wsec = tonumber(redis.call('HGET', KEYS[1], 'wsec') or '0')
if sec > wsec then
  local old = redis.call('HMGET', KEYS[1], 'rate', 'state')
  if old[1] and old[1] ~= ARGV[3] then
    redis.call('ZADD', KEYS[4], sec, sec .. '|admission_rate|' .. old[1] .. '|' .. ARGV[3])
  end
  if old[2] and old[2] ~= ARGV[4] then
    redis.call('ZADD', KEYS[4], sec, sec .. '|state|' .. old[2] .. '|' .. ARGV[4])
  end
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[7]) + 1))
  redis.call('HSET', KEYS[1], 'wsec', sec, 'rate', ARGV[3], 'state', ARGV[4])
end

for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
return 1
