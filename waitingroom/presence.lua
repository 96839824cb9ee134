-- presence: mark users present now, on Redis time, in one write for all the
-- sockets a node holds in a sale.
-- KEYS[1] seen
-- ARGV: user ids
-- Returns the number of users marked.
local now = now_ms()
local args = {}
for i = 1, #ARGV do
  args[#args + 1] = now
  args[#args + 1] = ARGV[i]
end
if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
return #ARGV
