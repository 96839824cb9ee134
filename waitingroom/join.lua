-- join: join the queue, or read a user's state (status), for a batch of users
-- in one call. A user's own state wins (purchased, admitted, expired), then
-- their place in the queue, then the sale's end.
-- KEYS[1] cfg, KEYS[2] q, KEYS[3] lane, KEYS[4] prefix of the presence hashes (seen_key), KEYS[5] skipped,
-- KEYS[6] expired, KEYS[7] adm, KEYS[8] tix, KEYS[9] buyers, KEYS[10] stats,
-- KEYS[11] units, then the rate keys of the requests that carry their checks
-- ARGV: triplets of op ("j" join, "s" status, "l" leave, "r" requeue), user,
-- and for a join a random 52-bit place (used by a prequeue join before the
-- start), for a requeue "place|gen": the place a node knew for a waiter in
-- the sale's generation gen. A requeue is a status that, when the user is
-- nowhere and Redis lost the keys since gen (the generation differs), puts
-- the user back at that place. An op with "+" carries the request's rate
-- checks: "j+12" is a join with the checks of limits 1 and 2 (gcra_spend's
-- spec), whose keys are the next ones from KEYS[12] on; the checks go
-- first, so a refused request does nothing else (one Redis server only;
-- ratelimit.Limiter.Foldable). A triplet "p", limits, "" (no reply) gives
-- the limits (gcra_limits) of the checks after it.
-- Returns {"nostate"} when the sale's live copy or units are missing; else one reply per
-- user, each a list:
--   {"purchased", order} {"admitted", jti, iat, exp} {"expired"}
--   {"waiting", position, queue_length, place, gen} {"prequeue", place, gen}
--   (a join that placed the user adds "new" to either)
--   {"lane", position, queue_length, place, gen} (back from a skip: admitted next)
--   (gen: the generation of the sale's keys, for the shopper's queue token)
--   {"closed"} {"sold_out"} {"not_open"} {"not_in_queue", gen} (from a
--   leave: {"not_in_queue"}) {"left", place}
--   {"restoring", gen} (Redis lost the queue and nodes are putting it back: a
--   newcomer waits, so that nobody lands ahead of a waiter being put back)
--   {"limited", wait, worst} (refused by its rate checks: gcra_spend's answer)
local cfg = hmap(KEYS[1])
if cfg == nil or redis.call('EXISTS', KEYS[11]) == 0 then return {'nostate'} end
local now = now_ms()
local state = eff_state(cfg, now)
local ended = (state == 'closed' or state == 'sold_out')
local return_window = num(cfg, 'return_window', 0) * 1000
local prequeue = (cfg.mode == 'prequeue' and now < num(cfg, 'starts', 0))
local qopens = num(cfg, 'qopens', 0)
local restoring = now < num(cfg, 'requeue_until', 0)
-- a newcomer waits while the sale is from before a Redis restart, as while
-- waiters are put back: the queue may lack some who will be (checked once
-- per call, and only when a newcomer would get a place)
local restarted_v
local function is_restarted()
  if restarted_v == nil then restarted_v = restarted(cfg) end
  return restarted_v
end
local joins = 0 -- new places made by this call
local requeued = 0 -- places put back by this call
local twoTo52 = 4503599627370496 -- arrivals after a prequeue's start queue behind every random place
-- The queue's and the lane's sizes, kept up to date by this call's own
-- changes, so each answer needs no ZCARD (and most need no lane lookup:
-- the lane is usually empty).
local q_n = redis.call('ZCARD', KEYS[2])
local lane_n = redis.call('ZCARD', KEYS[3])
local present = {} -- user, now, user, now, ...: written at the end

-- expire_ticket ends an admission whose ticket expired unused: its
-- reservation returns and its capacity frees.
local function expire_ticket(user, rec)
  redis.call('HINCRBY', KEYS[11], 'reserved', 0 - adm_dec(rec).r)
  redis.call('ZREM', KEYS[7], user)
  redis.call('HDEL', KEYS[8], user)
  redis.call('HINCRBY', KEYS[10], 'tickets_expired_total', 1)
end

local function queue_len()
  return q_n + lane_n
end

local gen = cfg.gen or ''

local function waiting(user)
  if lane_n > 0 then
    local r = redis.call('ZRANK', KEYS[3], user)
    if r then return {'lane', r + 1, queue_len(), redis.call('ZSCORE', KEYS[3], user), gen} end
  end
  local r = redis.call('ZRANK', KEYS[2], user)
  if r == false then return nil end
  if prequeue then return {'prequeue', redis.call('ZSCORE', KEYS[2], user), gen} end
  return {'waiting', r + 1, queue_len(), redis.call('ZSCORE', KEYS[2], user), gen}
end

-- own_state answers purchased, admitted or expired; with rejoin (a join) it
-- clears an expired state so the user can join again, at the back.
local function own_state(user, rejoin)
  local order = redis.call('HGET', KEYS[9], user)
  if order then return {'purchased', order} end
  local rec = redis.call('HGET', KEYS[8], user)
  if rec then
    local a = adm_dec(rec)
    if a.exp * 1000 > now then return {'admitted', a.jti, tostring(a.iat), tostring(a.exp)} end
    if not rejoin then return {'expired'} end
    expire_ticket(user, rec)
    return nil
  end
  if redis.call('SISMEMBER', KEYS[6], user) == 1 then
    if not rejoin then return {'expired'} end
    redis.call('SREM', KEYS[6], user)
    return nil
  end
  local sk = redis.call('HGET', KEYS[5], user)
  if sk then
    local f = split(sk, ':')
    if now - tonumber(f[2]) <= return_window and not ended then
      -- back within the return window: the priority lane, at the next tick
      redis.call('HDEL', KEYS[5], user)
      lane_n = lane_n + redis.call('ZADD', KEYS[3], f[1], user)
      return nil
    end
    if not rejoin then return {'expired'} end
    redis.call('HDEL', KEYS[5], user)
  end
  return nil
end

-- A final sale's queue has ended even while its set still exists (the
-- admitter deletes it at its next tick): a waiter is told the end, never a
-- place in a queue that no longer moves, nor a socket left open without it.
local function join(user, rnd)
  local own = own_state(user, true)
  if own then return own end
  if ended then return {state} end
  local w = waiting(user)
  if w then return w end
  if qopens > 0 and now < qopens then return {'not_open'} end
  if restoring or is_restarted() then return {'restoring'} end
  -- places are passed as strings: Lua prints numbers with 14 digits only
  local score = rnd
  if not prequeue then
    local seq = redis.call('HINCRBY', KEYS[10], 'seq', 1)
    if cfg.mode == 'prequeue' then seq = seq + twoTo52 end
    score = string.format('%.0f', seq)
  end
  redis.call('ZADD', KEYS[2], score, user)
  q_n = q_n + 1
  joins = joins + 1
  -- "new": placed by this join (the sources count it as a user)
  if prequeue then return {'prequeue', score, gen, 'new'} end
  return {'waiting', redis.call('ZRANK', KEYS[2], user) + 1, queue_len(), score, gen, 'new'}
