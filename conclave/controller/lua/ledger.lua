-- Budget ledger helpers, prepended to the controller scripts (after tenant.lua).
-- P:run:<rid>:ledger  hash  cap|<scope>|<limit>, used|<scope>|<limit>, resv|<scope>|<limit>,
--                           over|<scope>|<limit> (usage a call reported above what its cap had room for),
--                           by|<dim>|<name>|<metric>
-- P:run:<rid>:resv    hash  reservation id -> {o=owner, e=expiry, h={scope={limit=amount}}, x=outer holds}
-- P:run:<rid>:resvexp zset  reservation id by expiry (Redis's clock)
-- Amounts are integers passed as strings (USD in pico-dollars) so that no float formatting reaches HINCRBY.
local function lkey(P, rid) return P .. ":run:" .. rid .. ":ledger" end

-- Release one reservation; returns what it held outside the run (for the period of its usage), or nil.
local function ledger_release(P, rid, res_id)
  local rk = P .. ":run:" .. rid
  local raw = redis.call("HGET", rk .. ":resv", res_id)
  if not raw then return nil end
  local r = cjson.decode(raw)
  for scope, held in pairs(r.h) do
    for limit, amount in pairs(held) do
      -- "-0" is not an integer to Redis: a free model's USD hold is "0" and must be skipped
      if tostring(amount) ~= "0" then
        redis.call("HINCRBY", lkey(P, rid), "resv|" .. scope .. "|" .. limit, "-" .. amount)
      end
    end
  end
  outer_release(r.x)
  redis.call("HDEL", rk .. ":resv", res_id)
  redis.call("ZREM", rk .. ":resvexp", res_id)
  return r.x or {}
end

-- Release reservations that expired (their worker stopped renewing them).
local function ledger_sweep(P, rid, now)
  local rk = P .. ":run:" .. rid
  local released = 0
  for _, res_id in ipairs(redis.call("ZRANGEBYSCORE", rk .. ":resvexp", "-inf", now)) do
    if ledger_release(P, rid, res_id) then released = released + 1 end
  end
  return released
end

local function ledger_release_foreign(P, rid, owner)
  local rk = P .. ":run:" .. rid
  local all = redis.call("HGETALL", rk .. ":resv")
  for i = 1, #all, 2 do
    if cjson.decode(all[i + 1]).o ~= owner then ledger_release(P, rid, all[i]) end
  end
end

local function ledger_release_all(P, rid)
  local rk = P .. ":run:" .. rid
  for _, res_id in ipairs(redis.call("HKEYS", rk .. ":resv")) do ledger_release(P, rid, res_id) end
end

-- op = {res = id or "", scopes = [...], used = {limit = "n"}, by = {"model|m|input_tokens" = "n"}}
-- A capped limit records at most the room it has (the released hold plus what is left); the rest is
-- ``over``: a cap is never overshot, and usage above its hold is visible, never silently dropped.
local function ledger_commit(P, rid, owner, now, op)
  local outer_held = nil
  if op.res and op.res ~= "" then outer_held = ledger_release(P, rid, op.res) end
  local lk = lkey(P, rid)
  for _, scope in ipairs(op.scopes) do
    for limit, amount in pairs(op.used) do
      if amount ~= "0" then
        local cap = redis.call("HGET", lk, "cap|" .. scope .. "|" .. limit)
        if cap then
          local u = tonumber(redis.call("HGET", lk, "used|" .. scope .. "|" .. limit) or "0")
          local r = tonumber(redis.call("HGET", lk, "resv|" .. scope .. "|" .. limit) or "0")
          local n = tonumber(amount)
          local fits = math.min(n, math.max(tonumber(cap) - u - r, 0))
          if fits > 0 then redis.call("HINCRBY", lk, "used|" .. scope .. "|" .. limit, string.format("%d", fits)) end
          if n > fits then redis.call("HINCRBY", lk, "over|" .. scope .. "|" .. limit, string.format("%d", n - fits)) end
        else
          redis.call("HINCRBY", lk, "used|" .. scope .. "|" .. limit, amount)
        end
      end
    end
  end
  for field, amount in pairs(op.by or {}) do
    if amount ~= "0" then redis.call("HINCRBY", lk, "by|" .. field, amount) end
  end
  if next(op.used) ~= nil then
    outer_use(P, run_outer(P, rid), op.used, op.by, now, holds_by_period(outer_held))
  end
end
