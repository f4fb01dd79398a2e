-- Claim one tick of a schedule: exactly one caller, of however many schedulers race, gets each tick.
-- The schedule's cursor (the last tick claimed) only moves forward; a claim holds the tick as
-- "pending" until its run is recorded (schedule_done.lua). A pending tick older than stale_s (its
-- claimer died between claim and submission) is handed to the next caller to finish: the run is
-- submitted with an idempotency key made of the schedule id and the tick, so finishing it twice
-- makes one run.
-- ARGV: P, sid, tick (unix s), now, stale_s
-- Returns {"ok", tick} | {"retry", pending_tick} | {"busy"} | {"taken"} | {"inactive"} | {"missing"}
local P, sid, tick, now, stale = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local sk = P .. ":sched:" .. sid
local f = redis.call("HMGET", sk, "status", "cursor", "pending", "pending_at")
if not f[1] then return {"missing"} end
if f[3] and f[3] ~= "" then
  if now - tonumber(f[4] or "0") < stale then return {"busy"} end
  redis.call("HSET", sk, "pending_at", now)
  return {"retry", f[3]}
end
if f[1] ~= "active" then return {"inactive"} end
if f[2] and f[2] ~= "" and tick <= tonumber(f[2]) then return {"taken"} end
redis.call("HSET", sk, "cursor", ARGV[3], "pending", ARGV[3], "pending_at", now)
return {"ok", ARGV[3]}
