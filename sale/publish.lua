-- publish: write a sale's live copy if it is newer than the one in Redis,
-- and, when that changes the stored state, tell every node in the same step
-- (so a state change is never made without being announced).
-- KEYS[1] cfg hash, KEYS[2] units hash, KEYS[3] event stream (all the sale's:
-- one slot on Redis Cluster; the caller adds the sale to the set of sale ids
-- first, a key of another slot)
-- ARGV[1] sale id, ARGV[2] version, ARGV[3] "1" to create the units of a new
-- sale, ARGV[4] stock, ARGV[5] event stream max length, ARGV[6] state,
-- ARGV[7] a new generation id, ARGV[8] how long (ms) a queue Redis lost is
-- being put back, ARGV[9..] more field, value pairs
-- A copy written where none was gets a new generation ("gen"): nodes that
-- saw another one know Redis lost the sale's keys, and put back the waiters
-- they hold. Unless the sale is new, joins wait ("requeue_until") meanwhile,
-- so that nobody new lands ahead of a waiter being put back.
-- A change of the operator's message (msg, msg_at) is announced as an event
-- too ("msg", the text, and "at", its time in ms; "" and the clearing time
-- when cleared).
-- Returns 1 when written, 0 when Redis already had this version or a newer one.
local ver = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
local fresh = redis.call('EXISTS', KEYS[1]) == 0
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'remaining', ARGV[4], 'reserved', 0, 'held', 0, 'sold', 0, 'stock', ARGV[4])
end
if cur >= ver then return 0 end
local old = redis.call('HGET', KEYS[1], 'state')
local oldmsg = redis.call('HGET', KEYS[1], 'msg_at') or '0' 
local args = {}
for i = 9, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'ver', ver, 'state', ARGV[6], unpack(args))
if fresh then
  redis.call('HSET', KEYS[1], 'gen', ARGV[7])
  if ARGV[3] ~= '1' then
    redis.call('HSET', KEYS[1], 'requeue_until', now_ms() + tonumber(ARGV[8]))
  else
    -- a new sale's state is complete on this server from the start: stamp
    -- it (see checkout/stamp.lua), so a restore from before any stamp is
    -- noticed too
    redis.call('HSET', KEYS[1], 'rid', run_id())
  end
end
if old and old ~= ARGV[6] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 't', 'state', 'd', ARGV[6])
end
-- a new operator message (or its clearing) goes to every socket too
local newmsg = redis.call('HGET', KEYS[1], 'msg_at') or '0'
if not fresh and newmsg ~= oldmsg then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 't', 'msg', 'd', redis.call('HGET', KEYS[1], 'msg') or '', 'at', newmsg)
end
return 1
