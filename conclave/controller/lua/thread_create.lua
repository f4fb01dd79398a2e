-- Create a thread if the tenant has none of that id. ARGV: P, tenant, tid, multitask, metadata_json, now
-- Returns 1 (created) or 0 (it existed).
local P, tenant, tid, multitask, metadata, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
now = steer_fmt(steer_time())
local tk = thread_key(P, tenant, tid)
if redis.call("EXISTS", tk) == 1 then return 0 end
redis.call("HSET", tk, "id", tid, "tenant", tenant, "created_at", now, "multitask", multitask,
  "metadata", metadata, "n", 0, "active", "", "last", "")
redis.call("ZADD", P .. ":threads:" .. tenant, math.floor(tonumber(now) * 1000), tid)
return 1
