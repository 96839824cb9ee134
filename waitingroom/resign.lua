-- resign: give up a lease, only if the caller still holds it.
-- KEYS[1] lease
-- ARGV[1] the caller's lease value "holder|fence"
-- Returns 1 when released, 0 when the caller did not hold it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
