-- Ask a run to pause. A running run stops at its next step boundary (its commits answer pause_requested);
-- a queued one is paused at once (its queue entry, if any, is stale from now on).
-- ARGV: P, rid, tenant, reason
-- Returns {"missing"} | {"terminal", status} | {"waiting"} | {"paused"} | {"pausing"}
local P, rid, tenant, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "status", "tenant", "created_ms", "pause")
if not f[1] or f[2] ~= tenant then return {"missing"} end
if TERMINAL[f[1]] then return {"terminal", f[1]} end
if f[1] == "waiting" then return {"waiting"} end
if f[1] == "paused" then return {"paused"} end
local now = steer_time()
if f[1] == "queued" then
  steer_to_paused(P, rid, f[2], f[3], "queued", reason, "paused before a worker took it", now)
  return {"paused"}
end
if f[4] and f[4] ~= "" then return {"pausing"} end
redis.call("HSET", rk, "pause", reason)
emit(P, rid, steer_fmt(now), "run.pause_requested", cjson.encode({reason = reason}))
return {"pausing"}
