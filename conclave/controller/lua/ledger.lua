-- Budget ledger helpers, prepended to the controller scripts and to reserve.lua.
-- P:run:<rid>:ledger  hash  cap|<scope>|<limit>, used|<scope>|<limit>, resv|<scope>|<limit>, by|<dim>|<name>|<metric>
-- P:run:<rid>:resv    hash  reservation id -> {o=owner, e=expiry, h={scope={limit=amount}}} (what was held)
-- P:run:<rid>:resvexp zset  reservation id by expiry
-- Amounts are integers passed as strings (USD in pico-dollars) so that no float formatting reaches HINCRBY.
local function lkey(P, rid) return P .. ":run:" .. rid .. ":ledger" end

local function ledger_release(P, rid, res_id)
  local rk = P .. ":run:" .. rid
  local raw = redis.call("HGET", rk .. ":resv", res_id)
  if not raw then return 0 end
  local r = cjson.decode(raw)
  for scope, held in pairs(r.h) do
    for limit, amount in pairs(held) do
      -- "-0" is not an integer to Redis: a free model's USD hold is "0" and must be skipped
      if tostring(amount) ~= "0" then
        redis.call("HINCRBY", lkey(P, rid), "resv|" .. scope .. "|" .. limit, "-" .. amount)
      end
    end
  end
  redis.call("HDEL", rk .. ":resv", res_id)
  redis.call("ZREM", rk .. ":resvexp", res_id)
  return 1
end

-- Release reservations that expired, or that a worker which no longer owns the run left behind.
local function ledger_sweep(P, rid, now)
  local rk = P .. ":run:" .. rid
  local released = 0
  for _, res_id in ipairs(redis.call("ZRANGEBYSCORE", rk .. ":resvexp", "-inf", now)) do
    released = released + ledger_release(P, rid, res_id)
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
local function ledger_commit(P, rid, owner, now, op)
  if op.res and op.res ~= "" then ledger_release(P, rid, op.res) end
  local lk = lkey(P, rid)
  for _, scope in ipairs(op.scopes) do
    for limit, amount in pairs(op.used) do
      if amount ~= "0" then redis.call("HINCRBY", lk, "used|" .. scope .. "|" .. limit, amount) end
    end
  end
  for field, amount in pairs(op.by or {}) do
    if amount ~= "0" then redis.call("HINCRBY", lk, "by|" .. field, amount) end
  end
end
