-- refund: give back the request gcra.lua spent on one key when the other key
-- of the same request refused it (Redis Cluster only, where the two keys are
-- checked by two calls): the TAT moves one interval back.
-- KEYS[1] the rate key. ARGV[1] its emission interval in µs.
-- Returns 1 when something was given back, 0 when the key had expired.
local now = now_ms() * 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then return 0 end
tat = tat - tonumber(ARGV[1])
if tat <= now then
  -- back to a full bucket: the same as no key
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
return 1
