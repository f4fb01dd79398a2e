-- Record the run of a claimed tick and when the schedule is due next, and let the tick's idempotency
-- key expire (it only guards the window between claim and record).
-- ARGV: P, sid, tick, run_id, next_due (unix s; "" = no tick left: the schedule ends), idem_key, idem_ttl_s
-- Returns 1, or 0 when the tick is not the pending one (another caller recorded it).
local P, sid, tick, rid, next_due, idem, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local sk = P .. ":sched:" .. sid
local f = redis.call("HMGET", sk, "pending", "status")
if f[1] ~= tick then return 0 end
redis.call("HSET", sk, "pending", "", "last_tick", tick, "last_run", rid)
redis.call("HINCRBY", sk, "runs", 1)
if idem ~= "" then redis.call("EXPIRE", idem, ttl) end
if next_due == "" then
  redis.call("HSET", sk, "status", "ended", "next_at", "")
  redis.call("ZREM", P .. ":sched:due", sid)
elseif f[2] == "active" then
  redis.call("HSET", sk, "next_at", next_due)
  redis.call("ZADD", P .. ":sched:due", next_due, sid)
end
return 1
