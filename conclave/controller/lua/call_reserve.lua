-- Reserve a call made outside any run (the OpenAI-compatible endpoint) in its tenant's and key's budgets,
-- with the same arithmetic as a run's calls, so a tenant's runs and endpoint calls share one cap.
-- ARGV: P, tenant, key ("" = none), res_id, ttl_s, amounts_json. Returns {1} or {0, scope, limit, room}.
local P, tenant, key, res_id, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local amounts = cjson.decode(ARGV[6])
local now = redis_now()
local hk, ek = P .. ":callresv:" .. tenant, P .. ":callresvexp:" .. tenant
if redis.call("HEXISTS", hk, res_id) == 1 then return {1} end  -- retried
for _, old in ipairs(redis.call("ZRANGEBYSCORE", ek, "-inf", now)) do
  local raw = redis.call("HGET", hk, old)
  if raw then outer_release(cjson.decode(raw).x) end
  redis.call("HDEL", hk, old)
  redis.call("ZREM", ek, old)
end
local outer, refusal = outer_reserve(P, outer_of(tenant, key), amounts, now)
if refusal then return {0, refusal[1], refusal[2], refusal[3]} end
redis.call("HSET", hk, res_id, cjson.encode({x = outer, e = now + ttl}))
redis.call("ZADD", ek, now + ttl, res_id)
return {1}
