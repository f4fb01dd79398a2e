-- ARGV: P, rid, tenant, now
-- Returns {"missing"} | {"terminal", status} | {"cancelled"} (was queued) | {"cancelling"} (running)
local P, rid, tenant, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "status", "tenant", "created_ms")
if not f[1] or f[2] ~= tenant then return {"missing"} end
if TERMINAL[f[1]] then return {"terminal", f[1]} end
if f[1] == "running" and redis.call("HGET", rk, "cancel") == "1" then return {"cancelling"} end
redis.call("HSET", rk, "cancel", 1)
emit(P, rid, now, "run.cancel_requested", "{}")
if f[1] == "queued" or f[1] == "paused" or f[1] == "waiting" then  -- no worker holds it: cancelled at once
  set_status(P, rid, f[2], f[3], f[1], "cancelled")
  redis.call("HSET", rk, "stop_reason", "cancelled", "finished_at", now)
  steer_ended(P, rid, now)
  emit(P, rid, now, "run.finished", cjson.encode({status = "cancelled", stop_reason = "cancelled"}))
  return {"cancelled"}
end
redis.call("PUBLISH", P .. ":cancel", rid)
return {"cancelling"}
