-- paused -> queued with a new queue entry (behind its thread's active run when another is active).
-- ARGV: P, rid, tenant
-- Returns {"missing"} | {"not_paused", status} | {"superseded"} | {"resumed"|"enqueued"}
local P, rid, tenant = ARGV[1], ARGV[2], ARGV[3]
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "status", "tenant", "created_ms", "pause_reason", "thread")
if not f[1] or f[2] ~= tenant then return {"missing"} end
if f[1] ~= "paused" then return {"not_paused", f[1]} end
if f[4] == "interrupt" and f[5] and f[5] ~= "" then return {"superseded"} end
local now = steer_time()
steer_wake(P, rid, now)
redis.call("HDEL", rk, "pause_reason", "paused_at", "pause")
set_status(P, rid, f[2], f[3], "paused", "queued")
emit(P, rid, steer_fmt(now), "run.resumed", cjson.encode({reason = "resume"}))
if steer_start(P, rid) == "enqueued" then return {"enqueued"} end
return {"resumed"}
