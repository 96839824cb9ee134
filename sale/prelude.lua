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

-- split cuts s at every sep (one plain character).
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

-- Note: write "0 - x", never "-x": Lua prints -(0) as "-0", which Redis's
-- HINCRBY refuses as not an integer.

-- seen_key is the presence hash of a user under prefix: one of 8192 small
-- hashes by the first two bytes of SHA-1(user) (sale.Keys.SeenKey in Go).
local function seen_key(prefix, user)
  return prefix .. (tonumber(string.sub(redis.sha1hex(user), 1, 4), 16) % 8192)
end

-- restarted reports whether a sale's state (its cfg) was last checked
-- against MySQL on another Redis server process than this one (cfg field
-- rid, see checkout/stamp.lua): Redis restarted or failed over since and
-- may have lost its last writes, so nothing may be sold or admitted on it
-- until it is checked again (checkout's Service.Revalidate).
local function restarted(cfg)
  return cfg.rid ~= nil and cfg.rid ~= string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
