-- Delete finished runs for good: every key of the run and its entries in the tenant's indexes.
-- ARGV: P, limit, rid* — the given runs (an explicit purge), or, with none given, up to ``limit`` runs
-- whose retention has passed (P:expiring). A run that is not finished is never purged. Returns the count.
local P, limit = ARGV[1], tonumber(ARGV[2])
local now = redis_now()
local rids = {}
for i = 3, #ARGV do table.insert(rids, ARGV[i]) end
if #rids == 0 then rids = redis.call("ZRANGEBYSCORE", P .. ":expiring", "-inf", now, "LIMIT", 0, limit) end
local n = 0
for _, rid in ipairs(rids) do
  local rk = runkey(P, rid)
  local f = redis.call("HMGET", rk, "status", "tenant", "kind", "idem")
  if not f[1] or TERMINAL[f[1]] then
    if f[2] then
      local base = P .. ":runs:" .. f[2]
      redis.call("ZREM", base, rid)
      redis.call("ZREM", base .. ":s:" .. f[1], rid)
      if f[3] then redis.call("ZREM", base .. ":k:" .. f[3], rid) end
      redis.call("ZREM", P .. ":finished:" .. f[2], rid)
      if f[4] and redis.call("GET", P .. ":idem:" .. f[2] .. ":" .. f[4]) == rid then
        redis.call("DEL", P .. ":idem:" .. f[2] .. ":" .. f[4])
      end
    end
    if f[2] then steer_purged(P, rid, f[2]) end
    for _, suffix in ipairs(RUN_KEYS) do redis.call("DEL", rk .. suffix) end
    redis.call("ZREM", P .. ":expiring", rid)
    if f[1] then n = n + 1 end
  end
end
return n
