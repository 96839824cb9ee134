-- admit: one admitter tick for one sale. Expires tickets past their exp,
-- then admits present shoppers from the head (the priority lane first) at
-- the operator's rate (GCRA on Redis time, state in the bucket key), never
-- beyond max_active live tickets, and only while a unit is unreserved: each
-- admission reserves min(per_user_limit, unreserved) units, so every admitted
-- shopper can buy. Absent shoppers at the head are skipped.
-- KEYS[1] cfg, KEYS[2] q, KEYS[3] lane, KEYS[4] prefix of the presence hashes (seen_key), KEYS[5] skipped,
-- KEYS[6] expired, KEYS[7] adm, KEYS[8] tix, KEYS[9] units, KEYS[10] bucket,
-- KEYS[11] lease, KEYS[12] stats, KEYS[13] ev, KEYS[14] passes (pass
-- holders, admitted first: see pass.lua)
-- ARGV[1] the caller's lease value "holder|fence", ARGV[2] most admissions
-- this call, ARGV[3] jti prefix (random, unique per call), ARGV[4] most skips
-- this call, ARGV[5] event stream max length
-- Returns {"fenced"} when the caller does not hold the lease, {"nostate"}
-- when the sale's live copy or units are missing, {"stale"} while it is from
-- before a Redis restart (see restarted in the prelude), else
-- {"ok", state, admitted, skipped, expired, queue_length, active, unreserved}.
if redis.call('GET', KEYS[11]) ~= ARGV[1] then return {'fenced'} end
local cfg = hmap(KEYS[1])
if cfg == nil or redis.call('EXISTS', KEYS[9]) == 0 then return {'nostate'} end
-- Redis came back behind MySQL: its units and queue may be old; admit
-- nobody until the checkout has checked the sale again
if restarted(cfg) then return {'stale'} end
local now = now_ms()
local state = eff_state(cfg, now)
local maxlen = ARGV[5]

-- the caller's fencing token: every admission event carries it, so that
-- who admitted what can be checked after the fact
local fence = string.match(ARGV[1], '|(%d+)$') or ''

local function event(kind, user, data)
  redis.call('XADD', KEYS[13], 'MAXLEN', '~', maxlen, '*', 't', kind, 'u', user, 'd', data, 'f', fence)
end

-- 1. Tickets past their exp end: reservation back, capacity free.
local expired = 0
local gone = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, 1000)
for _, user in ipairs(gone) do
  local rec = redis.call('HGET', KEYS[8], user)
  if rec then
    redis.call('HINCRBY', KEYS[9], 'reserved', 0 - adm_dec(rec).r)
    redis.call('HDEL', KEYS[8], user)
    redis.call('SADD', KEYS[6], user)
    event('exp', user, '')
  end
  redis.call('ZREM', KEYS[7], user)
  expired = expired + 1
end
if expired > 0 then redis.call('HINCRBY', KEYS[12], 'tickets_expired_total', expired) end

