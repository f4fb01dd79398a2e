-- Make a new webhook signing secret current; the old current one keeps signing until previous_until.
-- ARGV: P, tenant, secret, previous_until. Returns the previous secret, or "" when there was none.
local key = ARGV[1] .. ":wh:secret:" .. ARGV[2]
local old = redis.call("HGET", key, "current")
redis.call("HSET", key, "current", ARGV[3])
if old then
  redis.call("HSET", key, "previous", old, "previous_until", ARGV[4])
  return old
end
redis.call("HDEL", key, "previous", "previous_until")
return ""
