-- A worker takes a run it read from the queue (new, or reclaimed from a dead worker).
-- ARGV: P, rid, owner, now, max_attempts, qid, worker
-- Returns {"ok", attempts, now, started_at} | {"terminal", status} | {"dead", attempts} | {"missing"}
-- (now and started_at on Redis's clock, so a worker with a skewed clock still counts wall time right)
local P, rid, owner, now, max_attempts, qid, worker =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "status", "tenant", "created_ms", "cancel", "started_at", "owner", "attempts")
if f[6] == owner then return {"ok", tonumber(f[7]), now, f[5] or now} end
local status, tenant, created_ms, cancel, started = f[1], f[2], f[3], f[4], f[5]
if not status then
  -- a poison entry (no run id, or a run that does not exist): dead-lettered once, never retried
  redis.call("XADD", P .. ":dead", "*", "rid", rid, "qid", qid, "reason", "the queue entry names no run that exists", "attempts", 0)
  ack(P, qid)
  return {"missing"}
end
if TERMINAL[status] then ack(P, qid); return {"terminal", status} end
if steer_stale(P, rid, status, qid) then ack(P, qid); return {"stale", status} end
local attempts = redis.call("HINCRBY", rk, "attempts", 1)
if cancel == "1" then
  set_status(P, rid, tenant, created_ms, status, "cancelled")
  redis.call("HSET", rk, "stop_reason", "cancelled", "finished_at", now)
  redis.call("HDEL", rk, "owner")
  steer_ended(P, rid, now)
  emit(P, rid, now, "run.finished", cjson.encode({status = "cancelled", stop_reason = "cancelled"}))
  ack(P, qid)
  return {"terminal", "cancelled"}
end
if attempts - steer_clean(P, rid) > max_attempts then
  local msg = "the run was started " .. (attempts - 1 - steer_clean(P, rid)) .. " times and its worker died each time; dead-lettered"
  set_status(P, rid, tenant, created_ms, status, "failed")
  redis.call("HSET", rk, "stop_reason", "crashed", "stop_detail", msg, "error", msg, "finished_at", now)
  redis.call("HDEL", rk, "owner")
  redis.call("XADD", P .. ":dead", "*", "rid", rid, "reason", msg, "attempts", attempts - 1)
  steer_ended(P, rid, now)
  emit(P, rid, now, "run.finished", cjson.encode({status = "failed", stop_reason = "crashed", error = msg}))
  ack(P, qid)
  return {"dead", attempts}
end
redis.call("HSET", rk, "owner", owner, "qid", qid, "worker", worker)
ledger_release_foreign(P, rid, owner)
if not started then
  redis.call("HSET", rk, "started_at", now)
  started = now
end
set_status(P, rid, tenant, created_ms, status, "running")
local etype = "run.started"
if attempts > 1 then etype = "run.resumed" end
emit(P, rid, now, etype, cjson.encode({attempt = attempts, worker = worker}))
return {"ok", attempts, now, started}