-- 2. A final sale ends its queue.
if state == 'closed' or state == 'sold_out' then
  if redis.call('EXISTS', KEYS[2]) + redis.call('EXISTS', KEYS[3]) > 0 then
    -- once: the queue's end takes every presence hash with it. UNLINK,
    -- not DEL: DEL of a million-waiter queue blocked Redis for about
    -- 200 ms; UNLINK frees it in Redis's background thread (small
    -- values, such as each presence hash, it still frees at once)
    redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[14])
    for b = 0, 8191, 512 do
      local keys = {}
      for i = b, b + 511 do keys[#keys + 1] = KEYS[4] .. i end
      redis.call('UNLINK', unpack(keys))
    end
  end
  return {'ok', state, 0, 0, expired, 0, redis.call('ZCARD', KEYS[7]), 0}
end

local remaining = tonumber(redis.call('HGET', KEYS[9], 'remaining'))
local reserved = tonumber(redis.call('HGET', KEYS[9], 'reserved'))
local unreserved = remaining - reserved
local active = redis.call('ZCARD', KEYS[7])
local admitted, skipped = 0, 0
local per = num(cfg, 'per_user', 1)
local ttl = num(cfg, 'ttl', 300)
local iat = math.floor(now / 1000)
local exp = iat + ttl

-- admit_user admits user (taken out of the zset from): a reservation of
-- min(per_user_limit, unreserved) units, an admission record, a live
-- ticket, an event.
local function admit_user(user, from)
  local r = math.min(per, unreserved)
  unreserved = unreserved - r
  reserved = reserved + r
  admitted = admitted + 1
  local jti = ARGV[3] .. string.format('%x', admitted)
  redis.call('ZREM', from, user)
  redis.call('HDEL', seen_key(KEYS[4], user), user) -- presence only matters while waiting
  redis.call('HSET', KEYS[8], user, adm_enc({jti = jti, iat = iat, exp = exp, r = r}))
  redis.call('ZADD', KEYS[7], exp * 1000, user)
  event('adm', user, jti .. '|' .. iat .. '|' .. exp)
end

-- 3. Holders of an operator's pass first, at this tick, outside the rate
-- (within max_active and the units; each counts as an admission).
-- A pass holder waits in the lane too (so status shows them first); one
-- who left or was banned since is no longer there, and is dropped.
if state == 'open' then
  local n = math.min(num(cfg, 'max_active', 0) - active, unreserved, tonumber(ARGV[2]))
  while n > 0 do
    local head = redis.call('ZRANGE', KEYS[14], 0, 0)
    if #head == 0 then break end
    local user = head[1]
    if redis.call('ZSCORE', KEYS[3], user) then
      redis.call('ZREM', KEYS[3], user)
      admit_user(user, KEYS[14])
      n = n - 1
    else
      redis.call('ZREM', KEYS[14], user)
    end
  end
  active = active + admitted
end
local passed = admitted

if state == 'open' and unreserved > 0 then
  -- GCRA: one admission every T ms, a burst of one second's admissions.
  -- The API keeps the rate within [0.001, 1e6]; a value outside (written
  -- before that check) is clamped here, so that every number below stays
  -- finite and the bucket's SET at the end cannot fail after the
  -- admissions are written (Redis does not roll a script back).
  local rate = tonumber(cfg.rate) or 0
  if not (rate >= 0.001) then rate = 0.001 end -- NaN too
  if not (rate <= 1000000) then rate = 1000000 end
  local T = 1000 / rate
  local burst = math.max(1, math.floor(rate))
  -- The bucket holds "tat|T": the theoretical arrival time and the interval
  -- it was built with. When the operator changes the rate, the debt ahead
  -- of now is rescaled to the new interval, so a new rate takes effect at
  -- this tick (a raise from 0.2/s to 40/s does not wait out a 5 s interval).
  local bucket = split(redis.call('GET', KEYS[10]) or '0|0', '|')
  local tat, oldT = tonumber(bucket[1]) or 0, tonumber(bucket[2]) or 0
  if tat < now then tat = now end
  if oldT > 0 and oldT ~= T then tat = now + (tat - now) * T / oldT end
  local allow = math.floor((now + burst * T - tat) / T + 1e-9)
  local free = num(cfg, 'max_active', 0) - active
  local want = passed + math.min(allow, free, tonumber(ARGV[2]))
  local abandon = num(cfg, 'abandon', 60) * 1000
  local maxskip = tonumber(ARGV[4])

  while admitted < want and unreserved > 0 do
    -- the lane (shoppers back from a skip) goes first; then the head
    local user, from = nil, nil
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)
    if #head > 0 then
      user, from = head[1], KEYS[3]
    else
      head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
      if #head == 0 then break end
      user, from = head[1], KEYS[2]
      local seen = tonumber(redis.call('HGET', seen_key(KEYS[4], user), user) or '0')
      if seen < now - abandon then
        -- absent: skipped, keeping the place for a comeback
        redis.call('ZREM', KEYS[2], user)
        redis.call('HDEL', seen_key(KEYS[4], user), user)
        redis.call('HSET', KEYS[5], user, head[2] .. ':' .. now)
        skipped = skipped + 1
        user = nil
        if skipped >= maxskip then break end
      end
    end
    if user then admit_user(user, from) end
  end
  if admitted > passed then
    tat = tat + (admitted - passed) * T
    redis.call('SET', KEYS[10], string.format('%.3f|%.6f', tat, T), 'PX', math.ceil(tat - now + 60000))
  end
  if skipped > 0 then redis.call('HINCRBY', KEYS[12], 'skipped_total', skipped) end
end
if admitted > 0 then
  redis.call('HSET', KEYS[9], 'reserved', reserved)
  redis.call('HINCRBY', KEYS[12], 'admitted_total', admitted)
end

local qlen = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
return {'ok', state, admitted, skipped, expired, qlen, active + admitted, unreserved}
