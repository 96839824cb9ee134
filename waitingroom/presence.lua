-- presence: mark users present now, on Redis time, in one call for all the
-- sockets a node holds in a sale.
-- KEYS[1] prefix of the presence hashes (user → last presence, Redis ms;
-- seen_key picks a user's hash)
-- ARGV: user ids
-- Returns the number of users marked.
local now = now_ms()
local byKey = {}
for i = 1, #ARGV do
  local key = seen_key(KEYS[1], ARGV[i])
  local t = byKey[key]
  if t == nil then
    t = {}
    byKey[key] = t
  end
  t[#t + 1] = ARGV[i]
  t[#t + 1] = now
end
for key, t in pairs(byKey) do redis.call('HSET', key, unpack(t)) end
return #ARGV
