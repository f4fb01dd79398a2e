-- Move a schedule past ticks it will not run (missed ones under the skip policy, or none at all when
-- it is not due yet) and set when it is due next. The cursor never moves back.
-- ARGV: P, sid, upto (unix s; "" = leave the cursor), next_due (unix s; "" = none left: it ends)
-- Returns 1, or 0 when the schedule is gone or not active.
local P, sid, upto, next_due = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sk = P .. ":sched:" .. sid
local f = redis.call("HMGET", sk, "status", "cursor")
if f[1] ~= "active" then
  redis.call("ZREM", P .. ":sched:due", sid)
  return 0
end
if upto ~= "" and (not f[2] or f[2] == "" or tonumber(upto) > tonumber(f[2])) then
  redis.call("HSET", sk, "cursor", upto)
end
if next_due == "" then
  redis.call("HSET", sk, "status", "ended", "next_at", "")
  redis.call("ZREM", P .. ":sched:due", sid)
else
  redis.call("HSET", sk, "next_at", next_due)
  redis.call("ZADD", P .. ":sched:due", next_due, sid)
end
return 1
