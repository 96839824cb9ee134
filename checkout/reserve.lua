-- reserve: the checkout's atomic step, for one order or for several of the
-- sale at once (concurrent checkouts share a call: the sale's state below
-- is read once per call, not once per order). For each order, in turn and
-- as if alone: the ticket was used, the user already bought, fewer units
-- are available to this ticket than asked (its reservation, or the
-- unreserved units when its admission record is gone); else take the
-- units, record the buyer and the ticket, and leave a pending mark until
-- MySQL has the order. (The order is counted in orders_total by finalize,
-- once MySQL has it: an order the guard refuses or that is compensated
-- never existed.)
-- Before all that, for the whole call: the sale's live state is missing,
-- or the sale is closed; or the sale is stamped (cfg field rid) with the
-- run id of another Redis server process than this one: it came back from
-- a restart or a failover that may have lost its last writes, and sells
-- nothing until its state has been checked against MySQL again
-- (Service.Revalidate).
-- KEYS[1] cfg, KEYS[2] units, KEYS[3] tix, KEYS[4] buyers, KEYS[5] jti,
-- KEYS[6] pending
-- ARGV: per order, 4 values: user, ticket jti, quantity, order id
-- Returns, for the whole call, {"nostate"} {"stale"} {"closed"}; else per
-- order {"used"} {"inflight", order} {"bought", order} {"sold_out"} or
-- {"ok", kind} where kind is "held" or "sold": that reply itself for one
-- order, a list of them in ARGV's order for several.
-- only the fields this step reads, not the whole hash
local cfg, fields = {}, {'state', 'starts', 'ends', 'hold_ttl', 'rid'}
local vals = redis.call('HMGET', KEYS[1], unpack(fields))
for i, f in ipairs(fields) do
  if vals[i] then cfg[f] = vals[i] end
end
if cfg.state == nil or redis.call('EXISTS', KEYS[2]) == 0 then return {'nostate'} end
if restarted(cfg) then return {'stale'} end
local now = now_ms()
if eff_state(cfg, now) == 'closed' then return {'closed'} end
local kind = 'sold'
if num(cfg, 'hold_ttl', 0) > 0 then kind = 'held' end

-- The unit counts live in locals while the orders take from them, and are
-- written once at the end.
local remaining = tonumber(redis.call('HGET', KEYS[2], 'remaining'))
local reserved = tonumber(redis.call('HGET', KEYS[2], 'reserved'))
local took, taken = false, 0

local function one(user, jti, qty, order)
  local used = redis.call('HGET', KEYS[5], jti)
  if used then
    -- a ticket whose order MySQL has not settled yet is not used up
    if redis.call('HEXISTS', KEYS[6], used) == 1 then return {'inflight', used} end
    return {'used'}
  end
  local bought = redis.call('HGET', KEYS[4], user)
  if bought then
    if redis.call('HEXISTS', KEYS[6], bought) == 1 then return {'inflight', bought} end
    return {'bought', bought}
  end

  local fromTicket = 0
  local rec = redis.call('HGET', KEYS[3], user)
  if rec then
    local a = adm_dec(rec)
    if a.jti == jti then
      if qty > a.r then return {'sold_out'} end
      fromTicket = 1
      reserved = reserved - qty
      a.r = a.r - qty
      redis.call('HSET', KEYS[3], user, adm_enc(a))
    end
  end
  if fromTicket == 0 and qty > remaining - reserved then return {'sold_out'} end

  remaining = remaining - qty
  took, taken = true, taken + qty
  redis.call('HSET', KEYS[4], user, order)
  redis.call('HSET', KEYS[5], jti, order)
  redis.call('HSET', KEYS[6], order, pend_enc({qty = qty, jti = jti, from = fromTicket, kind = kind, ms = now, user = user}))
  return {'ok', kind}
end

local replies = {}
for i = 1, #ARGV - 3, 4 do
  replies[#replies + 1] = one(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3])
end
if took then
  redis.call('HSET', KEYS[2], 'remaining', remaining, 'reserved', reserved)
  redis.call('HINCRBY', KEYS[2], kind, taken)
end
if #replies == 1 then return replies[1] end
return replies
