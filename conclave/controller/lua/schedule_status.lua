-- Pause or resume a tenant's schedule. Resuming starts from now: the ticks that passed while it was
-- paused never run. A pending tick (claimed before the pause) is still recorded by its claimer.
-- ARGV: P, sid, tenant, status ("active" | "paused"), now, next_due (unix s, for "active"; "" = none left)
-- Returns {"ok", status} | {"missing"} | {"ended"}
local P, sid, tenant, status, now, next_due = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local sk = P .. ":sched:" .. sid
local f = redis.call("HMGET", sk, "status", "tenant", "cursor")
if not f[1] or f[2] ~= tenant then return {"missing"} end
if f[1] == "ended" then return {"ended"} end
if status == "paused" then
  redis.call("HSET", sk, "status", "paused", "next_at", "")
  redis.call("ZREM", P .. ":sched:due", sid)
  return {"ok", "paused"}
end
if f[1] == "active" then return {"ok", "active"} end
if not f[3] or f[3] == "" or tonumber(now) > tonumber(f[3]) then redis.call("HSET", sk, "cursor", now) end
if next_due == "" then
  redis.call("HSET", sk, "status", "ended", "next_at", "")
  return {"ok", "ended"}
end
redis.call("HSET", sk, "status", "active", "next_at", next_due)
redis.call("ZADD", P .. ":sched:due", next_due, sid)
return {"ok", "active"}
