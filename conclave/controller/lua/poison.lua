-- A claimed run whose record cannot be read (its stored spec no longer parses): fail it with the reason,
-- dead-letter it once and acknowledge its queue entry, so it never stalls a worker or comes back.
-- ARGV: P, rid, owner, now, qid, reason. Returns 1, or 0 when owner no longer owns the run.
local P, rid, owner, now, qid, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "owner", "status", "tenant", "created_ms", "attempts")
if f[1] ~= owner then return 0 end
set_status(P, rid, f[3], f[4], f[2], "failed")
redis.call("HSET", rk, "stop_reason", "error", "stop_detail", reason, "error", reason, "finished_at", now)
redis.call("HDEL", rk, "owner")
ledger_release_all(P, rid)
steer_ended(P, rid, now)
redis.call("XADD", P .. ":dead", "*", "rid", rid, "qid", qid, "reason", reason, "attempts", f[5] or 0)
emit(P, rid, now, "run.finished", cjson.encode({status = "failed", stop_reason = "error", error = reason}))
ack(P, qid)
return 1
