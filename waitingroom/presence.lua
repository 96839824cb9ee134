-- presence: mark users present now, on Redis time, in one write for all the
-- sockets a node holds in a sale.
-- KEYS[1] seen (hash: user → last presence, Redis ms)
-- ARGV: user ids
-- Returns the number of users marked.
local now = now_ms()
local args = {}
for i = 1, #ARGV do
  args[#args + 1] = ARGV[i]
  args[#args + 1] = now
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
return #ARGV
