-- A person's decision on a pending approval, atomically: the first decision wins. When it was the run's
-- last pending one, the run goes back on the queue (waiting -> queued, a new entry).
-- ARGV: P, rid, aid, tenant, status ("approved"|"denied"|"edited"), reason, edited_json, answer, event_json
-- Returns {"missing"} | {"not_waiting", status} | {"already_decided", approval status} | {"decided", resumed 0|1}
local P, rid, aid, tenant, st, reason, edited, answer, ev =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "status", "tenant", "created_ms")
if not f[1] or f[2] ~= tenant then return {"missing"} end
local cur = apr_get(P, rid, aid, "status")
if not cur then
  if f[1] ~= "waiting" then return {"not_waiting", f[1]} end
  return {"missing"}
end
if cur ~= "pending" then return {"already_decided", cur} end
if f[1] ~= "waiting" then return {"not_waiting", f[1]} end
local now = steer_time()
apr_set(P, rid, aid, "status", st, "decided_at", steer_fmt(now))
if reason ~= "" then apr_set(P, rid, aid, "reason", reason) end
if edited ~= "" then apr_set(P, rid, aid, "edited_arguments", edited) end
if answer ~= "" then apr_set(P, rid, aid, "answer", answer) end
redis.call("SREM", rk .. ":aprpend", aid)
redis.call("ZREM", P .. ":approvals:" .. tenant .. ":pending", rid .. "|" .. aid)
redis.call("ZREM", P .. ":approvals:due", rid .. "|" .. aid)
emit(P, rid, steer_fmt(now), "approval.resolved", ev)
if redis.call("SCARD", rk .. ":aprpend") > 0 then return {"decided", 0} end
steer_wake(P, rid, now)
set_status(P, rid, tenant, f[3], "waiting", "queued")
emit(P, rid, steer_fmt(now), "run.resumed", cjson.encode({reason = "approval"}))
steer_queue(P, rid)
return {"decided", 1}
