-- Tenant and key budgets: the ledger's scopes above a run. Prepended to every script, before ledger.lua.
-- P:budget:<scope>             hash  cap|<period>|<limit> → cap   (scope = tenant/<t> or key/<k>)
-- P:spend:<scope>:<period>:<id> hash  used|<limit>, resv|<limit>, over|<limit>, by|model|<m>|<metric>
--   period: daily (id YYYY-MM-DD), monthly (id YYYY-MM), none (id "all"), all in UTC on Redis's clock, so
--   a period "resets" by its key changing: nothing has to run at midnight, and no reset can be lost.
-- P:callresv:<tenant>          hash  hold id → held (holds of calls outside any run: the OpenAI endpoint)
-- P:callresvexp:<tenant>       zset  hold id by expiry

local PERIODS = {"daily", "monthly", "none"}
local PERIOD_TTL = {daily = 40 * 86400, monthly = 400 * 86400}

-- Civil date of a Unix time (days since 1970-01-01 → year, month, day; H. Hinnant's algorithm).
local function civil(now)
  local z = math.floor(now / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function period_id(period, now)
  if period == "none" then return "all" end
  local y, m, d = civil(now)
  if period == "monthly" then return string.format("%04d-%02d", y, m) end
  return string.format("%04d-%02d-%02d", y, m, d)
end

local function spend_key(P, scope, period, now)
  return P .. ":spend:" .. scope .. ":" .. period .. ":" .. period_id(period, now)
end

-- The outer scopes of a run: its tenant, and the key that submitted it (when one did).
local function outer_of(tenant, key)
  local out = {"tenant/" .. tenant}
  if key and key ~= "" then table.insert(out, "key/" .. key) end
  return out
end

local function run_outer(P, rid)
  local f = redis.call("HMGET", P .. ":run:" .. rid, "tenant", "key")
  if not f[1] then return {} end
  return outer_of(f[1], f[2])
end

-- Hold amounts in every outer scope that has a cap for them, in every capped period, or refuse naming the
-- binding scope (``tenant/<t>@<period>``), the limit and the room. Returns held, nil or nil, refusal.
-- held = list of {s = scope, p = period, k = spend key, h = {limit = amount}}.
local function outer_reserve(P, scopes, amounts, now)
  local held = {}
  for _, scope in ipairs(scopes) do
    local bk = P .. ":budget:" .. scope
    if redis.call("EXISTS", bk) == 1 then
      for _, period in ipairs(PERIODS) do
        local sk = spend_key(P, scope, period, now)
        local h, any = {}, false
        for limit, amount in pairs(amounts) do
          local cap = redis.call("HGET", bk, "cap|" .. period .. "|" .. limit)
          if cap then
            local used = tonumber(redis.call("HGET", sk, "used|" .. limit) or "0")
            local resv = tonumber(redis.call("HGET", sk, "resv|" .. limit) or "0")
            local room = tonumber(cap) - used - resv
            if tonumber(amount) > room then
              return nil, {scope .. "@" .. period, limit, string.format("%d", math.max(room, 0))}
            end
            h[limit] = amount
            any = true
          end
        end
        if any then table.insert(held, {s = scope, p = period, k = sk, h = h}) end
      end
    end
  end
  for _, entry in ipairs(held) do
    for limit, amount in pairs(entry.h) do
      redis.call("HINCRBY", entry.k, "resv|" .. limit, amount)
    end
  end
  return held, nil
end

local function outer_release(held)
  for _, entry in ipairs(held or {}) do
    for limit, amount in pairs(entry.h) do
      if tostring(amount) ~= "0" then redis.call("HINCRBY", entry.k, "resv|" .. limit, "-" .. amount) end
    end
  end
end

local function touch_ttl(key, period)
  local ttl = PERIOD_TTL[period]
  if ttl and redis.call("TTL", key) == -1 then redis.call("EXPIRE", key, ttl) end
end

-- Record usage in every outer scope and period. A capped limit records at most its room (what was held
-- for this call plus what is left); anything above is counted as ``over`` and never as used, so a cap
-- is never overshot and the excess is visible. ``holds`` maps "<scope>|<period>" → the spend key the
-- call's hold was in (usage of a call reserved before midnight lands in the period it was reserved in).
local function outer_use(P, scopes, used, by, now, holds)
  for _, scope in ipairs(scopes) do
    local bk = P .. ":budget:" .. scope
    local budgeted = redis.call("EXISTS", bk) == 1
    for _, period in ipairs(PERIODS) do
      local sk = holds[scope .. "|" .. period] or spend_key(P, scope, period, now)
      for limit, amount in pairs(used) do
        local n = tonumber(amount)
        if n ~= 0 then
          local cap = budgeted and redis.call("HGET", bk, "cap|" .. period .. "|" .. limit)
          if cap then
            local u = tonumber(redis.call("HGET", sk, "used|" .. limit) or "0")
            local r = tonumber(redis.call("HGET", sk, "resv|" .. limit) or "0")
            local room = math.max(tonumber(cap) - u - r, 0)
            local fits = math.min(n, room)
            if fits > 0 then redis.call("HINCRBY", sk, "used|" .. limit, string.format("%d", fits)) end
            if n > fits then redis.call("HINCRBY", sk, "over|" .. limit, string.format("%d", n - fits)) end
          else
            redis.call("HINCRBY", sk, "used|" .. limit, amount)
          end
        end
      end
      for field, amount in pairs(by or {}) do
        if amount ~= "0" and string.sub(field, 1, 6) == "model|" then redis.call("HINCRBY", sk, "by|" .. field, amount) end
      end
      touch_ttl(sk, period)
    end
  end
end

local function holds_by_period(held)
  local out = {}
  for _, entry in ipairs(held or {}) do out[entry.s .. "|" .. entry.p] = entry.k end
  return out
end
