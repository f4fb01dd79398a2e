-- Reserve a call's worst case in every enclosing scope — the run's scopes, its tenant's and its key's budgets
-- in every capped period — at once, or refuse naming the scope and limit that have no room (holding nothing).
-- ARGV: P, rid, owner, (client time, ignored: Redis's clock is used), res_id, ttl_s, scopes_json, amounts_json
-- Fenced by the owner token, like a commit: a worker whose run was taken over must not hold budget (its
-- hold would outlive it unreleased, and the new owner would find the budget spent by a call never made).
-- Returns {1, view}, {0, scope, limit, room}, or {-1, "lease lost"}; view is a flat list of field, value of the
-- ledger's cap|, used| and resv| fields of the reserved scopes after the hold (what the <budget> block shows).
local P, rid, owner, res_id, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[5], tonumber(ARGV[6])
local now = redis_now()
local scopes, amounts = cjson.decode(ARGV[7]), cjson.decode(ARGV[8])
local lk = lkey(P, rid)
local function view()
  local wanted, out = {}, {}
  for _, scope in ipairs(scopes) do wanted[scope] = true end
  local all = redis.call("HGETALL", lk)
  for j = 1, #all, 2 do
    local f = all[j]
    local kind, rest = string.match(f, "^(%a+)|(.*)$")
    if kind == "cap" or kind == "used" or kind == "resv" then
      local scope = string.match(rest, "^(.*)|[^|]*$")
      if wanted[scope] then out[#out + 1] = f; out[#out + 1] = all[j + 1] end
    end
  end
  return out
end
if redis.call("HEXISTS", P .. ":run:" .. rid .. ":resv", res_id) == 1 then return {1, view()} end  -- retried
if redis.call("HGET", P .. ":run:" .. rid, "owner") ~= owner then return {-1, "lease lost"} end
ledger_sweep(P, rid, now)
local held, any = {}, false
for _, scope in ipairs(scopes) do
  for limit, amount in pairs(amounts) do
    local cap = redis.call("HGET", lk, "cap|" .. scope .. "|" .. limit)
    if cap then
      local used = tonumber(redis.call("HGET", lk, "used|" .. scope .. "|" .. limit) or "0")
      local resv = tonumber(redis.call("HGET", lk, "resv|" .. scope .. "|" .. limit) or "0")
      local room = tonumber(cap) - used - resv
      if tonumber(amount) > room then
        return {0, scope, limit, string.format("%d", math.max(room, 0))}
      end
      held[scope] = held[scope] or {}
      held[scope][limit] = amount
      any = true
    end
  end
end
local outer, refusal = outer_reserve(P, run_outer(P, rid), amounts, now)
if refusal then return {0, refusal[1], refusal[2], refusal[3]} end
if not any and #outer == 0 then return {1, view()} end
for scope, h in pairs(held) do
  for limit, amount in pairs(h) do
    redis.call("HINCRBY", lk, "resv|" .. scope .. "|" .. limit, amount)
  end
end
local rk = P .. ":run:" .. rid
redis.call("HSET", rk .. ":resv", res_id, cjson.encode({o = owner, e = now + ttl, h = held, x = outer}))
redis.call("ZADD", rk .. ":resvexp", now + ttl, res_id)
return {1, view()}