end

-- status answers a user's state. With back ("place|gen": a requeue) it puts
-- a user who is nowhere back at that place if Redis lost the sale's keys
-- since generation gen.
local function status(user, back)
  local own = own_state(user, false)
  if own then return own end
  if ended then return {state} end
  local w = waiting(user)
  if w then return w end
  local place, old = string.match(back or '', '^(%d+)|(.*)$')
  if place and old ~= gen then
    q_n = q_n + redis.call('ZADD', KEYS[2], 'NX', place, user)
    requeued = requeued + 1
    -- arrivals after this one queue behind it
    local seq = tonumber(place)
    if cfg.mode == 'prequeue' then seq = seq - twoTo52 end
    if seq > tonumber(redis.call('HGET', KEYS[10], 'seq') or '0') then
      redis.call('HSET', KEYS[10], 'seq', string.format('%.0f', seq))
    end
    return waiting(user)
  end
  if restoring then return {'restoring', gen} end
  return {'not_in_queue', gen}
end

-- leave answers the place given up (the lane keeps the original one), so
-- that the caller can void queue tokens that remember it.
local function leave(user)
  local place = redis.call('ZSCORE', KEYS[2], user) or redis.call('ZSCORE', KEYS[3], user)
  local fromq, fromlane = redis.call('ZREM', KEYS[2], user), redis.call('ZREM', KEYS[3], user)
  q_n, lane_n = q_n - fromq, lane_n - fromlane
  local a = fromq + fromlane
  redis.call('HDEL', seen_key(KEYS[4], user), user)
  if a == 0 then return {'not_in_queue'} end
  return {'left', place}
end

local out = {}
local rk = 12 -- the next request's first rate key
local limits
for i = 1, #ARGV, 3 do
  local op, user, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local r
  if op == 'p' then
    limits = gcra_limits(user)
    op = nil
  elseif string.sub(op, 2, 2) == '+' then
    local wait, worst
    wait, worst, rk = gcra_spend(KEYS, rk, string.sub(op, 3), limits, now * 1000)
    op = string.sub(op, 1, 1)
    if wait > 0 then r = {'limited', wait, worst} end
  end
  if op == nil then
    -- the limits: no reply
  elseif r then
    -- refused by the limits: nothing done
  elseif op == 'j' then
    r = join(user, arg)
  elseif op == 'l' then
    r = leave(user)
  elseif op == 'r' then
    r = status(user, arg)
  else
    r = status(user, nil)
  end
  if op ~= nil then
    if op ~= 'l' and (r[1] == 'waiting' or r[1] == 'lane' or r[1] == 'prequeue') then
      present[#present + 1] = user -- a join or a poll is presence
      present[#present + 1] = now
    end
    out[#out + 1] = r
  end
end
if joins > 0 then redis.call('HINCRBY', KEYS[10], 'joins_total', joins) end
if requeued > 0 then redis.call('HINCRBY', KEYS[10], 'requeued_total', requeued) end
for i = 1, #present, 2 do redis.call('HSET', seen_key(KEYS[4], present[i]), present[i], present[i + 1]) end
return out
