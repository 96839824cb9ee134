-- reserve: the checkout's atomic step. In this order: the sale is closed,
-- the ticket was used, the user already bought, fewer units are available
-- to this ticket than asked (its reservation, or the unreserved units when
-- its admission record is gone); else take the units, record the buyer and
-- the ticket, and leave a pending mark until MySQL has the order. (The
-- order is counted in orders_total by finalize, once MySQL has it: an order
-- the guard refuses or that is compensated never existed.)
-- Before all that: a sale stamped (cfg field rid) with the run id of
-- another Redis server process than this one came back from a restart or a
-- failover that may have lost its last writes; it sells nothing until its
-- state has been checked against MySQL again (Service.Revalidate).
-- KEYS[1] cfg, KEYS[2] units, KEYS[3] tix, KEYS[4] buyers, KEYS[5] jti,
-- KEYS[6] pending
-- ARGV[1] user, ARGV[2] ticket jti, ARGV[3] quantity, ARGV[4] order id
-- Returns {"nostate"} {"stale"} {"closed"} {"used"} {"inflight", order}
-- {"bought", order} {"sold_out"}, or {"ok", kind} where kind is "held" or "sold".
local cfg = hmap(KEYS[1])
if cfg == nil or redis.call('EXISTS', KEYS[2]) == 0 then return {'nostate'} end
if restarted(cfg) then return {'stale'} end
local now = now_ms()
if eff_state(cfg, now) == 'closed' then return {'closed'} end
local user, jti, qty, order = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

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

local remaining = tonumber(redis.call('HGET', KEYS[2], 'remaining'))
local reserved = tonumber(redis.call('HGET', KEYS[2], 'reserved'))
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

local kind = 'sold'
if num(cfg, 'hold_ttl', 0) > 0 then kind = 'held' end
redis.call('HSET', KEYS[2], 'remaining', remaining - qty, 'reserved', reserved)
redis.call('HINCRBY', KEYS[2], kind, qty)
redis.call('HSET', KEYS[4], user, order)
redis.call('HSET', KEYS[5], jti, order)
redis.call('HSET', KEYS[6], order, pend_enc({qty = qty, jti = jti, from = fromTicket, kind = kind, ms = now, user = user}))
return {'ok', kind}
