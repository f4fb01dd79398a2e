-- Commit a call made outside any run: release its hold and record its usage in the tenant's and key's
-- spend (the period it was reserved in). Applied once per hold id, however often it is retried.
-- ARGV: P, tenant, key, res_id, used_json, by_json
local P, tenant, key, res_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local used, by = cjson.decode(ARGV[5]), cjson.decode(ARGV[6])
local now = redis_now()
local hk, ek, dk = P .. ":callresv:" .. tenant, P .. ":callresvexp:" .. tenant, P .. ":calldone:" .. tenant
if redis.call("HEXISTS", dk, res_id) == 1 then return 0 end
local raw = redis.call("HGET", hk, res_id)
local held = {}
if raw then
  held = cjson.decode(raw).x
  outer_release(held)
  redis.call("HDEL", hk, res_id)
  redis.call("ZREM", ek, res_id)
end
outer_use(P, outer_of(tenant, key), used, by, now, holds_by_period(held))
redis.call("HSET", dk, res_id, math.floor(now))
if redis.call("TTL", dk) == -1 then redis.call("EXPIRE", dk, 86400) end
return 1
