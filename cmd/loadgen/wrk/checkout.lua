-- wrk script: POST checkout, each request a different user's ticket (from
-- the file named after "--", made by `loadgen tickets`), body
-- {"quantity":1}. Thread t of T takes tickets t, t+T, t+2T, ... so no two
-- threads send the same ticket; past the file's end a thread starts over
-- (the tickets are used by then: 401 ticket_used, counted as non-2xx; give
-- each run a fresh file, enough for it). The last line prints the 2xx
-- count for `loadgen verify`, which checks the run's orders in MySQL.
--
--   loadgen tickets --sale S -n 200000 --data-dir D --user-prefix wrk1- > /tmp/tickets.txt
--   wrk -t1 -c64 -d8s -s cmd/loadgen/wrk/checkout.lua http://127.0.0.1:8090/api/v1/sales/S/checkout -- /tmp/tickets.txt
--   loadgen verify --url http://127.0.0.1:8090 --sale S --data-dir D --user-prefix wrk1- -n <2xx> -c 64 --mysql-dsn DSN

-- setup runs in the main Lua state; each thread has a state of its own and
-- gets its globals "id" and "step" (the number of threads) from here.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
  -- every thread learns the final count: setup runs for all before any starts
  for _, t in ipairs(threads) do t:set("step", #threads) end
end

local tickets = {}
local n = 0

function init(args)
  for line in io.lines(args[1]) do
    tickets[#tickets + 1] = line
  end
  if #tickets == 0 then error("no tickets in " .. tostring(args[1])) end
  n = id
end

local body = '{"quantity":1}'

function request()
  local t = tickets[(n % #tickets) + 1]
  n = n + step
  return wrk.format("POST", nil, { ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  local bad = summary.errors.status
  local errs = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("checkouts/s %.0f p50 %.2fms p99 %.2fms non-2xx %d errors %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, errs))
  io.write(string.format("2xx %d\n", summary.requests - bad))
end
