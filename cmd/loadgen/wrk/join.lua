-- wrk script: POST join, each request a different user (a token from the
-- file named after "--", made by `loadgen tokens`) from a different address
-- in 10.0.0.0/8 (X-Forwarded-For: the server needs --trusted-proxies
-- 127.0.0.1/32), counted from the optional second argument (so that runs
-- in a row use different addresses). Thread t of T takes tokens t, t+T,
-- t+2T, ... so no two threads send the same user; past the file's end a
-- thread starts over (a rejoin: give each run a fresh file, enough for it).
--
--   loadgen tokens -n 300000 --data-dir D > /tmp/tokens.txt
--   wrk -t2 -c64 -d20s -s cmd/loadgen/wrk/join.lua http://127.0.0.1:8095/api/v1/sales/S/join -- /tmp/tokens.txt 0

-- setup runs in the main Lua state; each thread has a state of its own and
-- gets its globals "id" and "step" (the number of threads) from here.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
  -- every thread learns the final count: setup runs for all before any starts
  for _, t in ipairs(threads) do t:set("step", #threads) end
end

local tokens = {}
local n = 0
local offset = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  if #tokens == 0 then error("no tokens in " .. tostring(args[1])) end
  n = id
  offset = tonumber(args[2]) or 0
end

local function addr(i)
  i = i % 16777216
  return string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
end

function request()
  local tok = tokens[(n % #tokens) + 1]
  local hdr = { ["Authorization"] = "Bearer " .. tok, ["X-Forwarded-For"] = addr(offset + n + 1) }
  n = n + step
  return wrk.format("POST", nil, hdr, nil)
end

function done(summary, latency, requests)
  io.write(string.format("joins/s %.0f p50 %.2fms p99 %.2fms non-2xx %d errors %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
