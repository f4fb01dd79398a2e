-- Renew the ledger holds of a worker's runs (with its leases): a hold lives while its worker does, so a
-- model call that outlives the hold's TTL keeps its hold instead of having it swept while it still runs.
-- ARGV: P, ttl_s, then per run: rid, owner
-- Returns the rids whose tenant or key has a budget (every call of theirs reserves), so a budget set while a
-- run is in flight reaches it; a run's own caps never change while it runs.
local P, ttl = ARGV[1], tonumber(ARGV[2])
local now = redis_now()
local must = {}
for i = 3, #ARGV, 2 do
  local rid, owner = ARGV[i], ARGV[i + 1]
  local rk = P .. ":run:" .. rid
  if redis.call("HGET", rk, "owner") == owner then
    for _, res_id in ipairs(redis.call("HKEYS", rk .. ":resv")) do
      redis.call("ZADD", rk .. ":resvexp", "XX", now + ttl, res_id)
    end
    local outer = false
    for _, scope in ipairs(run_outer(P, rid)) do
      if redis.call("EXISTS", P .. ":budget:" .. scope) == 1 then outer = true end
    end
    if outer then table.insert(must, rid) end
  end
end
return must
