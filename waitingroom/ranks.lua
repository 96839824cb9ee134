-- ranks: publish the rank table nodes compute positions from, so a node
-- answers every socket's position from one small read per tick. It samples
-- the queue's scores at every rank below 100 (exact positions there) and
-- then at ranks at most 1/step apart in proportion (positions within 1%).
-- KEYS[1] q, KEYS[2] lane, KEYS[3] stats, KEYS[4] ranks, KEYS[5] cfg, KEYS[6] units
-- ARGV[1] step divisor (100 or more), ARGV[2] ttl of the table (ms)
-- Returns the number of samples.
-- The table: "ms|queue_length|advance|state|all_reserved|gen|restoring\n"
-- then "rank:score" lines; advance = admitted_total + skipped_total (for the
-- ETA); gen = the generation of the sale's keys (a node that saw another
-- one knows Redis lost them, and puts back the waiters it holds);
-- restoring = 1 while nodes are putting them back (positions would be low).
local cfg = hmap(KEYS[5])
if cfg == nil then return 0 end
local now = now_ms()
local n = redis.call('ZCARD', KEYS[1])
local stats = redis.call('HMGET', KEYS[3], 'admitted_total', 'skipped_total')
local adv = tonumber(stats[1] or '0') + tonumber(stats[2] or '0')
local u = redis.call('HMGET', KEYS[6], 'remaining', 'reserved')
local allres = 0
if u[1] and tonumber(u[1]) - tonumber(u[2]) <= 0 then allres = 1 end
local restoring = 0
if now < num(cfg, 'requeue_until', 0) then restoring = 1 end
local out = {now .. '|' .. (n + redis.call('ZCARD', KEYS[2])) .. '|' .. adv .. '|' .. eff_state(cfg, now) .. '|' .. allres .. '|' .. (cfg.gen or '') .. '|' .. restoring}
local head = redis.call('ZRANGE', KEYS[1], 0, 99, 'WITHSCORES')
for i = 1, #head, 2 do
  out[#out + 1] = ((i - 1) / 2) .. ':' .. head[i + 1]
end
local div = tonumber(ARGV[1])
local r = 100
local count = #head / 2
while r < n do
  local s = redis.call('ZRANGE', KEYS[1], r, r, 'WITHSCORES')
  out[#out + 1] = r .. ':' .. s[2]
  count = count + 1
  if r == n - 1 then break end
  r = math.min(r + math.max(1, math.floor(r / div)), n - 1)
end
redis.call('SET', KEYS[4], table.concat(out, '\n'), 'PX', ARGV[2])
return count
