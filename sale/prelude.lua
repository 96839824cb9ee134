-- Shared helpers, prepended to every flashsale script.

-- now_ms is Redis's clock in milliseconds: the one clock every node shares.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- hmap reads a hash as a Lua table; nil when the key is missing.
local function hmap(key)
  local raw = redis.call('HGETALL', key)
  if #raw == 0 then return nil end
  local m = {}
  for i = 1, #raw, 2 do m[raw[i]] = raw[i + 1] end
  return m
end

-- num reads a numeric field, with a default.
local function num(m, field, def)
  local v = m and m[field]
  if v == nil or v == '' then return def end
  return tonumber(v)
end

-- eff_state is the sale's state at now (ms): a stored upcoming sale is open
-- once it starts; a sale not final is closed once it ends. sale.Effective in
-- Go is the same rule.
local function eff_state(cfg, now)
  local st = cfg.state
  if st == 'closed' or st == 'sold_out' then return st end
  local ends = num(cfg, 'ends', 0)
  if ends > 0 and now >= ends then return 'closed' end
  if st == 'upcoming' and now >= num(cfg, 'starts', 0) then return 'open' end
  return st
end

-- split cuts s at every sep (one plain character). Only for strings whose
-- every part is ours (numbers, ids we mint); records that carry a user id
-- go through the codecs below.
local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then
      out[#out + 1] = string.sub(s, i)
      return out
    end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

-- Records. A user id may hold any byte ("auth0|abc", "a:b"), so a record
-- that carries one keeps it as its last field, after a fixed number of
-- fields that never hold "|" (numbers, flags, ids we mint): decoding takes
-- those from the left and the rest, whatever it holds, is the user. Each
-- record has one encoder and one decoder here, and their twins in Go
-- (sale/records.go); a test checks that both agree.

-- cut takes n fields from the left of s, then the rest as field n + 1;
-- nil when s has fewer than n separators.
local function cut(s, n)
  local out, i = {}, 1
  for k = 1, n do
    local j = string.find(s, '|', i, true)
    if not j then return nil end
    out[k] = string.sub(s, i, j - 1)
    i = j + 1
  end
  out[n + 1] = string.sub(s, i)
  return out
end

-- Admission record (tix: user -> record): "jti|iat|exp|reserved".
local function adm_enc(a)
  return a.jti .. '|' .. a.iat .. '|' .. a.exp .. '|' .. a.r
end
local function adm_dec(s)
  local f = cut(s, 3)
  return {jti = f[1], iat = tonumber(f[2]), exp = tonumber(f[3]), r = tonumber(f[4])}
end

-- Pending mark (pending: order -> mark), the Redis step of an order MySQL
-- does not have yet: "qty|jti|from|kind|ms|flag|user". from is "1" when the
-- units came from the ticket's reservation; kind "held" or "sold"; flag "c"
-- once its request gave the order up (compensating.lua), else "-".
local function pend_enc(m)
  return table.concat({m.qty, m.jti, m.from, m.kind, m.ms, m.comp and 'c' or '-', m.user}, '|')
end
local function pend_dec(s)
  local f = cut(s, 6)
  if f == nil then return nil end
  return {qty = tonumber(f[1]), jti = f[2], from = f[3], kind = f[4], ms = f[5], comp = f[6] == 'c', user = f[7]}
end

-- Held-order record (orders: order -> record), an order that holds units:
-- "qty|status|user".
local function hold_enc(qty, user)
  return qty .. '|held|' .. user
end
local function hold_dec(s)
  local f = cut(s, 2)
  if f == nil then return nil end
  return {qty = tonumber(f[1]), status = f[2], user = f[3]}
end

-- Note: write "0 - x", never "-x": Lua prints -(0) as "-0", which Redis's
-- HINCRBY refuses as not an integer.

-- seen_key is the presence hash of a user under prefix: one of 8192 small
-- hashes by the first two bytes of SHA-1(user) (sale.Keys.SeenKey in Go).
local function seen_key(prefix, user)
  return prefix .. (tonumber(string.sub(redis.sha1hex(user), 1, 4), 16) % 8192)
end

-- run_id is this Redis server process's run id: it changes with every
-- restart or failover.
local function run_id()
  -- a plain find, not a pattern: about 2 µs less on every checkout
  local info = redis.call('INFO', 'server')
  local i = string.find(info, 'run_id:', 1, true)
  if i == nil then return nil end
  return string.sub(info, i + 7, i + 46) -- a run id is 40 hex digits
end

-- restarted reports whether a sale's state (its cfg) was last checked
-- against MySQL on another Redis server process than this one (cfg field
-- rid, see checkout/stamp.lua): Redis restarted or failed over since and
-- may have lost its last writes, so nothing may be sold or admitted on it
-- until it is checked again (checkout's Service.Revalidate).
local function restarted(cfg)
  return cfg.rid ~= nil and cfg.rid ~= run_id()
end
