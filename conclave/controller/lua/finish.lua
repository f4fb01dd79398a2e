-- Record a run's terminal state and acknowledge its queue entry, atomically.
-- ARGV: P, rid, owner, now, status, fields_json, event_data
-- Returns 1, or -1 when the lease was lost (another worker owns the run now).
local P, rid, owner, now, status, fields, evdata = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "owner", "status", "tenant", "created_ms", "qid")
if f[1] ~= owner then
  if f[2] == status and not f[1] then return 1 end  -- a retried finish whose reply was lost
  return -1
end
for k, v in pairs(cjson.decode(fields)) do
  if v == cjson.null then redis.call("HDEL", rk, k) else redis.call("HSET", rk, k, v) end
end
redis.call("HSET", rk, "finished_at", now)
redis.call("HDEL", rk, "owner")
set_status(P, rid, f[3], f[4], f[2], status)
ledger_release_all(P, rid)
steer_ended(P, rid, now)
emit(P, rid, now, "run.finished", evdata)
ack(P, f[5])
return 1
